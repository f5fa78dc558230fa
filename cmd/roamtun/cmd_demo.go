package main

import (
	"fmt"
	"os"

	"github.com/roamtun/roamtun/lab"
)

var demoCmd = &command{
	name:  "demo",
	usage: "",
	help:  "show the link working end to end in network namespaces (needs root)",
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
	fmt.Fprintln(e.stdout, "roamtun demo: a PPP link (CHAP both ways) between two network namespaces")
	return lab.Demo(e.stdout, bin)
}
