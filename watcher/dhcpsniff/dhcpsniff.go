// Package dhcpsniff is the watcher's "dhcp" source: it watches DHCPv4 on
// the laptop's interfaces (whoever the client is: NetworkManager, dhclient,
// systemd-networkd) and reports the lease the client actually took —
// router, DNS, lease time, server and classless routes (option 121, where
// TunnelVision hides).
//
// Anyone on a link can send an ACK, so one is believed only when it
// answers this host's own REQUEST (same transaction id, from the server
// the client chose) and, once the address is configured, names that
// address; the first such ACK of a transaction wins and a conflicting one
// is logged as suspicious and ignored.
//
// A REQUEST is this host's client's only when it leaves from UDP port 68
// (which only a privileged process can bind: any local user can send UDP
// to port 67, and must not be able to reset the transaction) with the
// interface's own MAC as both the frame's source and the client hardware
// address. Those checks come before any netlink lookup, and what a lookup
// learns is cached: frames on the wire cannot make the daemon work.
package dhcpsniff

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/watcher"
)

// Source is the "dhcp" watcher source.
type Source struct {
	Netns *netns.NsHandle // the namespace to watch (tests); default ours
	Log   *slog.Logger

	// lookup reads an interface's name, MAC and IPv4 addresses (netlink;
	// tests count the calls).
	lookup func(idx int) (string, net.HardwareAddr, []netip.Addr)

	mu     sync.Mutex
	ifaces map[int]*ifState
	links  map[int]linkInfo
}

// linkInfo is an interface's name and MAC as last looked up.
type linkInfo struct {
	name string
	mac  net.HardwareAddr
	at   time.Time
}

// linkTTL bounds how long a looked-up name and MAC are used.
const linkTTL = 30 * time.Second

type ifState struct {
	xid      dhcpv4.TransactionID // our client's latest REQUEST
	server   net.IP               // the server it chose (option 54, or the unicast destination of a renewal)
	lease    *Lease               // the ACK believed
	suspects int
}

// Lease is a believed DHCP ACK, decoded.
type Lease struct {
	Interface    string
	Address      netip.Addr
	Router       netip.Addr
	DNS          []netip.Addr
	Routes       []watcher.Route
	BadRoutes    bool // option 121 present but malformed
	LeaseSeconds uint32
	Server       netip.Addr
	ServerMAC    net.HardwareAddr
	At           time.Time
}

// Name implements watcher.Source.
func (s *Source) Name() string { return "dhcp" }

func (s *Source) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// filter accepts IPv4 UDP frames from or to port 67 (unfragmented).
var filter = []unix.SockFilter{
	{Code: 0x28, K: 12},                    // ldh [12] ethertype
	{Code: 0x15, Jt: 0, Jf: 10, K: 0x0800}, // jeq IPv4
	{Code: 0x30, K: 23},                    // ldb [23] protocol
	{Code: 0x15, Jt: 0, Jf: 8, K: 17},      // jeq UDP
	{Code: 0x28, K: 20},                    // ldh [20] fragment
	{Code: 0x45, Jt: 6, Jf: 0, K: 0x1fff},  // jset offset → drop
	{Code: 0xb1, K: 14},                    // ldxb 4*([14]&0xf)
	{Code: 0x48, K: 14},                    // ldh [x+14] source port
	{Code: 0x15, Jt: 2, Jf: 0, K: 67},      // jeq 67 → accept
	{Code: 0x48, K: 16},                    // ldh [x+16] destination port
	{Code: 0x15, Jt: 0, Jf: 1, K: 67},      // jeq 67 → accept
	{Code: 0x06, K: 0xffff},                // accept
	{Code: 0x06, K: 0},                     // drop
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// open makes the packet socket (in s.Netns if set).
func (s *Source) open() (int, error) {
	mk := func() (int, error) {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return -1, err
		}
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			unix.Close(fd)
			return -1, err
		}
		// Non-blocking: reads wait in Go's poller, not on a timeout.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	if s.Netns == nil {
		return mk()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return -1, err
	}
	defer orig.Close()
	if err := netns.Set(*s.Netns); err != nil {
		return -1, err
	}
	fd, err := mk()
	if serr := netns.Set(orig); serr != nil {
		panic("dhcpsniff: cannot return to the original network namespace: " + serr.Error())
	}
	return fd, err
}

// Run implements watcher.Source.
func (s *Source) Run(ctx context.Context, hint func()) error {
	fd, err := s.open()
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("packet socket needs CAP_NET_RAW: %w", watcher.ErrUnavailable)
	}
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "dhcp packet socket")
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	// Closing the file wakes a read waiting in the poller: nothing polls.
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	hint() // listening now
	buf := make([]byte, 2048)
	for ctx.Err() == nil {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("receiving: %w", err)
		case errors.Is(rerr, unix.EINTR):
			continue
		case rerr != nil:
			return fmt.Errorf("receiving: %w", rerr)
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		if s.handle(ll, buf[:n]) {
			hint()
		}
	}
	return nil
}

// Frame is a DHCP message seen on an interface.
type Frame struct {
	IfIndex          int
	Outgoing         bool
	SrcMAC           net.HardwareAddr
	SrcIP            net.IP
	DstIP            net.IP
	SrcPort, DstPort uint16
	Msg              *dhcpv4.DHCPv4
}

// ParseFrame decodes an Ethernet/IPv4/UDP/DHCP frame.
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	if len(b) < 14+20+8 {
		return f, errors.New("frame too short")
	}
	ihl := int(b[14]&0x0f) * 4
	if ihl < 20 || len(b) < 14+ihl+8 {
		return f, errors.New("bad IPv4 header length")
	}
	f.SrcMAC = net.HardwareAddr(append([]byte(nil), b[6:12]...))
	f.SrcIP = net.IP(append([]byte(nil), b[26:30]...))
	f.DstIP = net.IP(append([]byte(nil), b[30:34]...))
	udp := b[14+ihl:]
	f.SrcPort, f.DstPort = binary.BigEndian.Uint16(udp[0:2]), binary.BigEndian.Uint16(udp[2:4])
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return f, errors.New("bad UDP length")
	}
	m, err := dhcpv4.FromBytes(udp[8:ulen])
	if err != nil {
		return f, fmt.Errorf("DHCP: %w", err)
	}
	f.Msg = m
	return f, nil
}

// handle updates what is known from one frame; it reports whether the
// believed lease changed.
func (s *Source) handle(ll *unix.SockaddrLinklayer, b []byte) bool {
	f, err := ParseFrame(b)
	if err != nil {
		return false
	}
	f.IfIndex, f.Outgoing = ll.Ifindex, ll.Pkttype == unix.PACKET_OUTGOING
	return s.Note(f)
}

// ifaceInfo returns an interface's name, MAC and configured IPv4 addresses.
func (s *Source) ifaceInfo(idx int) (string, net.HardwareAddr, []netip.Addr) {
	var h *netlink.Handle
	var err error
	if s.Netns != nil {
		h, err = netlink.NewHandleAt(*s.Netns, unix.NETLINK_ROUTE) // only the family used: see rtnetlink.Source.handle
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return "", nil, nil
	}
	defer h.Close()
	l, err := h.LinkByIndex(idx)
	if err != nil {
		return "", nil, nil
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			out = append(out, ip)
		}
	}
	return l.Attrs().Name, l.Attrs().HardwareAddr, out
}

// Note takes one DHCP frame into account; it reports whether the believed
// lease changed.
func (s *Source) Note(f Frame) bool {
	m := f.Msg
	request := m.OpCode == dhcpv4.OpcodeBootRequest
	switch {
	case request && (!f.Outgoing || f.SrcPort != 68 || f.DstPort != 67 ||
		!bytes.Equal(f.SrcMAC, m.ClientHWAddr)):
		// Not our client: another host's frame, or a local user's UDP
		// from an unprivileged port.
		return false
	case !request && (f.Outgoing || f.SrcPort != 67 || f.DstPort != 68 ||
		m.OpCode != dhcpv4.OpcodeBootReply || m.MessageType() != dhcpv4.MessageTypeAck):
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ifaces[f.IfIndex]
	if !request && st == nil {
		return false // no request of ours was seen there: nothing to look up
	}
	name, mac := s.linkLocked(f.IfIndex)
	if name == "" || !bytes.Equal(m.ClientHWAddr, mac) {
		return false // not about this host's client
	}
	if st == nil {
		if s.ifaces == nil {
			s.ifaces = map[int]*ifState{}
		}
		st = &ifState{}
		s.ifaces[f.IfIndex] = st
	}
	if request {
		switch m.MessageType() {
		case dhcpv4.MessageTypeRequest:
			st.xid = m.TransactionID
			st.server = m.ServerIdentifier()
			if st.server == nil && !f.DstIP.Equal(net.IPv4bcast) {
				st.server = f.DstIP // a renewal goes straight to the server
			}
			if st.server == nil && st.lease != nil {
				st.server = st.lease.Server.AsSlice() // rebinding/INIT-REBOOT: the one we had
			}
		case dhcpv4.MessageTypeRelease:
			if st.lease != nil {
				st.lease = nil
				return true
			}
		}
		return false
	}
	return s.noteAckLocked(f, st, name)
}

// linkLocked returns an interface's name and MAC, looked up at most once per
// linkTTL (a miss once a second).
func (s *Source) linkLocked(idx int) (string, net.HardwareAddr) {
	if l, ok := s.links[idx]; ok && (time.Since(l.at) < linkTTL && l.name != "" || time.Since(l.at) < time.Second) {
		return l.name, l.mac
	}
	name, mac, _ := s.lookupFn()(idx)
	if s.links == nil {
		s.links = map[int]linkInfo{}
	}
	s.links[idx] = linkInfo{name: name, mac: mac, at: time.Now()}
	return name, mac
}

func (s *Source) lookupFn() func(int) (string, net.HardwareAddr, []netip.Addr) {
	if s.lookup != nil {
		return s.lookup
	}
	return s.ifaceInfo
}

// noteAckLocked checks an ACK for our client against its transaction.
func (s *Source) noteAckLocked(f Frame, st *ifState, name string) bool {
	m := f.Msg
	sid := m.ServerIdentifier()
	why := ""
	switch {
	case m.TransactionID != st.xid:
		why = "answers no request of ours"
	case st.server != nil && !sid.Equal(st.server):
		why = fmt.Sprintf("from server %v, but our client asked %v", sid, st.server)
	case !addressOK(s.lookupFn(), f.IfIndex, m.YourIPAddr):
		why = fmt.Sprintf("gives %v, not the address configured", m.YourIPAddr)
	case st.lease != nil && st.lease.At.After(time.Now().Add(-time.Minute)) && st.lease.ServerMAC.String() != f.SrcMAC.String():
		why = fmt.Sprintf("a second answer from %s after %s's", f.SrcMAC, st.lease.ServerMAC)
	}
	if why != "" {
		st.suspects++
		s.log().Warn("suspicious DHCP ACK ignored", "interface", name, "from", f.SrcMAC.String(), "ip", f.SrcIP.String(), "why", why)
		return false
	}
	l := decode(name, m)
	l.ServerMAC, l.At = f.SrcMAC, time.Now()
	changed := st.lease == nil || !sameLease(st.lease, &l)
	st.lease = &l
	if l.BadRoutes {
		s.log().Warn("DHCP ACK with a malformed option 121 (classless routes)", "interface", name)
	}
	return changed
}

// addressOK: once the interface has IPv4 addresses, the ACK must give one
// of them (looked up now: only an ACK that matched our transaction gets
// this far).
func addressOK(lookup func(int) (string, net.HardwareAddr, []netip.Addr), idx int, ip net.IP) bool {
	_, _, addrs := lookup(idx)
	return len(addrs) == 0 || containsIP(addrs, ip)
}

func containsIP(addrs []netip.Addr, ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return false
	}
	for _, x := range addrs {
		if x == a {
			return true
		}
	}
	return false
}

func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

// decode reads the lease from an ACK. With option 121, option 3 is ignored
// (RFC 3442); a malformed option 121 is reported, not silently dropped.
func decode(ifname string, m *dhcpv4.DHCPv4) Lease {
	l := Lease{Interface: ifname, Address: addr(m.YourIPAddr), Server: addr(m.ServerIdentifier())}
	for _, d := range m.DNS() {
		if a := addr(d); a.IsValid() {
			l.DNS = append(l.DNS, a)
		}
	}
	l.LeaseSeconds = uint32(m.IPAddressLeaseTime(0) / time.Second)
	raw := m.Options.Get(dhcpv4.OptionClasslessStaticRoute)
	if raw != nil {
		routes := m.ClasslessStaticRoute()
		if routes == nil && len(raw) > 0 {
			l.BadRoutes = true
		}
		for _, r := range routes {
			ones, _ := r.Dest.Mask.Size()
			l.Routes = append(l.Routes, watcher.Route{Dest: netip.PrefixFrom(addr(r.Dest.IP), ones), Gateway: addr(r.Router)})
			if ones == 0 && !l.Router.IsValid() {
				l.Router = addr(r.Router)
			}
		}
	} else if rs := m.Router(); len(rs) > 0 {
		l.Router = addr(rs[0])
	}
	return l
}

func sameLease(a, b *Lease) bool {
	if a.Address != b.Address || a.Router != b.Router || a.Server != b.Server || a.LeaseSeconds != b.LeaseSeconds ||
		len(a.DNS) != len(b.DNS) || len(a.Routes) != len(b.Routes) || a.BadRoutes != b.BadRoutes {
		return false
	}
	for i := range a.DNS {
		if a.DNS[i] != b.DNS[i] {
			return false
		}
	}
	for i := range a.Routes {
		if a.Routes[i] != b.Routes[i] {
			return false
		}
	}
	return true
}

// Observe implements watcher.Source: the believed lease per interface,
// while the interface holds the leased address. Once the client has dropped
// it (the network left: a disconnect, a lease given up without a RELEASE on
// the wire) the lease no longer makes a network — otherwise its gateway
// alone would keep one alive that is gone, and the daemon would never go
// idle. The lease is kept, should the address come back.
func (s *Source) Observe(ctx context.Context) ([]watcher.Network, error) {
	s.mu.Lock()
	leases := map[int]Lease{}
	for idx, st := range s.ifaces {
		if st.lease != nil {
			leases[idx] = *st.lease
		}
	}
	s.mu.Unlock()
	var out []watcher.Network
	for idx, l := range leases {
		if _, _, addrs := s.lookupFn()(idx); !slices.Contains(addrs, l.Address) {
			continue
		}
		n := watcher.Network{Interface: l.Interface, Gateway: l.Router, DNS: l.DNS, ClasslessRoutes: l.Routes,
			LeaseSeconds: l.LeaseSeconds, DHCPServer: l.Server}
		n.TunnelVision = watcher.CoversDefault(l.Routes)
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b watcher.Network) int { return strings.Compare(a.Interface, b.Interface) })
	return out, nil
}

// Leases returns the believed leases (for status and tests).
func (s *Source) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Lease
	for _, st := range s.ifaces {
		if st.lease != nil {
			out = append(out, *st.lease)
		}
	}
	return out
}
