package route_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/internal/route"

	"github.com/roamtun/roamtun/internal/tun"

	"github.com/roamtun/roamtun/internal/journal"
	"github.com/roamtun/roamtun/lab"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// cafeLab is laptop (wan0) ⇄ cafe (lan0) with IPv4 and global IPv6 routes
// through the cafe: the untrusted network.
func cafeLab(t *testing.T) (*lab.Lab, *lab.Namespace, *lab.Namespace) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "nft")
	laptop, cafe, err := l.CafeLink("10.200.1.2/24")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"sysctl", "-qw", "net.ipv6.conf.wan0.accept_dad=0"},
		{"ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "wan0", "nodad"},
		{"ip", "route", "add", "default", "via", "10.200.1.1"},
		{"ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"},
	} {
		if _, err := laptop.Run(c...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cafe.Run("ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "lan0", "nodad"); err != nil {
		t.Fatal(err)
	}
	return l, laptop, cafe
}

// TestRoutingTable: the server via the cafe gateway, everything else via the
// TUN, option 121 style routes in main change nothing, IPv6 unreachable; a
// crash (no teardown) is undone exactly by replaying the journal.
func TestRoutingTable(t *testing.T) {
	_, laptop, _ := cafeLab(t)
	before := laptop.NetState(t)
	state := t.TempDir()
	server := netip.MustParseAddr("10.200.2.2")

	var dev *tun.Device
	err := laptop.Do(func() error {
		j, err := journal.Open(state)
		if err != nil {
			return err
		}
		defer j.Close() // a crash: no teardown
		path, err := route.FindPath(server, "rt0")
		if err != nil {
			return err
		}
		if path.Dev != "wan0" || path.Gateway.String() != "10.200.1.1" {
			t.Errorf("path %v", path)
		}
		r := route.NewRouting(route.RoutingOptions{Server: server, ServerPort: 22, Path: path,
			IPv6: "block", Lockdown: true, Journal: j})
		if err := r.Setup(); err != nil {
			return err
		}
		if dev, err = tun.Open("rt0", 1200); err != nil {
			return err
		}
		if err := dev.Configure(netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.1"), 1200, nil, nil); err != nil {
			return err
		}
		return r.TunnelUp("rt0", ppp.Session{})
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		if got := laptop.RouteGet("192.0.2.7"); !strings.Contains(got, "dev rt0") {
			t.Errorf("%s: far address: %s, want via rt0", what, got)
		}
		if got := laptop.RouteGet(server.String()); !strings.Contains(got, "via 10.200.1.1 dev wan0") {
			t.Errorf("%s: server: %s, want via the cafe gateway", what, got)
		}
		if got := laptop.RouteGet("2001:db8:99::1"); !strings.Contains(got, "unreachable") && !strings.HasPrefix(got, "error") {
			t.Errorf("%s: IPv6: %s, want unreachable", what, got)
		}
	}
	check("up")
	// TunnelVision: DHCP option 121 routes land in main; they must not win.
	for _, p := range []string{"0.0.0.0/1", "128.0.0.0/1"} {
		if _, err := laptop.Run("ip", "route", "add", p, "via", "10.200.1.1"); err != nil {
			t.Fatal(err)
		}
	}
	check("with 0.0.0.0/1 and 128.0.0.0/1 in main")
	for _, p := range []string{"0.0.0.0/1", "128.0.0.0/1"} {
		laptop.Run("ip", "route", "del", p)
	}
	// The TUN goes (redialing): with lockdown nothing goes direct.
	laptop.Do(func() error { return dev.Close() })
	if got := laptop.RouteGet("192.0.2.7"); !strings.Contains(got, "unreachable") && !strings.HasPrefix(got, "error") {
		t.Errorf("tunnel down + lockdown: %s, want unreachable", got)
	}
	if got := laptop.RouteGet(server.String()); !strings.Contains(got, "dev wan0") {
		t.Errorf("tunnel down: server %s, want still reachable", got)
	}
	out, _ := laptop.Run("nft", "list", "table", "inet", route.NFTTable)
	if !strings.Contains(out, `oifname "wan0"`) {
		t.Errorf("lockdown table missing:\n%s", out)
	}
	if laptop.NetState(t) == before {
		t.Fatal("nothing changed?")
	}

	// The next run (or roamtun cleanup) replays the journal.
	err = laptop.Do(func() error {
		j, err := journal.Open(state)
		if err != nil {
			return err
		}
		defer j.Close()
		n, err := j.Replay(context.Background(), route.Undoers())
		if n == 0 {
			t.Errorf("replay undid nothing")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := laptop.NetState(t); after != before {
		t.Fatalf("not restored exactly.\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRoutingTeardownOnLink: a server on the cafe link itself (no gateway),
// no lockdown, IPv6 tunnelled; Teardown restores exactly, twice is harmless.
func TestRoutingTeardownOnLink(t *testing.T) {
	_, laptop, _ := cafeLab(t)
	before := laptop.NetState(t)
	server := netip.MustParseAddr("10.200.1.1")
	err := laptop.Do(func() error {
		path, err := route.FindPath(server, "rt0")
		if err != nil {
			return err
		}
		if path.Gateway.IsValid() || path.Dev != "wan0" {
			t.Errorf("on-link path %v", path)
		}
		r := route.NewRouting(route.RoutingOptions{Server: server, ServerPort: 22, Path: path, IPv6: "tunnel"})
		if err := r.Setup(); err != nil {
			return err
		}
		if got := laptop.RouteGet(server.String()); !strings.Contains(got, "dev wan0") || strings.Contains(got, " via ") {
			t.Errorf("on-link server: %s", got)
		}
		// No lockdown, no TUN: IPv4 falls back to main, IPv6 still never leaves.
		if got := laptop.RouteGet("192.0.2.7"); !strings.Contains(got, "via 10.200.1.1 dev wan0") {
			t.Errorf("no lockdown, tunnel down: %s", got)
		}
		if got := laptop.RouteGet("2001:db8:99::1"); !strings.Contains(got, "unreachable") && !strings.HasPrefix(got, "error") {
			t.Errorf("IPv6 with the tunnel down: %s, want unreachable", got)
		}
		if err := r.Teardown(); err != nil {
			return err
		}
		return r.Teardown()
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := laptop.NetState(t); after != before {
		t.Fatalf("not restored exactly.\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
