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
	cfg, err := configOnly(e, cleanupCmd, args)
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

// configOnly parses a command that takes --config and nothing else, and
// loads the config.
func configOnly(e *env, c *command, args []string) (*config.Config, error) {
	fs, cfgPath := newFlags(e, c)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, usagef("%s takes no arguments", c.name)
	}
	return config.Load(*cfgPath)
}
