package ppp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamtun/roamtun/internal/fakeclock"
)

const testSecrets = `# client  server  secret
client  server  "client-to-server"
server  client  "server-to-client"
`

func mustSecrets(t *testing.T, text string) *Secrets {
	t.Helper()
	s, err := ParseSecrets("chap-secrets", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func clientConfig(s *Secrets) Config {
	return Config{LocalName: "client", RemoteName: "server", Secrets: s, RequireCHAP: true,
		RequestDNS: true, RestartTimer: 200 * time.Millisecond, EchoInterval: 200 * time.Millisecond}
}

func serverConfig(s *Secrets) Config {
	return Config{LocalName: "server", RemoteName: "client", Secrets: s, RequireCHAP: true, Passive: true,
		LocalIP: netip.MustParseAddr("10.9.0.1"), PeerIP: netip.MustParseAddr("10.9.0.2"),
		DNS:          []netip.Addr{netip.MustParseAddr("10.9.0.53"), netip.MustParseAddr("10.9.0.54")},
		RestartTimer: 200 * time.Millisecond, EchoInterval: 200 * time.Millisecond}
}

type runResult struct {
	l   *Link
	err chan error
}

func start(t *testing.T, rw io.ReadWriter, cfg Config) runResult {
	t.Helper()
	l := NewLink(rw, cfg)
	r := runResult{l: l, err: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		<-l.Done()
	})
	go func() { r.err <- l.Run(ctx) }()
	return r
}

func waitUp(t *testing.T, rs ...runResult) {
	t.Helper()
	for _, r := range rs {
		select {
		case <-r.l.Up():
		case err := <-r.err:
			t.Fatalf("link ended before up: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("link not up after 20s")
		}
	}
}

func waitErr(t *testing.T, r runResult) error {
	t.Helper()
	select {
	case err := <-r.err:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("link did not end after 20s")
		return nil
	}
}

// ipv4 builds a minimal IPv4-looking packet.
func ipv4(payload string) []byte { return append([]byte{0x45, 0, 0, 0}, payload...) }

func TestLinkUpBothWaysCHAP(t *testing.T) {
	a, b := net.Pipe()
	s := mustSecrets(t, testSecrets)
	cli := start(t, a, clientConfig(s))
	var mu sync.Mutex
	var got []string
	srvCfg := serverConfig(s)
	srv := NewLink(b, srvCfg)
	srv.SetPacketHandler(func(p []byte) { mu.Lock(); got = append(got, string(p[4:])); mu.Unlock() })
	srvR := runResult{l: srv, err: make(chan error, 1)}
	go func() { srvR.err <- srv.Run(context.Background()) }()
	waitUp(t, cli, srvR)

	cs, ss := cli.l.Session(), srv.Session()
	if cs.LocalIP != netip.MustParseAddr("10.9.0.2") || cs.PeerIP != netip.MustParseAddr("10.9.0.1") {
		t.Errorf("client session %+v", cs)
	}
	if len(cs.DNS) != 2 || cs.DNS[0] != netip.MustParseAddr("10.9.0.53") || cs.DNS[1] != netip.MustParseAddr("10.9.0.54") {
		t.Errorf("client DNS %v", cs.DNS)
	}
	if ss.LocalIP != netip.MustParseAddr("10.9.0.1") || ss.PeerIP != netip.MustParseAddr("10.9.0.2") || ss.PeerName != "client" {
		t.Errorf("server session %+v", ss)
	}
	if cs.PeerName != "server" || cs.MTU != 1200 {
		t.Errorf("client peer name %q mtu %d", cs.PeerName, cs.MTU)
	}
	for _, m := range []string{"one", "two", "three"} {
		if err := cli.l.WritePacket(ipv4(m)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	if len(got) != 3 || got[0] != "one" || got[2] != "three" {
		t.Errorf("server got %q", got)
	}
	mu.Unlock()
	if err := cli.l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, cli); !errors.Is(err, ErrClosed) {
		t.Errorf("client ended with %v, want ErrClosed", err)
	}
	if err := waitErr(t, srvR); !errors.Is(err, ErrTerminated) {
		t.Errorf("server ended with %v, want ErrTerminated", err)
	}
}

func TestLinkAuthFailures(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cliS, srvS   string
		cliSide, who string // expected AuthError on the client
		srvSide      string
	}{
		{"client secret wrong", "client server wrong\nserver client server-to-client\n", testSecrets, "local", "client", "peer"},
		{"server secret wrong", "client server client-to-server\nserver client wrong\n", testSecrets, "peer", "server", "local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			cli := start(t, a, clientConfig(mustSecrets(t, tc.cliS)))
			srv := start(t, b, serverConfig(mustSecrets(t, tc.srvS)))
			cerr, serr := waitErr(t, cli), waitErr(t, srv)
			var ae *AuthError
			if !errors.As(cerr, &ae) || ae.Side != tc.cliSide || ae.Name != tc.who {
				t.Errorf("client error %v, want AuthError side %s name %s", cerr, tc.cliSide, tc.who)
			}
			if !errors.As(serr, &ae) || ae.Side != tc.srvSide {
				t.Errorf("server error %v, want AuthError side %s", serr, tc.srvSide)
			}
		})
	}
}

// freezable stops passing data in both directions when frozen, like a far
// end that vanished without closing the connection.
type freezable struct {
	net.Conn
	mu     sync.Mutex
	frozen bool
}

func (f *freezable) Write(p []byte) (int, error) {
	f.mu.Lock()
	frozen := f.frozen
	f.mu.Unlock()
	if frozen {
		return len(p), nil
	}
	return f.Conn.Write(p)
}

func (f *freezable) freeze() { f.mu.Lock(); f.frozen = true; f.mu.Unlock() }

func TestLinkEchoTimeout(t *testing.T) {
	a, b := net.Pipe()
	s := mustSecrets(t, testSecrets)
	cli := start(t, a, clientConfig(s))
	fb := &freezable{Conn: b}
	sc := serverConfig(s)
	sc.EchoInterval = 0 // only the client notices: the server would time out too and hang up
	srv := start(t, fb, sc)
	waitUp(t, cli, srv)
	fb.freeze()
	if err := waitErr(t, cli); !errors.Is(err, ErrEchoTimeout) {
		t.Errorf("client ended with %v, want ErrEchoTimeout", err)
	}
}

// TestLinkEchoAdaptive: while the far end sends, the keepalive sends no
// echoes (pppd's lcp-echo-adaptive); the far end counts what it receives,
// which is nothing but our echo requests since it sends all the packets.
func TestLinkEchoAdaptive(t *testing.T) {
	a, b := net.Pipe()
	s := mustSecrets(t, testSecrets)
	cc := clientConfig(s)
	cc.EchoInterval = 100 * time.Millisecond
	cli := start(t, a, cc)
	sc := serverConfig(s)
	sc.EchoInterval = 0
	srv := start(t, b, sc)
	waitUp(t, cli, srv)
	pkt := make([]byte, 20)
	pkt[0] = 0x45
	const ticks = 30
	before := srv.l.Stats().RxFrames
	for t0 := time.Now(); time.Since(t0) < ticks*cc.EchoInterval; time.Sleep(5 * time.Millisecond) {
		if err := srv.l.WritePacket(pkt); err != nil {
			t.Fatal(err)
		}
	}
	// Without adaptation there would be one echo each tick; a gross bound
	// leaves room for a loaded machine's stalls.
	if echoes := srv.l.Stats().RxFrames - before; echoes > ticks/4 {
		t.Errorf("%d echo requests in %d intervals of steady traffic from the far end", echoes, ticks)
	}
	// Idle again: the echoes come back (the far end hears them).
	before = srv.l.Stats().RxFrames
	deadline := time.Now().Add(20 * time.Second)
	for srv.l.Stats().RxFrames == before {
		if time.Now().After(deadline) {
			t.Fatal("no echo request on an idle link")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loop is a stream wired to itself: everything written is read back.
type loop struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (l loop) Read(p []byte) (int, error) { return l.r.Read(p) }
func (l loop) Write(p []byte) (int, error) {
	go l.w.Write(append([]byte(nil), p...))
	return len(p), nil
}
func (l loop) Close() error { l.r.Close(); return l.w.Close() }

func TestLinkLoopback(t *testing.T) {
	r, w := io.Pipe()
	cli := start(t, loop{r, w}, Config{RestartTimer: 100 * time.Millisecond})
	if err := waitErr(t, cli); !errors.Is(err, ErrLoopback) {
		t.Errorf("ended with %v, want ErrLoopback", err)
	}
}

func TestLinkSurvivesJunkAndUnknownProtocols(t *testing.T) {
	a, b := net.Pipe()
	s := mustSecrets(t, testSecrets)
	cli := start(t, a, clientConfig(s))
	got := make(chan string, 10)
	srvL := NewLink(b, serverConfig(s))
	srvL.SetPacketHandler(func(p []byte) { got <- string(p[4:]) })
	srv := runResult{l: srvL, err: make(chan error, 1)}
	go func() { srv.err <- srvL.Run(context.Background()) }()
	t.Cleanup(func() { srvL.Close() })
	waitUp(t, cli, srv)

	// From the client's side of the wire: a CCP Configure-Request (pppd
	// offers compression), a VJ-compressed packet, garbage, a bad FCS, a
	// truncated LCP packet, an unknown LCP code.
	raw := func(b []byte) {
		cli.l.wmu.Lock()
		cli.l.rw.Write(b)
		cli.l.wmu.Unlock()
	}
	tx := TxOptions{}
	raw(AppendFrame(nil, ProtoCCP, []byte{1, 1, 0, 8, 0x15, 4, 0, 0x3c}, tx))
	raw(AppendFrame(nil, ProtoVJComp, []byte{1, 2, 3}, tx))
	raw([]byte("\x7e\x01\x02garbage\x7e"))
	bad := AppendFrame(nil, ProtoIPv4, ipv4("bad"), tx)
	bad[4] ^= 0xff
	raw(bad)
	raw(AppendFrame(nil, ProtoLCP, []byte{codeConfReq, 9, 0, 200, 1, 4}, tx))
	raw(AppendFrame(nil, ProtoLCP, []byte{42, 9, 0, 4}, tx))
	raw(AppendFrame(nil, ProtoIPCP, []byte{codeConfReq, 9, 0, 10, 3, 200, 1, 2, 3}, tx))

	if err := cli.l.WritePacket(ipv4("still here")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "still here" {
			t.Errorf("got %q", m)
		}
	case err := <-srv.err:
		t.Fatalf("server link ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("packet lost after junk")
	}
	// Several echo intervals later it is still up.
	time.Sleep(time.Second)
	if st := srvL.Stats(); st.BadFrames < 3 { // garbage, bad FCS, truncated LCP
		t.Errorf("server counted %d bad frames, want ≥ 3", st.BadFrames)
	}
	select {
	case err := <-srv.err:
		t.Fatalf("server link ended: %v", err)
	case err := <-cli.err:
		t.Fatalf("client link ended: %v", err)
	default:
	}
}

func TestLinkIPv6CP(t *testing.T) {
	a, b := net.Pipe()
	s := mustSecrets(t, testSecrets)
	cc, sc := clientConfig(s), serverConfig(s)
	cc.IPv6, sc.IPv6 = true, true
	cli, srv := start(t, a, cc), start(t, b, sc)
	waitUp(t, cli, srv)
	cs, ss := cli.l.Session(), srv.l.Session()
	if !cs.IPv6 || cs.LocalIfID != ss.PeerIfID || cs.PeerIfID != ss.LocalIfID || cs.LocalIfID == cs.PeerIfID {
		t.Errorf("ifids: client %+v server %+v", cs, ss)
	}
}

func TestLinkIPv6RejectedCarriesIPv4(t *testing.T) {
	a, b := net.Pipe()
	s := mustSecrets(t, testSecrets)
	cc := clientConfig(s)
	cc.IPv6 = true // the server does not speak IPv6CP: Protocol-Reject
	cli, srv := start(t, a, cc), start(t, b, serverConfig(s))
	waitUp(t, cli, srv)
	if cli.l.Session().IPv6 {
		t.Error("IPv6 up although the far end rejected IPv6CP")
	}
}

func TestWritePacketNoAlloc(t *testing.T) {
	l := NewLink(struct {
		io.Reader
		io.Writer
	}{nil, io.Discard}, Config{})
	l.v4open.Store(true)
	pkt := ipv4(string(make([]byte, 1196)))
	if n := testing.AllocsPerRun(1000, func() { l.WritePacket(pkt) }); n != 0 {
		t.Errorf("WritePacket allocates %v per packet", n)
	}
}

func BenchmarkWritePacket(b *testing.B) {
	l := NewLink(struct {
		io.Reader
		io.Writer
	}{nil, io.Discard}, Config{})
	l.v4open.Store(true)
	l.setTxOptions(TxOptions{ACFC: true, PFC: true}, 1500) // as negotiated with any peer on an 8-bit-clean link
	pkt := ipv4(string(benchPayload(1196)))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		l.WritePacket(pkt)
	}
}

// TestLinkRefusesFarEndAddresses: a client refuses addresses from a far end
// that would pull traffic out of the tunnel or break it, and the link ends
// naming what and why.
func TestLinkRefusesFarEndAddresses(t *testing.T) {
	forbidden := func() []Forbidden {
		return []Forbidden{
			{netip.MustParsePrefix("198.51.100.7/32"), "the ssh server's address"},
			{netip.MustParsePrefix("10.200.1.0/24"), "inside the uplink's subnet 10.200.1.0/24"},
		}
	}
	a := netip.MustParseAddr
	for _, c := range []struct {
		name        string
		local, peer string // what the far end assigns us, and claims for itself
		dns         string
		want        string
	}{
		{"server's address as ours", "198.51.100.7", "10.9.0.1", "10.9.0.53", "our address 198.51.100.7 from the far end: the ssh server's address"},
		{"café gateway as its own", "10.9.0.2", "10.200.1.1", "10.9.0.53", "its address 10.200.1.1 from the far end: inside the uplink's subnet"},
		{"loopback", "127.0.0.1", "10.9.0.1", "10.9.0.53", "a loopback address"},
		{"multicast", "10.9.0.2", "224.0.0.251", "10.9.0.53", "a multicast address"},
		{"broadcast", "255.255.255.255", "10.9.0.1", "10.9.0.53", "the broadcast address"},
		{"link-local", "169.254.9.2", "10.9.0.1", "10.9.0.53", "a link-local address"},
		{"same both ends", "10.9.0.2", "10.9.0.2", "10.9.0.53", "both ends would be 10.9.0.2"},
		{"dns 0.0.0.1", "10.9.0.2", "10.9.0.1", "0.0.0.1", "DNS server 0.0.0.1 from the far end: a reserved address"},
		{"dns broadcast", "10.9.0.2", "10.9.0.1", "255.255.255.255", "DNS server 255.255.255.255 from the far end: the broadcast address"},
		{"dns café resolver", "10.9.0.2", "10.9.0.1", "10.200.1.1", "DNS server 10.200.1.1 from the far end: inside the uplink's subnet"},
	} {
		t.Run(c.name, func(t *testing.T) {
			secrets := mustSecrets(t, testSecrets)
			ca, cb := net.Pipe()
			cc := clientConfig(secrets)
			cc.Forbidden = forbidden
			sc := serverConfig(secrets)
			sc.LocalIP, sc.PeerIP, sc.DNS = a(c.peer), a(c.local), []netip.Addr{a(c.dns)}
			client := start(t, ca, cc)
			start(t, cb, sc)
			err := waitErr(t, client)
			if !errors.Is(err, ErrNegotiation) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("client ended with %v, want a negotiation error with %q", err, c.want)
			}
			select {
			case <-client.l.Up():
				t.Error("the link came up with the refused addresses")
			default:
			}
		})
	}
}

// TestLCPGivesUpInVirtualTime: a far end that never answers gets RFC 1661's
// max-configure (10) Configure-Requests, one per restart timer (3 s), and
// then the link fails — 30 s of protocol time run on a fake clock.
func TestLCPGivesUpInVirtualTime(t *testing.T) {
	clock := fakeclock.New(time.Unix(0, 0))
	ours, theirs := net.Pipe()
	reqs := make(chan int, 64)
	go func() {
		d := NewDecoder(1500)
		n := 0
		buf := make([]byte, 4096)
		for {
			k, err := theirs.Read(buf)
			if err != nil {
				return
			}
			d.Feed(buf[:k], func(proto uint16, p []byte) {
				if proto == ProtoLCP && len(p) > 0 && p[0] == 1 { // Configure-Request
					n++
					reqs <- n
				}
			})
		}
	}()
	cfg := Config{LocalName: "client", AfterFunc: clock.AfterFunc}
	l := start(t, ours, cfg)
	for want := 1; want <= 10; want++ {
		select {
		case n := <-reqs:
			if n != want {
				t.Fatalf("Configure-Request %d, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no Configure-Request %d", want)
		}
		for clock.Pending() == 0 { // the restart timer is armed after the send
			time.Sleep(time.Millisecond)
		}
		clock.Advance(3 * time.Second)
	}
	err := waitErr(t, l)
	if !errors.Is(err, ErrNegotiation) {
		t.Errorf("after max-configure: %v, want a negotiation error", err)
	}
	select {
	case n := <-reqs:
		t.Errorf("a Configure-Request (%d) past max-configure", n)
	default:
	}
	theirs.Close()
}
