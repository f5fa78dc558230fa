package dhcpsniff

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/lab"
	"github.com/roamtun/roamtun/watcher"
)

// frame builds an Ethernet/IPv4/UDP frame carrying payload.
func frame(dstMAC, srcMAC net.HardwareAddr, src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	copy(ip[12:16], src.To4())
	copy(ip[16:20], dst.To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	eth := append(append(append([]byte{}, dstMAC...), srcMAC...), 0x08, 0x00)
	return append(append(append(eth, ip...), udp...), payload...)
}

// inject sends a raw frame out of dev in ns: another host on the link.
func inject(t *testing.T, ns *lab.Namespace, dev string, b []byte) {
	t.Helper()
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, b, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{b[0], b[1], b[2], b[3], b[4], b[5]}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRealLease: dnsmasq in the café, a real DHCP client (nclient4) on the
// laptop; the source believes the lease the client took, option 121
// decoded (TunnelVision flagged), and ignores forged ACKs from another
// host on the link.
func TestRealLease(t *testing.T) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "dnsmasq")
	laptop, cafe, err := l.CafeLink("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cafe.StartDHCPServer("lan0", "10.200.1.100", "10.200.1.150", "10.200.1.1",
		"--dhcp-option=121,0.0.0.0/1,10.200.1.1,128.0.0.0/1,10.200.1.1,10.99.0.0/16,10.200.1.1"); err != nil {
		t.Fatal(err)
	}
	h, err := netns.GetFromName(laptop.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var logb strings.Builder
	var logMu sync.Mutex
	s := &Source{Netns: &h, Log: slogTo(&logb, &logMu)}
	hints := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func() { hints <- struct{}{} }) }()
	defer func() { cancel(); <-done }()
	select { // the source hints once its socket is open
	case <-hints:
	case <-time.After(20 * time.Second):
		t.Fatal("the source did not start")
	}

	lease, err := laptop.AcquireLease("wan0", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-hints:
	case <-time.After(20 * time.Second):
		t.Fatal("no hint for the lease")
	}
	got := s.Leases()
	if len(got) != 1 {
		t.Fatalf("leases: %+v", got)
	}
	g := got[0]
	wantRoutes := []watcher.Route{
		{Dest: netip.MustParsePrefix("0.0.0.0/1"), Gateway: netip.MustParseAddr("10.200.1.1")},
		{Dest: netip.MustParsePrefix("128.0.0.0/1"), Gateway: netip.MustParseAddr("10.200.1.1")},
		{Dest: netip.MustParsePrefix("10.99.0.0/16"), Gateway: netip.MustParseAddr("10.200.1.1")},
	}
	if g.Interface != "wan0" || g.Address.String() != lease.Addr.IP.String() || g.Server != netip.MustParseAddr("10.200.1.1") ||
		len(g.DNS) != 1 || g.LeaseSeconds != 600 || g.Router.IsValid() || len(g.Routes) != 3 {
		t.Errorf("lease: %+v", g)
	}
	for i, r := range wantRoutes {
		if i < len(g.Routes) && g.Routes[i] != r {
			t.Errorf("route %d: %v, want %v", i, g.Routes[i], r)
		}
	}
	nets, _ := s.Observe(ctx)
	if len(nets) != 1 || !nets[0].TunnelVision || nets[0].Gateway.IsValid() {
		t.Errorf("observed %+v: want TunnelVision and no router (option 3 ignored with 121)", nets)
	}

	// Another host answers the same transaction, claiming to be a server
	// with itself as the router; then one spoofing the real server's id.
	laptopMAC := lease.ACK.ClientHWAddr
	evil := net.HardwareAddr{0x02, 0x66, 0x66, 0x66, 0x66, 0x66}
	for _, sid := range []net.IP{net.ParseIP("10.200.1.66"), net.ParseIP("10.200.1.1")} {
		forged, err := dhcpv4.New(dhcpv4.WithTransactionID(lease.ACK.TransactionID),
			dhcpv4.WithHwAddr(laptopMAC),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
			dhcpv4.WithYourIP(lease.Addr.IP),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid)),
			dhcpv4.WithOption(dhcpv4.OptRouter(net.ParseIP("10.200.1.66"))),
			dhcpv4.WithOption(dhcpv4.OptDNS(net.ParseIP("10.200.1.66"))),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		forged.OpCode = dhcpv4.OpcodeBootReply
		inject(t, cafe, "lan0", frame(laptopMAC, evil, net.ParseIP("10.200.1.66"), net.IPv4bcast, 67, 68, forged.ToBytes()))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		logMu.Lock()
		n := strings.Count(logb.String(), "suspicious DHCP ACK ignored")
		logMu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("forged ACKs not flagged; log:\n%s", logb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := s.Leases()
	if len(after) != 1 || after[0].Server != g.Server || len(after[0].DNS) != 1 || after[0].DNS[0] != g.DNS[0] || after[0].LeaseSeconds != 600 {
		t.Errorf("a forged ACK changed the lease: %+v", after)
	}

	// A local user (no privileges) sends a DHCP REQUEST for the laptop's
	// MAC with another transaction id to the server's port 67, from an
	// ordinary UDP socket. It must not become our client's transaction: the
	// server's retransmitted ACK for the real one is still believed.
	bogus, _ := dhcpv4.New(dhcpv4.WithTransactionID(dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}),
		dhcpv4.WithHwAddr(laptopMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	sendAsUser(t, l, laptop, "10.200.1.1:67", bogus.ToBytes())
	logMu.Lock()
	suspectsBefore := strings.Count(logb.String(), "suspicious DHCP ACK ignored")
	logMu.Unlock()
	macOut, err := cafe.Run("cat", "/sys/class/net/lan0/address")
	if err != nil {
		t.Fatal(err)
	}
	cafeMAC, err := net.ParseMAC(strings.TrimSpace(macOut))
	if err != nil {
		t.Fatal(err)
	}
	inject(t, cafe, "lan0", frame(laptopMAC, cafeMAC, net.ParseIP("10.200.1.1"), net.IPv4bcast, 67, 68, lease.ACK.ToBytes()))
	time.Sleep(time.Second) // a frame that is ignored leaves no other trace to wait for
	logMu.Lock()
	if n := strings.Count(logb.String(), "suspicious DHCP ACK ignored"); n != suspectsBefore {
		t.Errorf("after a local user's REQUEST, the server's own ACK was taken for suspicious:\n%s", logb.String())
	}
	logMu.Unlock()
	logMu.Lock()
	t.Logf("log:\n%s", logb.String())
	logMu.Unlock()
}

// TestMalformedOption121: a broken option 121 is reported, not silently
// taken for "no routes".
func TestMalformedOption121(t *testing.T) {
	m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionClasslessStaticRoute, Value: dhcpv4.OptionGeneric{Data: []byte{33, 1, 2}}}),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.ParseIP("10.0.0.1"))))
	l := decode("wan0", m)
	if !l.BadRoutes || l.Router.IsValid() {
		t.Errorf("%+v: want BadRoutes and option 3 ignored", l)
	}
	m2, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithOption(dhcpv4.OptRouter(net.ParseIP("10.0.0.1"))))
	if l := decode("wan0", m2); l.Router != netip.MustParseAddr("10.0.0.1") || l.BadRoutes {
		t.Errorf("no 121: %+v", l)
	}
}

func FuzzParseFrame(f *testing.F) {
	m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	f.Add(frame(net.HardwareAddr{1, 2, 3, 4, 5, 6}, net.HardwareAddr{1, 2, 3, 4, 5, 7}, net.IPv4(10, 0, 0, 1), net.IPv4bcast, 67, 68, m.ToBytes()))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err == nil {
			decode("x", fr.Msg)
		}
	})
}

func slogTo(b *strings.Builder, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return b.Write(p)
	}), nil))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

const udpChildEnv = "ROAMTUN_DHCPSNIFF_UDP_CHILD"

// TestUDPChild is sendAsUser's process: it sends one UDP datagram from an
// ordinary (unprivileged) socket.
func TestUDPChild(t *testing.T) {
	spec := os.Getenv(udpChildEnv)
	if spec == "" {
		return
	}
	dst, payload, _ := strings.Cut(spec, " ")
	b, err := hex.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp4", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// sendAsUser sends payload to dst over UDP from ns as the unprivileged lab
// user (a copy of this test binary run under setpriv).
func sendAsUser(t *testing.T, l *lab.Lab, ns *lab.Namespace, dst string, payload []byte) {
	t.Helper()
	uid, gid, err := lab.EnsureLabUser()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(l.Dir(), "udp-child")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bin, data, 0o755)
	out, err := ns.Run("setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(gid), "--clear-groups",
		"env", udpChildEnv+"="+dst+" "+hex.EncodeToString(payload), bin, "-test.run=^TestUDPChild$", "-test.count=1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestNoteChecksBeforeLookup: frames that cannot be our client's are
// dropped before any netlink lookup; a lookup is cached, so a flood of
// forged ACKs costs none.
func TestNoteChecksBeforeLookup(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	var lookups int
	s := &Source{lookup: func(int) (string, net.HardwareAddr, []netip.Addr) {
		lookups++
		return "wan0", mac, nil
	}}
	req := func(hw net.HardwareAddr, xid byte) *dhcpv4.DHCPv4 {
		m, _ := dhcpv4.New(dhcpv4.WithTransactionID(dhcpv4.TransactionID{xid}), dhcpv4.WithHwAddr(hw),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))
		return m
	}
	ack := func(xid byte) *dhcpv4.DHCPv4 {
		m, _ := dhcpv4.New(dhcpv4.WithTransactionID(dhcpv4.TransactionID{xid}), dhcpv4.WithHwAddr(mac),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 5)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))
		m.OpCode = dhcpv4.OpcodeBootReply
		return m
	}
	out := func(m *dhcpv4.DHCPv4, src net.HardwareAddr, sport uint16) Frame {
		return Frame{IfIndex: 2, Outgoing: true, SrcMAC: src, SrcIP: net.IPv4zero, DstIP: net.IPv4bcast, SrcPort: sport, DstPort: 67, Msg: m}
	}
	in := func(m *dhcpv4.DHCPv4) Frame {
		return Frame{IfIndex: 2, SrcMAC: other, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4bcast, SrcPort: 67, DstPort: 68, Msg: m}
	}
	for _, f := range []Frame{
		in(ack(1)),                   // an ACK where no request of ours was seen
		out(req(mac, 1), mac, 40000), // a local user's UDP from an unprivileged port
		out(req(other, 1), mac, 68),  // a client hardware address not the frame's
		{IfIndex: 2, SrcMAC: mac, SrcIP: net.IPv4zero, DstIP: net.IPv4bcast, SrcPort: 68, DstPort: 67, Msg: req(mac, 1)}, // incoming
	} {
		s.Note(f)
	}
	if lookups != 0 || len(s.ifaces) != 0 {
		t.Fatalf("frames that cannot be ours: %d lookups, state %v", lookups, s.ifaces)
	}
	s.Note(out(req(mac, 7), mac, 68)) // our client's REQUEST
	if lookups != 1 {
		t.Fatalf("our REQUEST: %d lookups, want 1", lookups)
	}
	for i := range 1000 {
		s.Note(in(ack(byte(100 + i%100)))) // forged: wrong transaction
	}
	if lookups != 1 {
		t.Errorf("1000 forged ACKs cost %d more lookups", lookups-1)
	}
	if !s.Note(in(ack(7))) || len(s.Leases()) != 1 {
		t.Errorf("the real ACK was not believed: %+v", s.Leases())
	}
}

// TestObserveNeedsTheAddress: a believed lease is a network only while its
// interface holds the leased address: a client that drops it on leaving
// the network (without a RELEASE on the wire) takes the network away, and
// it comes back with the address.
func TestObserveNeedsTheAddress(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	leased := netip.MustParseAddr("10.0.0.5")
	var addrs []netip.Addr
	s := &Source{lookup: func(int) (string, net.HardwareAddr, []netip.Addr) { return "wlan0", mac, addrs }}
	req, _ := dhcpv4.New(dhcpv4.WithTransactionID(dhcpv4.TransactionID{9}), dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))
	ack, _ := dhcpv4.New(dhcpv4.WithTransactionID(dhcpv4.TransactionID{9}), dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(leased.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))), dhcpv4.WithOption(dhcpv4.OptRouter(net.IPv4(10, 0, 0, 1))))
	ack.OpCode = dhcpv4.OpcodeBootReply
	s.Note(Frame{IfIndex: 2, Outgoing: true, SrcMAC: mac, SrcIP: net.IPv4zero, DstIP: net.IPv4bcast, SrcPort: 68, DstPort: 67, Msg: req})
	if !s.Note(Frame{IfIndex: 2, SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 2}, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4bcast,
		SrcPort: 67, DstPort: 68, Msg: ack}) {
		t.Fatal("the ACK was not believed")
	}
	observe := func() []watcher.Network {
		ns, err := s.Observe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	// Between the ACK and the client configuring it: not a network yet.
	if ns := observe(); len(ns) != 0 {
		t.Errorf("lease not configured yet: observed %+v", ns)
	}
	addrs = []netip.Addr{leased}
	if ns := observe(); len(ns) != 1 || ns[0].Interface != "wlan0" || ns[0].Gateway != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("lease configured: observed %+v", ns)
	}
	addrs = []netip.Addr{netip.MustParseAddr("192.168.1.9")} // left; another network's address
	if ns := observe(); len(ns) != 0 {
		t.Errorf("address dropped: observed %+v", ns)
	}
	addrs = []netip.Addr{leased}
	if ns := observe(); len(ns) != 1 || len(s.Leases()) != 1 {
		t.Errorf("address back: observed %+v, leases %+v", ns, s.Leases())
	}
}
