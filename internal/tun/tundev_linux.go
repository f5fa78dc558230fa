// Package tun is the TUN device and the pump between it and a PPP link:
// opening and configuring the device (with the kernel's TSO/GSO offloads),
// and moving packets both ways in batches without allocating per packet.
package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TUN is a layer-3 TUN device owned by this process. Closing it removes the
// device (it is created non-persistent), so a crash cannot leave it behind.
type Device struct {
	name string
	file *os.File
	link netlink.Link

	// ReadNoWait's state: the raw descriptor, and what one non-blocking
	// read was given and got. tryRead is made once so that a read does not
	// allocate a closure; only one goroutine (the pump) may call ReadNoWait.
	raw     syscall.RawConn
	tryBuf  []byte
	tryN    int
	tryErr  error
	tryRead func(fd uintptr) bool

	// With a virtio header on every packet (IFF_VNET_HDR, see
	// offload_linux.go): reads land in rbuf (a super-packet can be 64 KiB)
	// and are cut by gso; writes go out as writev(header, packet).
	vnet     bool
	rbuf     []byte
	gso      gsoState
	gro      groState
	wmu      sync.Mutex
	whdr     [vnetHdrLen]byte // all zero
	wiov     [2]unix.Iovec
	wn       int
	werr     error
	writeRaw func(fd uintptr) bool

	closeOnce sync.Once
}

// OpenTUN creates the TUN device name with the given MTU, in the network
// namespace of the calling thread. The device is left down until Configure.
func Open(name string, mtu int) (*Device, error) {
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.MTU = mtu
	dev := &netlink.Tuntap{
		LinkAttrs:  la,
		Mode:       netlink.TUNTAP_MODE_TUN,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE | netlink.TUNTAP_VNET_HDR,
		Queues:     1,
		NonPersist: true,
	}
	if err := netlink.LinkAdd(dev); err != nil {
		return nil, fmt.Errorf("creating TUN device %s: %w", name, err)
	}
	if len(dev.Fds) != 1 {
		for _, f := range dev.Fds {
			f.Close()
		}
		return nil, fmt.Errorf("creating TUN device %s: got %d queues, want 1", name, len(dev.Fds))
	}
	// The netlink library hands back a blocking *os.File. Take our own copy
	// of the descriptor, non-blocking so that Go's poller can interrupt a
	// pending Read at Close, and let go of the library's (its finalizer
	// would otherwise close the shared descriptor some day).
	fd, err := unix.Dup(int(dev.Fds[0].Fd()))
	dev.Fds[0].Close()
	if err != nil {
		return nil, fmt.Errorf("TUN %s: %w", name, err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUN %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
	link, err := netlink.LinkByName(name)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("finding TUN device %s: %w", name, err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("TUN %s: %w", name, err)
	}
	t := &Device{name: name, file: f, link: link, raw: raw, vnet: true, rbuf: make([]byte, vnetHdrLen+65535+64)}
	t.gro.buf = make([]byte, vnetHdrLen, vnetHdrLen+groMax)
	t.writeRaw = t.writeVnet
	t.wiov[0].Base = &t.whdr[0]
	t.wiov[0].SetLen(vnetHdrLen)
	// Ask for TCP super-packets and checksum offload; with a kernel that
	// refuses, every packet still comes with its header (then one that asks
	// for nothing).
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloads); err != nil {
		unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0)
	}
	t.tryRead = func(fd uintptr) bool {
		t.tryN, t.tryErr = unix.Read(int(fd), t.tryBuf)
		return true // never wait: ReadNoWait reports "nothing ready" instead
	}
	return t, nil
}

// Name returns the device name.
func (t *Device) Name() string { return t.name }

// Configure gives the device its point-to-point addresses (as pppd does:
// LOCAL peer PEER/32), its MTU, optional IPv6 link-local addresses from the
// IPv6CP interface identifiers, and brings it up.
func (t *Device) Configure(local, peer netip.Addr, mtu int, ifid, peerIfID *[8]byte) error {
	if err := netlink.LinkSetMTU(t.link, mtu); err != nil {
		return fmt.Errorf("setting MTU of %s: %w", t.name, err)
	}
	addr := &netlink.Addr{
		IPNet: &net.IPNet{IP: local.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Peer:  &net.IPNet{IP: peer.AsSlice(), Mask: net.CIDRMask(32, 32)},
	}
	if err := netlink.AddrReplace(t.link, addr); err != nil {
		return fmt.Errorf("adding %s peer %s to %s: %w", local, peer, t.name, err)
	}
	if ifid != nil && peerIfID != nil {
		ll := func(id *[8]byte) net.IP {
			ip := make(net.IP, 16)
			ip[0], ip[1] = 0xfe, 0x80
			copy(ip[8:], id[:])
			return ip
		}
		a6 := &netlink.Addr{IPNet: &net.IPNet{IP: ll(ifid), Mask: net.CIDRMask(128, 128)},
			Peer: &net.IPNet{IP: ll(peerIfID), Mask: net.CIDRMask(128, 128)}}
		if err := netlink.AddrReplace(t.link, a6); err != nil {
			return fmt.Errorf("adding IPv6 link-local address to %s: %w", t.name, err)
		}
	}
	if err := netlink.LinkSetUp(t.link); err != nil {
		return fmt.Errorf("bringing %s up: %w", t.name, err)
	}
	return nil
}

// AddAddr6 gives the device a global IPv6 address from the far end's
// router advertisement, as a /128 (everything beyond the link is routed
// through the device by the caller anyway), without duplicate address
// detection: a point-to-point link has no one else to collide with.
func (t *Device) AddAddr6(a netip.Addr) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(128, 128)},
		Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrReplace(t.link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", a, t.name, err)
	}
	return nil
}

// RoutePrefix routes p to the device: on the far end, the laptop's IPv6
// prefix. It replaces a route of an older session's TUN (a laptop that
// roamed away) rather than failing on it; the route goes with the device.
func (t *Device) RoutePrefix(p netip.Prefix) error {
	r := &netlink.Route{LinkIndex: t.link.Attrs().Index,
		Dst: &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("routing %s to %s: %w", p, t.name, err)
	}
	return nil
}

// Read reads one packet, waiting for it. A TCP super-packet from the
// kernel comes out as its MTU-sized segments, one per call.
func (t *Device) Read(p []byte) (int, error) {
	if !t.vnet {
		return t.file.Read(p)
	}
	for {
		if n := t.nextSegment(p); n > 0 {
			return n, nil
		}
		n, err := t.file.Read(t.rbuf)
		if err != nil {
			return 0, err
		}
		if n = t.takeVnet(p, t.rbuf[:n]); n > 0 {
			return n, nil
		}
	}
}

// ReadNoWait reads one packet if the device has one ready (or a
// super-packet has segments left), and returns 0, nil if it has none,
// without waiting. The pump uses it to drain what the kernel has queued
// into one write to the transport. Neither it nor Read is safe for
// concurrent use: only the pump reads.
func (t *Device) ReadNoWait(p []byte) (int, error) {
	for {
		if n := t.nextSegment(p); n > 0 {
			return n, nil
		}
		t.tryBuf = p
		if t.vnet {
			t.tryBuf = t.rbuf
		}
		err := t.raw.Read(t.tryRead)
		t.tryBuf = nil
		if err != nil {
			// RawConn.Read fails only when the file is closed (before
			// calling tryRead), and says so in words of its own: say it as
			// Read would.
			return 0, os.ErrClosed
		}
		switch {
		case t.tryErr == unix.EAGAIN || t.tryErr == unix.EINTR:
			return 0, nil
		case t.tryErr != nil:
			return 0, &os.PathError{Op: "read", Path: t.file.Name(), Err: t.tryErr}
		case !t.vnet:
			return t.tryN, nil
		}
		if n := t.takeVnet(p, t.rbuf[:t.tryN]); n > 0 {
			return n, nil
		}
	}
}

// Write writes one packet. It is safe for concurrent use and allocates
// nothing.
func (t *Device) Write(p []byte) (int, error) {
	if !t.vnet {
		return t.file.Write(p)
	}
	if len(p) == 0 {
		return 0, nil // not a packet
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wiov[1].Base = &p[0]
	t.wiov[1].SetLen(len(p))
	err := t.raw.Write(t.writeRaw)
	t.wiov[1].Base = nil
	if err != nil {
		return 0, os.ErrClosed // as in ReadNoWait
	}
	if t.werr != nil {
		return 0, &os.PathError{Op: "write", Path: t.file.Name(), Err: t.werr}
	}
	return max(t.wn-vnetHdrLen, 0), nil
}

// Close closes the device, which removes it. Closing twice is fine, and a
// device already gone counts as removed.
func (t *Device) Close() error {
	var err error
	t.closeOnce.Do(func() {
		err = t.file.Close()
		// Non-persistent: the kernel removes it with the last fd. Make sure
		// even if something else held it open.
		if l, lerr := netlink.LinkByName(t.name); lerr == nil && l.Attrs().Index == t.link.Attrs().Index {
			if derr := netlink.LinkDel(l); derr != nil && !errors.Is(derr, unix.ENODEV) {
				err = errors.Join(err, fmt.Errorf("removing %s: %w", t.name, derr))
			}
		}
	})
	return err
}
