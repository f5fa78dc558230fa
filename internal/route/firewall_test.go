package route_test

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roamtun/roamtun/internal/journal"
	"github.com/roamtun/roamtun/internal/route"
	"github.com/roamtun/roamtun/internal/route/routetest"
)

// These tests need no root: they run the firewall operations against
// routetest.Firewall and compare its transcript.

// TestLockdownTableFake: the lockdown table for each kind of server, and a
// replacement (a roam to another uplink, another address) replaces.
func TestLockdownTableFake(t *testing.T) {
	for _, tc := range []struct {
		server string
		port   int
		dev    string
		want   string
	}{
		{"10.200.2.2", 22, "wan0", `replace table inet roamtun {
	chain output {
		type filter hook output priority filter; policy accept;
		oifname "wan0" ip daddr 10.200.2.2 tcp dport 22 accept
		oifname "wan0" udp sport 68 udp dport 67 accept
		oifname "wan0" udp sport 546 udp dport 547 accept
		oifname "wan0" icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept
		oifname "wan0" counter drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "wan0" counter drop
	}
}`},
		{"2001:db8:2::2", 2222, "wlp2s0", `replace table inet roamtun {
	chain output {
		type filter hook output priority filter; policy accept;
		oifname "wlp2s0" ip6 daddr 2001:db8:2::2 tcp dport 2222 accept
		oifname "wlp2s0" udp sport 68 udp dport 67 accept
		oifname "wlp2s0" udp sport 546 udp dport 547 accept
		oifname "wlp2s0" icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept
		oifname "wlp2s0" counter drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "wlp2s0" counter drop
	}
}`},
	} {
		fw := new(routetest.Firewall)
		o := route.RoutingOptions{Server: netip.MustParseAddr(tc.server), ServerPort: tc.port, Path: route.Path{Dev: tc.dev}}
		if err := fw.Replace(route.LockdownTable(o)); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{tc.want}, fw.Ops()); diff != "" {
			t.Errorf("%s: transcript (-want +got):\n%s", tc.server, diff)
		}
	}

	// Replacing: one table, the newest.
	fw := new(routetest.Firewall)
	o := route.RoutingOptions{Server: netip.MustParseAddr("10.200.2.2"), ServerPort: 22, Path: route.Path{Dev: "wan0"}}
	for _, dev := range []string{"wan0", "wlan0"} {
		o.Path.Dev = dev
		if err := fw.Replace(route.LockdownTable(o)); err != nil {
			t.Fatal(err)
		}
	}
	tables := fw.Tables()
	if len(tables) != 1 || !strings.Contains(tables[route.NFTTable].String(), `oifname "wlan0" counter drop`) ||
		strings.Contains(tables[route.NFTTable].String(), `"wan0"`) {
		t.Errorf("after replacing: %v", tables)
	}
}

// TestStandbyFake: the standby firewall through its life, as a table of
// operation → transcript, with the journal entry it keeps.
func TestStandbyFake(t *testing.T) {
	fw := new(routetest.Firewall)
	j, err := journal.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	st, err := route.StartStandby(fw, j, []string{"rt0", "ppp0"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := j.Pending()
	if err != nil || len(pending) != 1 || pending[0].Kind != route.KindNFT || string(pending[0].Data) != `{"table":"roamtun_standby"}` {
		t.Fatalf("journal: %v %v", pending, err)
	}
	wantTable := `replace table inet roamtun_standby {
	set open {
		type ifname
		elements = { "rt0", "ppp0" }
	}
	set probes {
		type ipv4_addr . inet_service
	}
	set probes6 {
		type ipv6_addr . inet_service
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
		counter drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname @open accept
		counter drop
	}
}`
	if diff := cmp.Diff([]string{wantTable}, fw.Ops()); diff != "" {
		t.Fatalf("start (-want +got):\n%s", diff)
	}

	probes := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:22"), netip.MustParseAddrPort("[2001:db8::1]:22"),
		netip.MustParseAddrPort("[::ffff:10.0.0.2]:2222")}
	for _, step := range []struct {
		name string
		do   func() error
		want []string // the transcript's new lines; nil: none
		open []string // the set open afterwards
	}{
		{"open wan0", func() error { return st.Open("wan0") },
			[]string{`add element inet roamtun_standby open { "wan0" }`}, []string{"rt0", "ppp0", "wan0"}},
		{"open wan0 again", func() error { return st.Open("wan0") },
			[]string{`add element inet roamtun_standby open { "wan0" }`}, []string{"rt0", "ppp0", "wan0"}},
		{"close wan0", func() error { return st.Close("wan0") },
			[]string{`delete element inet roamtun_standby open { "wan0" }`}, []string{"rt0", "ppp0"}},
		{"close wan0 again: not open, done", func() error { return st.Close("wan0") },
			nil, []string{"rt0", "ppp0"}},
		{"probes", func() error { return st.SetProbes(probes) },
			[]string{"flush set inet roamtun_standby probes\nflush set inet roamtun_standby probes6\n" +
				"add element inet roamtun_standby probes { 10.0.0.1 . 22, 10.0.0.2 . 2222 }\n" +
				"add element inet roamtun_standby probes6 { 2001:db8::1 . 22 }"}, []string{"rt0", "ppp0"}},
		{"no probes", func() error { return st.SetProbes(nil) },
			[]string{"flush set inet roamtun_standby probes\nflush set inet roamtun_standby probes6"}, []string{"rt0", "ppp0"}},
		{"stop", func() error { return st.Stop(j) },
			[]string{"delete table inet roamtun_standby"}, nil},
		{"stop again: gone, done", func() error { return st.Stop(nil) }, nil, nil},
		{"close when stopped: done", func() error { return st.Close("wan0") }, nil, nil},
	} {
		before := len(fw.Ops())
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if diff := cmp.Diff(step.want, fw.Ops()[before:], cmp.Comparer(func(a, b []string) bool {
			return strings.Join(a, "\x00") == strings.Join(b, "\x00")
		})); diff != "" {
			t.Errorf("%s: transcript (-want +got):\n%s", step.name, diff)
		}
		var open []string
		for _, e := range fw.Elems(route.StandbyTable, "open") {
			open = append(open, e.Ifname)
		}
		if diff := cmp.Diff(step.open, open); diff != "" {
			t.Errorf("%s: set open (-want +got):\n%s", step.name, diff)
		}
	}
	if p, _ := j.Pending(); len(p) != 0 {
		t.Errorf("journal after stop: %v", p)
	}
	if err := st.Open("wan0"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("open when stopped: %v, want ENOENT", err)
	}
}

// TestStandbyFails: a firewall that refuses leaves no journal entry, and
// errors say what was refused.
func TestStandbyFails(t *testing.T) {
	refused := errors.New("refused")
	fw := &routetest.Firewall{Fail: func(string) error { return refused }}
	j, err := journal.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := route.StartStandby(fw, j, nil, 0); !errors.Is(err, refused) {
		t.Errorf("start: %v", err)
	}
	if p, _ := j.Pending(); len(p) != 0 {
		t.Errorf("journal after a failed start: %v", p)
	}
	fw.Fail = nil
	for _, exempt := range [][]string{{""}, {"a-name-too-long-for-linux"}} {
		if _, err := route.StartStandby(fw, nil, exempt, 0); err == nil || !strings.Contains(err.Error(), "invalid interface name") {
			t.Errorf("exempt %q: %v", exempt, err)
		}
	}
	st, err := route.StartStandby(fw, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.AddElements(route.StandbyTable, "open", route.AddrPortElem(netip.MustParseAddrPort("10.0.0.1:22"))); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("an address in the ifname set: %v", err)
	}
	fw.Fail = func(op string) error {
		if strings.HasPrefix(op, "delete element") {
			return syscall.EPERM
		}
		return nil
	}
	if err := st.Close("wan0"); !errors.Is(err, syscall.EPERM) {
		t.Errorf("close refused: %v, want the error", err)
	}
}

// TestUndoFake: journaled tables are undone by name, whatever else the entry
// holds (before issue #13 it held the nft script); one already gone is
// undone; tables that are not roamtun's are refused and not touched.
func TestUndoFake(t *testing.T) {
	fw := new(routetest.Firewall)
	for _, name := range []string{route.NFTTable, route.StandbyTable, "victim"} {
		if err := fw.Replace(&route.Table{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	before := len(fw.Ops())
	for _, tc := range []struct {
		name, data string
		refused    bool
	}{
		{"old format, with the script", `{"table":"roamtun","script":"table inet roamtun {}\ndelete table inet roamtun\n"}`, false},
		{"this format", `{"table":"roamtun_standby"}`, false},
		{"already gone", `{"table":"roamtun"}`, false},
		{"not ours", `{"table":"victim"}`, true},
		{"not ours, smuggled", `{"table":"roamtun\ndelete table inet victim"}`, true},
		{"not ours, empty", `{}`, true},
	} {
		e := &journal.Entry{Kind: route.KindNFT, File: "0001-nft.json", Data: []byte(tc.data)}
		err := route.UndoWith(fw, e)
		if tc.refused != (err != nil) {
			t.Errorf("%s: undo: %v, refused %v", tc.name, err, tc.refused)
		}
		if tc.refused && (err == nil || !strings.Contains(err.Error(), "not roamtun's")) {
			t.Errorf("%s: %v, want a refusal", tc.name, err)
		}
	}
	want := []string{"delete table inet roamtun", "delete table inet roamtun_standby"}
	if diff := cmp.Diff(want, fw.Ops()[before:]); diff != "" {
		t.Errorf("transcript (-want +got):\n%s", diff)
	}
	if _, ok := fw.Tables()["victim"]; !ok || len(fw.Tables()) != 1 {
		t.Errorf("tables left: %v", fw.Tables())
	}
}
