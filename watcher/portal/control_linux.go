package portal

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// control binds a probe socket to ifname (SO_BINDTODEVICE: it leaves
// through that interface whatever the routing says, so it judges that
// network and cannot go through the tunnel or another uplink) and marks
// it (SO_MARK), before it connects.
func control(ifname string, mark int) func(network, address string, c syscall.RawConn) error {
	if ifname == "" && mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if ifname != "" {
				if serr = unix.BindToDevice(int(fd), ifname); serr != nil {
					serr = fmt.Errorf("binding the probe to %s: %w", ifname, serr)
					return
				}
			}
			if mark != 0 {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark); serr != nil {
					serr = fmt.Errorf("marking the probe: %w", serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
