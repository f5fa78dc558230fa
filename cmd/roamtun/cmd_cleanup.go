package main

import (
	"fmt"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/daemon"
)

var cleanupCmd = &command{
	name:  "cleanup",
	usage: "[--config FILE]",
	help:  "undo what a crashed or killed run left behind: routes, rules, firewall, DNS (the daemon does this at start)",
}

func init() {
	cleanupCmd.run = runCleanup
	register(cleanupCmd)
}

func runCleanup(e *env, args []string) error {
	fs, cfgPath := newFlags(e, cleanupCmd)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("cleanup takes no arguments")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	sys, err := daemon.OpenSystem(cfg.Daemon, e.log)
	if err != nil {
		return err
	}
	defer sys.Close()
	n, err := sys.Cleanup(e.ctx)
	switch {
	case err != nil:
		return fmt.Errorf("undid %d changes, but not all: %w", n, err)
	case n == 0:
		fmt.Fprintln(e.stdout, "nothing to undo")
	default:
		fmt.Fprintf(e.stdout, "undid %d changes\n", n)
	}
	return nil
}
