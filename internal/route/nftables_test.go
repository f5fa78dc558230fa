package route_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/internal/journal"
	"github.com/roamtun/roamtun/internal/route"
	"github.com/roamtun/roamtun/lab"
)

// What `nft list ruleset` printed after the nft scripts roamtun ran before
// issue #13 (lockdownScript; StartStandby with exempt "rt0", "ppp0" and
// SetProbes): the tables made through netlink must print the same.
const (
	wantLockdown6 = `table inet roamtun {
	chain output {
		type filter hook output priority filter; policy accept;
		oifname "wan0" ip6 daddr 2001:db8:2::2 tcp dport 2222 accept
		oifname "wan0" udp sport 68 udp dport 67 accept
		oifname "wan0" udp sport 546 udp dport 547 accept
		oifname "wan0" icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept
		oifname "wan0" counter packets 0 bytes 0 drop
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "wan0" counter packets 0 bytes 0 drop
	}
}
`
	wantLockdown4 = `table inet roamtun {
	chain output {
		type filter hook output priority filter; policy accept;
		oifname "wan0" ip daddr 10.200.2.2 tcp dport 22 accept
		oifname "wan0" udp sport 68 udp dport 67 accept
		oifname "wan0" udp sport 546 udp dport 547 accept
		oifname "wan0" icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept
		oifname "wan0" counter packets 0 bytes 0 drop
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "wan0" counter packets 0 bytes 0 drop
	}
}
`
	wantStandby = `table inet roamtun_standby {
	set open {
		type ifname
		elements = { "rt0",
			     "ppp0" }
	}

	set probes {
		type ipv4_addr . inet_service
		elements = { 10.0.0.1 . 22 }
	}

	set probes6 {
		type ipv6_addr . inet_service
		elements = { 2001:db8::1 . 22 }
	}

	chain output {
		type filter hook output priority filter; policy accept;
		oifname "lo" accept
		oifname @open accept
		ip daddr . tcp dport @probes accept
		ip6 daddr . tcp dport @probes6 accept
		udp sport 68 udp dport 67 accept
		udp sport 546 udp dport 547 accept
		icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept
		counter packets 0 bytes 0 drop
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname @open accept
		counter packets 0 bytes 0 drop
	}
}
`
)

var counters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// ruleset is `nft list ruleset` in ns, counters zeroed.
func ruleset(t *testing.T, ns *lab.Namespace) string {
	t.Helper()
	out, err := ns.Run("nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return counters.ReplaceAllString(out, "counter packets 0 bytes 0")
}

func wantRuleset(t *testing.T, ns *lab.Namespace, what, want string) {
	t.Helper()
	if got := ruleset(t, ns); got != want {
		t.Errorf("%s: nft list ruleset:\n%s\nwant:\n%s", what, got, want)
	}
}

// TestFirewallNetlink: the tables made through netlink are the ones the nft
// scripts made (as nft prints them back); a table is replaced in place;
// elements come and go; deleting what is gone is done, and errors say
// ENOENT.
func TestFirewallNetlink(t *testing.T) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "nft")
	ns, err := l.Namespace("fw")
	if err != nil {
		t.Fatal(err)
	}
	lockdown := func(server string, port int) *route.Table {
		return route.LockdownTable(route.RoutingOptions{Server: netip.MustParseAddr(server), ServerPort: port,
			Path: route.Path{Dev: "wan0"}})
	}
	fw := route.NewFirewall()
	// No PATH while the firewall works: no nft (nor anything else) can run.
	do := func(what string, fn func() error) {
		t.Helper()
		path := os.Getenv("PATH")
		os.Setenv("PATH", "/nonexistent")
		err := ns.Do(fn)
		os.Setenv("PATH", path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("lockdown v6", func() error { return fw.Replace(lockdown("2001:db8:2::2", 2222)) })
	wantRuleset(t, ns, "lockdown, IPv6 server", wantLockdown6)
	do("lockdown v4", func() error { return fw.Replace(lockdown("10.200.2.2", 22)) })
	wantRuleset(t, ns, "lockdown replaced, IPv4 server", wantLockdown4)

	var st *route.Standby
	do("standby", func() error {
		if st, err = route.StartStandby(nil, nil, []string{"rt0", "ppp0"}, 0); err != nil {
			return err
		}
		return st.SetProbes([]netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:22"), netip.MustParseAddrPort("[2001:db8::1]:22")})
	})
	wantRuleset(t, ns, "standby", wantLockdown4+wantStandby)

	elems := func(set string) string {
		out, err := ns.Run("nft", "list", "set", "inet", route.StandbyTable, set)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	do("open, twice", func() error {
		if err := st.Open("wan0"); err != nil {
			return err
		}
		return st.Open("wan0")
	})
	if got := elems("open"); strings.Count(got, `"`) != 6 || !strings.Contains(got, `"wan0"`) {
		t.Errorf("after Open(wan0): %s", got)
	}
	do("close, twice, and one never open", func() error {
		return errors.Join(st.Close("wan0"), st.Close("wan0"), st.Close("wlan9"))
	})
	if got := elems("open"); !strings.Contains(got, `elements = { "rt0", "ppp0" }`) {
		t.Errorf("after Close(wan0): %s", got)
	}
	do("probes", func() error {
		return st.SetProbes([]netip.AddrPort{netip.MustParseAddrPort("[::ffff:10.0.0.2]:2222")})
	})
	if got := elems("probes"); !strings.Contains(got, "elements = { 10.0.0.2 . 2222 }") {
		t.Errorf("probes: %s", got)
	}
	if got := elems("probes6"); strings.Contains(got, "elements") {
		t.Errorf("probes6 not emptied: %s", got)
	}
	do("no probes", func() error { return st.SetProbes(nil) })
	if got := elems("probes"); strings.Contains(got, "elements") {
		t.Errorf("probes not emptied: %s", got)
	}

	do("stop, twice", func() error { return errors.Join(st.Stop(nil), st.Stop(nil)) })
	wantRuleset(t, ns, "standby stopped", wantLockdown4)
	var gone error
	do("elements of a table that is gone", func() error {
		gone = fw.DeleteElements(route.StandbyTable, "open", route.IfnameElem("rt0"))
		return nil
	})
	if !errors.Is(gone, unix.ENOENT) {
		t.Errorf("deleting from a table that is gone: %v, want ENOENT", gone)
	}
	do("delete", func() error { return fw.Delete(route.NFTTable) })
	do("delete again", func() error {
		if err := fw.Delete(route.NFTTable); !errors.Is(err, unix.ENOENT) {
			return errors.New("deleting a table that is gone: want ENOENT, got " + errString(err))
		}
		return nil
	})
	wantRuleset(t, ns, "all deleted", "")
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestFirewallUndo: journal entries of nftables tables, this version's and
// those written with the nft script (before issue #13), are undone by table
// name; a table already gone is undone; another program's table is refused
// and left in place.
func TestFirewallUndo(t *testing.T) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "nft")
	ns, err := l.Namespace("fw")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"nft", "add", "table", "inet", "victim"},
		{"nft", "add", "table", "inet", route.NFTTable},
		{"nft", "add", "table", "inet", route.StandbyTable},
	} {
		if _, err := ns.Run(c...); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(data string) *journal.Entry {
		return &journal.Entry{Kind: route.KindNFT, File: "test", Data: []byte(data)}
	}
	for _, tc := range []struct {
		name, data string
		refused    bool
	}{
		{"old format, with the script", `{"table":"roamtun","script":"table inet roamtun {}\ndelete table inet roamtun\n"}`, false},
		{"this format", `{"table":"roamtun_standby"}`, false},
		{"already gone", `{"table":"roamtun"}`, false},
		{"not ours", `{"table":"victim"}`, true},
		{"not ours, smuggled", `{"table":"roamtun\ndelete table inet victim"}`, true},
	} {
		err := ns.Do(func() error { return route.Undo(context.Background(), entry(tc.data)) })
		if tc.refused != (err != nil) {
			t.Errorf("%s: undo: %v, refused %v", tc.name, err, tc.refused)
		}
	}
	if got := ruleset(t, ns); got != "table inet victim {\n}\n" {
		t.Errorf("after undo, want only the victim's table:\n%s", got)
	}
}
