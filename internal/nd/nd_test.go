package nd

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
)

var (
	routerID = [8]byte{0x02, 0, 0, 0, 0, 0, 0, 1}
	hostID   = [8]byte{0x1c, 0x2d, 0x3e, 0x4f, 0x50, 0x61, 0x72, 0x83}
	prefix   = netip.MustParsePrefix("2001:db8:77::/64")
	dns6     = netip.MustParseAddr("2001:db8:beef::53")
)

func advert(t *testing.T, ra *ndp.RouterAdvertisement) []byte {
	t.Helper()
	p, err := Packet(ra, LinkLocal(routerID), AllNodes)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAdvertisementRoundTrip: what the far end sends is what the laptop
// takes: prefix + its interface identifier, the RDNSS server.
func TestAdvertisementRoundTrip(t *testing.T) {
	pkt := advert(t, Advertisement(prefix, []netip.Addr{dns6}, 1280))
	if RouterMessage(pkt) != TypeRA {
		t.Fatalf("RouterMessage = %d, want %d", RouterMessage(pkt), TypeRA)
	}
	ra, src, err := ParseRA(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if src != LinkLocal(routerID) {
		t.Errorf("source %s, want %s", src, LinkLocal(routerID))
	}
	hc, err := Host(ra, hostID)
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr("2001:db8:77:0:1c2d:3e4f:5061:7283")
	if hc.Addr != want || hc.Prefix != prefix || len(hc.DNS) != 1 || hc.DNS[0] != dns6 {
		t.Errorf("Host = %+v, want %s in %s, DNS %s", hc, want, prefix, dns6)
	}
}

// TestParseRARefuses: the RFC 4861 §6.1.2 checks.
func TestParseRARefuses(t *testing.T) {
	good := func() []byte { return advert(t, Advertisement(prefix, nil, 1280)) }
	for _, c := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"routed (hop limit 64)", func(p []byte) []byte { p[7] = 64; return p }},
		{"bad checksum", func(p []byte) []byte { p[len(p)-1] ^= 1; return p }},
		{"code 1", func(p []byte) []byte { p[41] = 1; return p }},
		{"global source", func(p []byte) []byte { p[8] = 0x20; return p }},
		{"truncated", func(p []byte) []byte { return p[:len(p)-8] }},
		{"not ICMPv6", func(p []byte) []byte { p[6] = 17; return p }},
		{"IPv4", func(p []byte) []byte { p[0] = 0x45; return p }},
	} {
		if _, _, err := ParseRA(c.mod(good())); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if _, _, err := ParseRA(good()); err != nil {
		t.Errorf("the good one: %v", err)
	}
}

// TestHost: what an advertisement must carry before the laptop takes IPv6.
func TestHost(t *testing.T) {
	pi := func(mod func(*ndp.PrefixInformation)) *ndp.RouterAdvertisement {
		ra := Advertisement(prefix, []netip.Addr{dns6}, 1280)
		mod(ra.Options[0].(*ndp.PrefixInformation))
		return ra
	}
	for _, c := range []struct {
		name string
		ra   *ndp.RouterAdvertisement
		want error
	}{
		{"good", pi(func(*ndp.PrefixInformation) {}), nil},
		{"router lifetime 0", func() *ndp.RouterAdvertisement {
			ra := Advertisement(prefix, nil, 1280)
			ra.RouterLifetime = 0
			return ra
		}(), ErrNoDefaultRouter},
		{"a /48", pi(func(p *ndp.PrefixInformation) { p.PrefixLength = 48 }), ErrNoPrefix},
		{"no A flag", pi(func(p *ndp.PrefixInformation) { p.AutonomousAddressConfiguration = false }), ErrNoPrefix},
		{"expired", pi(func(p *ndp.PrefixInformation) { p.ValidLifetime, p.PreferredLifetime = 0, 0 }), ErrNoPrefix},
		{"preferred > valid", pi(func(p *ndp.PrefixInformation) { p.PreferredLifetime = p.ValidLifetime + time.Second }), ErrNoPrefix},
		{"no prefix", &ndp.RouterAdvertisement{RouterLifetime: time.Minute}, ErrNoPrefix},
	} {
		if _, err := Host(c.ra, hostID); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestSolicitation(t *testing.T) {
	rs := Solicitation(hostID)
	if RouterMessage(rs) != TypeRS || !IsSolicitation(rs) {
		t.Fatalf("not a valid solicitation: % x", rs)
	}
	rs[7] = 1
	if IsSolicitation(rs) {
		t.Error("a routed solicitation (hop limit 1) was accepted")
	}
}

// TestRouterMessageCheap: the data path's check allocates nothing and
// passes ordinary packets.
func TestRouterMessageCheap(t *testing.T) {
	echo := advert(t, &ndp.RouterAdvertisement{})
	echo[40] = 128 // an echo request
	v4 := make([]byte, 60)
	v4[0] = 0x45
	for _, p := range [][]byte{echo, v4, nil, make([]byte, 10)} {
		if RouterMessage(p) != 0 {
			t.Errorf("RouterMessage(% x) != 0", p)
		}
	}
	if n := testing.AllocsPerRun(100, func() { RouterMessage(echo) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

func FuzzParseRA(f *testing.F) {
	p, _ := Packet(Advertisement(prefix, []netip.Addr{dns6}, 1280), LinkLocal(routerID), AllNodes)
	f.Add(p)
	f.Fuzz(func(t *testing.T, b []byte) {
		if ra, _, err := ParseRA(b); err == nil {
			Host(ra, hostID)
		}
		IsSolicitation(b)
	})
}
