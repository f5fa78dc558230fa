package main

import (
	"fmt"
	"os"

	"github.com/roamtun/roamtun/lab"
)

var demoCmd = &command{
	name:  "demo",
	usage: "",
	help:  "the whole flow in network namespaces: untrusted network, tunnel, trusted, gone (needs root and OpenSSH)",
}

func init() {
	demoCmd.run = runDemo
	register(demoCmd)
}

func runDemo(e *env, args []string) error {
	fs, _ := newFlags(e, demoCmd)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the roamtun binary: %w", err)
	}
	fmt.Fprintln(e.stdout, "roamtun demo: the daemon on a café network, in network namespaces (PPP over real OpenSSH, CHAP both ways)")
	return lab.Demo(e.stdout, bin)
}
