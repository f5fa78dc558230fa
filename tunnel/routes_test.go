package tunnel_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/internal/journal"
	"github.com/roamtun/roamtun/lab"
	"github.com/roamtun/roamtun/tunnel"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// netState is everything a run may touch in a namespace's networking, as
// text: it must be identical before and after.
func netState(t testing.TB, ns *lab.Namespace) string {
	t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-4", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-4", "rule"},
		{"ip", "-6", "rule"},
		{"ip", "-br", "link"},
		{"nft", "list", "ruleset"},
	} {
		out, err := ns.Run(argv...)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("$ " + strings.Join(argv, " ") + "\n" + out)
	}
	return b.String()
}

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

func routeGet(t *testing.T, ns *lab.Namespace, dst string) string {
	t.Helper()
	out, err := ns.Run("ip", "route", "get", dst)
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(out)
}

// TestRoutingTable: the server via the cafe gateway, everything else via the
// TUN, option 121 style routes in main change nothing, IPv6 unreachable; a
// crash (no teardown) is undone exactly by replaying the journal.
func TestRoutingTable(t *testing.T) {
	_, laptop, _ := cafeLab(t)
	before := netState(t, laptop)
	state := t.TempDir()
	server := netip.MustParseAddr("10.200.2.2")

	var tun *tunnel.TUN
	err := laptop.Do(func() error {
		j, err := journal.Open(state)
		if err != nil {
			return err
		}
		defer j.Close() // a crash: no teardown
		path, err := tunnel.FindPath(server, "rt0")
		if err != nil {
			return err
		}
		if path.Dev != "wan0" || path.Gateway.String() != "10.200.1.1" {
			t.Errorf("path %v", path)
		}
		r := tunnel.NewRouting(tunnel.RoutingOptions{Server: server, ServerPort: 22, Path: path,
			IPv6: "block", Lockdown: true, Journal: j})
		if err := r.Setup(); err != nil {
			return err
		}
		if tun, err = tunnel.OpenTUN("rt0", 1200); err != nil {
			return err
		}
		if err := tun.Configure(netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.1"), 1200, nil, nil); err != nil {
			return err
		}
		return r.TunnelUp("rt0", ppp.Session{})
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		if got := routeGet(t, laptop, "192.0.2.7"); !strings.Contains(got, "dev rt0") {
			t.Errorf("%s: far address: %s, want via rt0", what, got)
		}
		if got := routeGet(t, laptop, server.String()); !strings.Contains(got, "via 10.200.1.1 dev wan0") {
			t.Errorf("%s: server: %s, want via the cafe gateway", what, got)
		}
		if got := routeGet(t, laptop, "2001:db8:99::1"); !strings.Contains(got, "unreachable") && !strings.HasPrefix(got, "error") {
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
	laptop.Do(func() error { return tun.Close() })
	if got := routeGet(t, laptop, "192.0.2.7"); !strings.Contains(got, "unreachable") && !strings.HasPrefix(got, "error") {
		t.Errorf("tunnel down + lockdown: %s, want unreachable", got)
	}
	if got := routeGet(t, laptop, server.String()); !strings.Contains(got, "dev wan0") {
		t.Errorf("tunnel down: server %s, want still reachable", got)
	}
	out, _ := laptop.Run("nft", "list", "table", "inet", tunnel.NFTTable)
	if !strings.Contains(out, `oifname "wan0"`) {
		t.Errorf("lockdown table missing:\n%s", out)
	}
	if netState(t, laptop) == before {
		t.Fatal("nothing changed?")
	}

	// The next run (or roamtun cleanup) replays the journal.
	err = laptop.Do(func() error {
		j, err := journal.Open(state)
		if err != nil {
			return err
		}
		defer j.Close()
		n, err := j.Replay(context.Background(), tunnel.Undoers())
		if n == 0 {
			t.Errorf("replay undid nothing")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := netState(t, laptop); after != before {
		t.Fatalf("not restored exactly.\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRoutingTeardownOnLink: a server on the cafe link itself (no gateway),
// no lockdown, IPv6 tunnelled; Teardown restores exactly, twice is harmless.
func TestRoutingTeardownOnLink(t *testing.T) {
	_, laptop, _ := cafeLab(t)
	before := netState(t, laptop)
	server := netip.MustParseAddr("10.200.1.1")
	err := laptop.Do(func() error {
		path, err := tunnel.FindPath(server, "rt0")
		if err != nil {
			return err
		}
		if path.Gateway.IsValid() || path.Dev != "wan0" {
			t.Errorf("on-link path %v", path)
		}
		r := tunnel.NewRouting(tunnel.RoutingOptions{Server: server, ServerPort: 22, Path: path, IPv6: "tunnel"})
		if err := r.Setup(); err != nil {
			return err
		}
		if got := routeGet(t, laptop, server.String()); !strings.Contains(got, "dev wan0") || strings.Contains(got, " via ") {
			t.Errorf("on-link server: %s", got)
		}
		// No lockdown, no TUN: IPv4 falls back to main, IPv6 still never leaves.
		if got := routeGet(t, laptop, "192.0.2.7"); !strings.Contains(got, "via 10.200.1.1 dev wan0") {
			t.Errorf("no lockdown, tunnel down: %s", got)
		}
		if got := routeGet(t, laptop, "2001:db8:99::1"); !strings.Contains(got, "unreachable") && !strings.HasPrefix(got, "error") {
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
	if after := netState(t, laptop); after != before {
		t.Fatalf("not restored exactly.\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
