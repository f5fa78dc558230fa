package tunnel

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/roamtun/roamtun/internal/nd"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// fakeND is the link and TUN as the laptop's router discovery sees them:
// solicitations sent are counted, and the far end "answers" the first one
// with all of ras.
type fakeND struct {
	msgs  chan []byte
	ras   [][]byte
	sent  int
	addrs []netip.Addr
	done  chan struct{}
}

func (f *fakeND) WritePacket(pkt []byte) error {
	if nd.RouterMessage(pkt) == nd.TypeRS && nd.IsSolicitation(pkt) {
		if f.sent == 0 {
			for _, ra := range f.ras {
				f.msgs <- ra
			}
		}
		f.sent++
	}
	return nil
}
func (f *fakeND) Done() <-chan struct{}       { return f.done }
func (f *fakeND) AddAddr6(a netip.Addr) error { f.addrs = append(f.addrs, a); return nil }
func raPacket(t *testing.T, ra *ndp.RouterAdvertisement) []byte {
	t.Helper()
	p, err := nd.Packet(ra, nd.LinkLocal([8]byte{2, 0, 0, 0, 0, 0, 0, 1}), nd.AllNodes)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSolicit: the laptop takes IPv6 only from a usable advertisement; with
// none (nothing, a router lifetime of 0, a prefix it must not use, a
// forged packet) the session says IPv6 false and ::/0 stays unreachable.
func TestSolicit(t *testing.T) {
	good := nd.Advertisement(netip.MustParsePrefix("2001:db8:77::/64"), []netip.Addr{
		netip.MustParseAddr("2001:db8:beef::53"), netip.MustParseAddr("::1")}, 1280)
	noRouter := nd.Advertisement(netip.MustParsePrefix("2001:db8:77::/64"), nil, 1280)
	noRouter.RouterLifetime = 0
	uplink := nd.Advertisement(netip.MustParsePrefix("2001:db8:1::/64"), nil, 1280)
	forged := raPacket(t, good)
	forged[7] = 64 // routed from afar
	id := [8]byte{0x1c, 0x2d, 0x3e, 0x4f, 0x50, 0x61, 0x72, 0x83}
	for _, c := range []struct {
		name     string
		ras      [][]byte
		wantAddr string
		wantDNS  int
	}{
		{"good", [][]byte{raPacket(t, good)}, "2001:db8:77:0:1c2d:3e4f:5061:7283", 1},
		{"bad then good", [][]byte{raPacket(t, noRouter), raPacket(t, good)}, "2001:db8:77:0:1c2d:3e4f:5061:7283", 1},
		{"none", nil, "", 0},
		{"router lifetime 0", [][]byte{raPacket(t, noRouter)}, "", 0},
		{"the uplink's prefix", [][]byte{raPacket(t, uplink)}, "", 0},
		{"forged", [][]byte{forged}, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeND{msgs: make(chan []byte, 4), ras: c.ras, done: make(chan struct{})}
			o := &SessionOptions{RAWait: 300 * time.Millisecond, Link: ppp.Config{Forbidden: func() []ppp.Forbidden {
				return []ppp.Forbidden{{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Why: "the uplink's subnet"}}
			}}}
			s := solicit(context.Background(), o, f, f.msgs, f, ppp.Session{IPv6: true, LocalIfID: id}, slog.New(slog.DiscardHandler))
			if c.wantAddr == "" {
				if s.IPv6 || s.Addr6.IsValid() || len(f.addrs) > 0 {
					t.Errorf("IPv6 %v, address %s, configured %v; want none", s.IPv6, s.Addr6, f.addrs)
				}
				return
			}
			want := netip.MustParseAddr(c.wantAddr)
			if !s.IPv6 || s.Addr6 != want || len(f.addrs) != 1 || f.addrs[0] != want || len(s.DNS6) != c.wantDNS {
				t.Errorf("IPv6 %v, address %s, configured %v, DNS %v; want %s and %d DNS", s.IPv6, s.Addr6, f.addrs, s.DNS6, want, c.wantDNS)
			}
		})
	}
}

// TestSolicitEndsWithLink: a link that ends while waiting ends the wait.
func TestSolicitEndsWithLink(t *testing.T) {
	f := &fakeND{msgs: make(chan []byte, 4), done: make(chan struct{})}
	close(f.done)
	s := solicit(context.Background(), &SessionOptions{RAWait: time.Hour}, f, f.msgs, f, ppp.Session{IPv6: true}, slog.New(slog.DiscardHandler))
	if s.IPv6 {
		t.Error("IPv6 after the link ended")
	}
}
