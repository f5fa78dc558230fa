package main

import "github.com/roamtun/roamtun/control"

var reloadCmd = &command{
	name:  "reload",
	usage: "[--config FILE]",
	help:  "make the daemon re-read the trust policy (as SIGHUP does); a bad policy is reported and the last good one stays",
}

func init() {
	reloadCmd.run = runReload
	register(reloadCmd)
}

// runReload asks the daemon over its control socket, so that the answer
// (a policy error, with FILE:LINE) comes back to whoever asked — systemctl
// reload included (ExecReload=).
func runReload(e *env, args []string) error {
	fs, cfgPath := newFlags(e, reloadCmd)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("reload takes no arguments")
	}
	return simpleCall(e, *cfgPath, control.Request{Cmd: "reload"})
}
