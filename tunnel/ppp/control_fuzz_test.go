package ppp

import (
	"encoding/binary"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fuzzLink is a link driven directly on the test goroutine (no Run): the
// fuzzer plays the far end. Timers are set far out so that none fires.
func fuzzLink(server bool) *Link {
	s, _ := ParseSecrets("s", []byte(testSecrets))
	cfg := Config{LocalName: "client", RemoteName: "server", Secrets: s, RequireCHAP: true, RequestDNS: true,
		IPv6: true, RestartTimer: time.Hour}
	if server {
		cfg = Config{LocalName: "server", Secrets: s, RequireCHAP: true, Passive: true, IPv6: true,
			LocalIP: netip.MustParseAddr("10.9.0.1"), PeerIP: netip.MustParseAddr("10.9.0.2"),
			DNS: []netip.Addr{netip.MustParseAddr("10.9.0.53")}, RestartTimer: time.Hour}
	}
	return NewLink(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(""), io.Discard}, cfg)
}

// packets splits fuzz data into (protocol, packet) pairs: 2 bytes of
// protocol index, 1 byte of length, then the packet.
func packets(data []byte, fn func(proto uint16, pkt []byte)) {
	protos := []uint16{ProtoLCP, ProtoCHAP, ProtoIPCP, ProtoIPv6CP, ProtoCCP, ProtoPAP, ProtoVJComp, 0x8031}
	for len(data) >= 2 {
		proto := protos[int(data[0])%len(protos)]
		n := min(int(data[1]), len(data)-2)
		fn(proto, data[2:2+n])
		data = data[2+n:]
	}
}

func pkt(proto byte, code, id byte, body ...byte) []byte {
	p := []byte{code, id, 0, 0}
	p = append(p, body...)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	return append([]byte{proto, byte(len(p))}, p...)
}

// FuzzControl feeds arbitrary control packets to both roles of the engine,
// once from a fresh link (negotiation) and once with every layer forced
// open: nothing may panic, and packets of other protocols never change
// LCP's state unless they end the link for a stated reason.
func FuzzControl(f *testing.F) {
	f.Add(append(pkt(0, codeConfReq, 1, 1, 4, 4, 0xb0, 2, 6, 0, 0, 0, 0, 3, 5, 0xc2, 0x23, 5, 5, 6, 1, 2, 3, 4, 7, 2, 8, 2),
		pkt(0, codeEchoReq, 2, 0, 0, 0, 1)...))
	f.Add(append(pkt(1, chapChallenge, 7, 4, 1, 2, 3, 4, 's', 'e', 'r', 'v', 'e', 'r'),
		pkt(1, chapResponse, 7, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 'c')...))
	f.Add(append(pkt(2, codeConfReq, 1, 3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0, 2, 6, 0, 0x2d, 0x0f, 1),
		pkt(2, codeConfNak, 1, 3, 6, 10, 9, 0, 2, 131, 6, 10, 9, 0, 53)...))
	f.Add(pkt(3, codeConfReq, 1, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(append(pkt(4, codeConfReq, 1, 0x1a, 4, 0x78, 0), pkt(0, codeTermReq, 3)...))
	f.Add([]byte{0, 3, 1, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, server := range []bool{false, true} {
			l := fuzzLink(server)
			l.lcp.f.passive = server
			l.lcp.f.open()
			l.lcp.f.lowerUp()
			packets(data, func(proto uint16, p []byte) { l.control(proto, p) })

			l = fuzzLink(server)
			l.lcp.f.state, l.authed = stOpened, true
			l.chap.start(true, true)
			for _, f := range []*fsm{l.ipcp.f, l.ipv6cp.f} {
				f.state = stOpened
			}
			packets(data, func(proto uint16, p []byte) {
				before := l.lcp.f.state
				l.control(proto, p)
				// Only a reasoned failure (authentication, negotiation)
				// may end the link from another protocol.
				if proto != ProtoLCP && l.lcp.f.state != before && l.err == nil {
					t.Fatalf("a %#04x packet moved LCP from %v to %v with no reason", proto, before, l.lcp.f.state)
				}
			})
		}
	})
}

// FuzzSecrets: the chap-secrets parser never panics, and its errors name
// the file and line.
func FuzzSecrets(f *testing.F) {
	f.Add([]byte(testSecrets))
	f.Add([]byte("a b \"c d\" *\n# x\n'e' f g\\ h 10.0.0.1\n"))
	f.Add([]byte("a b \"unterminated\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSecrets("chap-secrets", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "chap-secrets:") {
				t.Fatalf("error without FILE:LINE: %v", err)
			}
			return
		}
		s.Lookup("client", "server")
	})
}
