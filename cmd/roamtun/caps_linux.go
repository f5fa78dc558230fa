package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// capableCommands may run with capabilities while not root: only the far
// end, which a server gives cap_net_admin (through a copy of the binary that
// only its link accounts may run) so that it can create its TUN.
var capableCommands = map[string]bool{"serve": true}

// refuseCapable refuses a subcommand when roamtun holds capabilities (a file
// capability, an ambient set, a setuid bit) but is not root: every other
// subcommand takes paths and options from its caller (cleanup with a state
// dir of one's own deletes routes), so a capable copy must do nothing but
// serve.
func refuseCapable(name string) error {
	if capableCommands[name] {
		return nil
	}
	uid, euid := os.Getuid(), os.Geteuid()
	if uid == 0 && euid == 0 {
		return nil
	}
	if uid != euid || os.Getgid() != os.Getegid() {
		return fmt.Errorf("refusing to run set-user-ID or set-group-ID (uid %d, euid %d): only serve may run with privileges it was not started with", uid, euid)
	}
	held, err := capsHeld()
	if err != nil {
		return fmt.Errorf("reading this process's capabilities: %w", err)
	}
	if held {
		return fmt.Errorf("refusing to run with capabilities as uid %d: a capable roamtun runs only serve (run %s as root, or from an unprivileged copy)", uid, name)
	}
	return nil
}

// capsHeld reports whether the process has any capability permitted or
// effective.
func capsHeld() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, err
	}
	return data[0].Effective|data[0].Permitted|data[1].Effective|data[1].Permitted != 0, nil
}
