//go:build !linux

package portal

import "syscall"

// control: binding to a device and marks are Linux's; elsewhere the probe
// is not bound (only tests build there).
func control(string, int) func(network, address string, c syscall.RawConn) error { return nil }
