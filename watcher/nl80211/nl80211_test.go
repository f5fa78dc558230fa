package nl80211

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/wifi"
	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/watcher"
)

var family = genetlink.Family{ID: 28, Version: 1, Name: unix.NL80211_GENL_NAME,
	Groups: []genetlink.MulticastGroup{{ID: 5, Name: "config"}, {ID: 7, Name: unix.NL80211_MULTICAST_GROUP_MLME}}}

func attrs(t testing.TB, fn func(ae *netlink.AttributeEncoder)) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	fn(ae)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ie(id byte, body []byte) []byte { return append([]byte{id, byte(len(body))}, body...) }

// rsn builds an RSN element body with CCMP and the given AKM suite types.
func rsn(akms ...byte) []byte {
	b := []byte{1, 0, 0x00, 0x0f, 0xac, 4, 1, 0, 0x00, 0x0f, 0xac, 4, byte(len(akms)), 0}
	for _, a := range akms {
		b = append(b, 0x00, 0x0f, 0xac, a)
	}
	return append(b, 0, 0) // RSN capabilities
}

var (
	apA = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x01}
	apB = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x02}
)

func event(t testing.TB, cmd uint8, fn func(ae *netlink.AttributeEncoder)) genetlink.Message {
	// Multicast events come back with header type 0 through genltest.
	return genetlink.Message{Header: genetlink.Header{Command: cmd, Version: 1}, Data: attrs(t, fn)}
}

func TestDecodeEvents(t *testing.T) {
	nonUTF8 := "Caf\xe9\x00\xff"
	conn := event(t, unix.NL80211_CMD_CONNECT, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_WIPHY, 0)
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Bytes(unix.NL80211_ATTR_MAC, apA)
		ae.Uint16(unix.NL80211_ATTR_STATUS_CODE, 0)
		ae.Bytes(unix.NL80211_ATTR_REQ_IE, append(ie(0, []byte(nonUTF8)), ie(48, rsn(2))...))
		ae.Bytes(unix.NL80211_ATTR_RESP_IE, ie(1, []byte{0x82, 0x84}))
		ae.Uint32(unix.NL80211_ATTR_WIPHY_FREQ, 2412)
	})
	ev, err := DecodeEvent(conn)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Cmd != unix.NL80211_CMD_CONNECT || ev.IfIndex != 3 || ev.BSSID.String() != apA.String() || ev.SSID != nonUTF8 ||
		!ev.HasSSID || ev.Frequency != 2412 {
		t.Errorf("connect: %+v", ev)
	}
	if got := watcher.EscapeSSID(ev.SSID); got != `Caf\xe9\x00\xff` {
		t.Errorf("display %q", got)
	}
	hidden, err := DecodeEvent(event(t, unix.NL80211_CMD_CONNECT, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Bytes(unix.NL80211_ATTR_MAC, apA)
		ae.Bytes(unix.NL80211_ATTR_REQ_IE, ie(0, nil)) // zero-length SSID element
	}))
	if err != nil || !hidden.HasSSID || hidden.SSID != "" {
		t.Errorf("hidden: %+v %v", hidden, err)
	}
	disc, err := DecodeEvent(event(t, unix.NL80211_CMD_DISCONNECT, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Uint16(unix.NL80211_ATTR_REASON_CODE, 3)
		ae.Flag(unix.NL80211_ATTR_DISCONNECTED_BY_AP, true)
	}))
	if err != nil || disc.Reason != 3 || !disc.ByAP {
		t.Errorf("disconnect: %+v %v", disc, err)
	}
	for _, bad := range []genetlink.Message{
		event(t, unix.NL80211_CMD_CONNECT, func(ae *netlink.AttributeEncoder) { ae.Bytes(unix.NL80211_ATTR_MAC, apA) }),
		event(t, unix.NL80211_CMD_CONNECT, func(ae *netlink.AttributeEncoder) {
			ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
			ae.Bytes(unix.NL80211_ATTR_REQ_IE, []byte{0, 9, 'x'})
		}),
		event(t, unix.NL80211_CMD_ROAM, func(ae *netlink.AttributeEncoder) {
			ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
			ae.Bytes(unix.NL80211_ATTR_MAC, []byte{1, 2, 3})
		}),
		{Header: genetlink.Header{Command: unix.NL80211_CMD_ROAM}, Data: []byte{1, 2, 3}},
	} {
		if _, err := DecodeEvent(bad); err == nil {
			t.Errorf("bad event %x accepted", bad.Data)
		}
	}
}

func TestSecurity(t *testing.T) {
	for _, c := range []struct {
		name string
		ie   []byte
		cap  uint16
		want watcher.Security
	}{
		{"open", nil, 0x0001, watcher.SecurityOpen},
		{"wep", nil, 0x0011, watcher.SecurityWEP},
		{"wpa1", ie(221, []byte{0x00, 0x50, 0xf2, 1, 1, 0}), 0x0011, watcher.SecurityWPA},
		{"wpa2-psk", ie(48, rsn(2)), 0x0011, watcher.SecurityWPA2},
		{"wpa3-sae", ie(48, rsn(8)), 0x0011, watcher.SecurityWPA3},
		{"wpa2/wpa3 transition", ie(48, rsn(2, 8)), 0x0011, watcher.SecurityWPA2},
		{"enterprise", ie(48, rsn(1)), 0x0011, watcher.Security8021X},
		{"owe", ie(48, rsn(18)), 0x0011, watcher.SecurityOpen},
	} {
		ies, err := ParseIEs(c.ie)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Security(ies, c.cap)
		if err != nil || got != c.want {
			t.Errorf("%s: %s %v, want %s", c.name, got, err, c.want)
		}
	}
	ies, _ := ParseIEs(ie(48, rsn(2)[:9]))
	if _, err := Security(ies, 0x11); err == nil {
		t.Error("truncated RSN accepted")
	}
}

// fakeKernel answers nl80211 requests and delivers queued events as the
// mlme group would.
type fakeKernel struct {
	t      testing.TB
	mu     sync.Mutex
	ifaces []genetlink.Message
	scans  map[uint32][]genetlink.Message
	events chan genetlink.Message
}

func (k *fakeKernel) dial() (*genetlink.Conn, error) {
	return genltest.Dial(genltest.ServeFamily(family, k.serve)), nil
}

func (k *fakeKernel) serve(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
	if len(nreq.Data) == 0 { // Receive on the multicast group
		ev, ok := <-k.events
		if !ok {
			return nil, io.EOF
		}
		return []genetlink.Message{ev}, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch greq.Header.Command {
	case unix.NL80211_CMD_GET_INTERFACE:
		return k.ifaces, nil
	case unix.NL80211_CMD_GET_SCAN:
		ad, err := netlink.NewAttributeDecoder(greq.Data)
		if err != nil {
			return nil, err
		}
		var idx uint32
		for ad.Next() {
			if ad.Type() == unix.NL80211_ATTR_IFINDEX {
				idx = ad.Uint32()
			}
		}
		if len(k.scans[idx]) == 0 {
			return nil, io.EOF // an empty dump
		}
		return k.scans[idx], nil
	}
	return nil, genltest.Error(int(unix.EOPNOTSUPP))
}

func iface(t testing.TB, idx uint32, name string, typ wifi.InterfaceType, ssid *string) genetlink.Message {
	return genetlink.Message{Header: genetlink.Header{Command: unix.NL80211_CMD_NEW_INTERFACE, Version: 1}, Data: attrs(t, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, idx)
		ae.String(unix.NL80211_ATTR_IFNAME, name)
		ae.Uint32(unix.NL80211_ATTR_IFTYPE, uint32(typ))
		if ssid != nil {
			ae.Bytes(unix.NL80211_ATTR_SSID, []byte(*ssid))
		}
	})}
}

func bss(t testing.TB, mac net.HardwareAddr, freq uint32, capab uint16, ies []byte, associated bool) genetlink.Message {
	return genetlink.Message{Header: genetlink.Header{Command: unix.NL80211_CMD_NEW_SCAN_RESULTS, Version: 1}, Data: attrs(t, func(ae *netlink.AttributeEncoder) {
		ae.Nested(unix.NL80211_ATTR_BSS, func(nae *netlink.AttributeEncoder) error {
			nae.Bytes(unix.NL80211_BSS_BSSID, mac)
			nae.Uint32(unix.NL80211_BSS_FREQUENCY, freq)
			nae.Uint16(unix.NL80211_BSS_CAPABILITY, capab)
			nae.Bytes(unix.NL80211_BSS_INFORMATION_ELEMENTS, ies)
			if associated {
				nae.Uint32(unix.NL80211_BSS_STATUS, unix.NL80211_BSS_STATUS_ASSOCIATED)
			}
			return nil
		})
	})}
}

// TestObserveFiltersP2P: only station interfaces are networks; Wi-Fi
// Direct (P2P) interfaces are left out even when "associated".
func TestObserveFiltersP2P(t *testing.T) {
	cafe := "Cafe"
	k := &fakeKernel{t: t, events: make(chan genetlink.Message), scans: map[uint32][]genetlink.Message{
		3: {bss(t, apB, 5180, 0x0011, ie(0, []byte("Other")), false), bss(t, apA, 2412, 0x0001, ie(0, []byte(cafe)), true)},
		4: {bss(t, apB, 5180, 0x0011, ie(48, rsn(2)), true)},
	}}
	k.ifaces = []genetlink.Message{
		iface(t, 3, "wlan0", wifi.InterfaceTypeStation, &cafe),
		iface(t, 4, "p2p-wlan0-0", wifi.InterfaceTypeP2PClient, nil),
		iface(t, 5, "p2p-dev-wlan0", wifi.InterfaceTypeP2PDevice, nil),
		iface(t, 6, "wlan1", wifi.InterfaceTypeStation, nil), // not associated
	}
	s := &Source{Dial: k.dial, SkipJoin: true}
	nets, err := s.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "Cafe", BSSID: "02:11:22:33:44:01",
		Security: watcher.SecurityOpen, Frequency: 2412}
	if len(nets) != 1 || !nets[0].Equal(want) {
		t.Fatalf("networks %+v, want just %+v", nets, want)
	}
}

// TestEventsDriveObserve: CONNECT to a hidden network (its SSID only in the
// association request), ROAM to another access point, DISCONNECT — each a
// hint, and Observe reporting the exact SSID bytes throughout.
func TestEventsDriveObserve(t *testing.T) {
	hidden := "Hid\xffden"
	k := &fakeKernel{t: t, events: make(chan genetlink.Message), scans: map[uint32][]genetlink.Message{}}
	k.ifaces = []genetlink.Message{iface(t, 3, "wlan0", wifi.InterfaceTypeStation, nil)}
	setScan := func(m genetlink.Message) {
		k.mu.Lock()
		k.scans[3] = []genetlink.Message{m}
		k.mu.Unlock()
	}
	s := &Source{Dial: k.dial, SkipJoin: true, RoamGrace: -1} // a DISCONNECT reported at once (TestRoamByReassociation)
	hints := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func() { hints <- struct{}{} }) }()
	send := func(m genetlink.Message) {
		t.Helper()
		k.events <- m
		select {
		case <-hints:
		case <-time.After(20 * time.Second):
			t.Fatal("no hint")
		}
	}
	observe := func() []watcher.Network {
		t.Helper()
		n, err := s.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The beacon of a hidden network carries an empty SSID.
	setScan(bss(t, apA, 2437, 0x0011, append(ie(0, nil), ie(48, rsn(2))...), true))
	send(event(t, unix.NL80211_CMD_CONNECT, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Bytes(unix.NL80211_ATTR_MAC, apA)
		ae.Uint16(unix.NL80211_ATTR_STATUS_CODE, 0)
		ae.Bytes(unix.NL80211_ATTR_REQ_IE, ie(0, []byte(hidden)))
	}))
	if n := observe(); len(n) != 1 || n[0].SSID != hidden || n[0].BSSID != "02:11:22:33:44:01" || n[0].Security != watcher.SecurityWPA2 {
		t.Fatalf("after CONNECT: %+v", n)
	}
	setScan(bss(t, apB, 5180, 0x0011, append(ie(0, nil), ie(48, rsn(2))...), true))
	send(event(t, unix.NL80211_CMD_ROAM, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Bytes(unix.NL80211_ATTR_MAC, apB)
	}))
	if n := observe(); len(n) != 1 || n[0].SSID != hidden || n[0].BSSID != "02:11:22:33:44:02" || n[0].Frequency != 5180 {
		t.Fatalf("after ROAM: %+v", n)
	}
	setScan(bss(t, apB, 5180, 0x0011, ie(0, nil), false))
	send(event(t, unix.NL80211_CMD_DISCONNECT, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Uint16(unix.NL80211_ATTR_REASON_CODE, 3)
	}))
	if n := observe(); len(n) != 0 {
		t.Fatalf("after DISCONNECT: %+v", n)
	}
	// A malformed event is logged and skipped; the source carries on.
	k.events <- genetlink.Message{Header: genetlink.Header{Command: unix.NL80211_CMD_CONNECT}, Data: []byte{9, 9}}
	send(event(t, unix.NL80211_CMD_DISCONNECT, func(ae *netlink.AttributeEncoder) { ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3) }))
	cancel()
	close(k.events)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestRoamByReassociation: mac80211 reports a roam as DISCONNECT then
// CONNECT; in between, the source still reports the network it was on, so
// that the merged watcher never sees "no Wi-Fi" for a roam. A DISCONNECT
// with no CONNECT after it is reported when the grace ends (a hint), and a
// CONNECT to another network is reported at once.
func TestRoamByReassociation(t *testing.T) {
	k := &fakeKernel{t: t, events: make(chan genetlink.Message), scans: map[uint32][]genetlink.Message{}}
	home, cafe := "home", "cafe"
	k.ifaces = []genetlink.Message{iface(t, 3, "wlan0", wifi.InterfaceTypeStation, nil)}
	setScan := func(m genetlink.Message) {
		k.mu.Lock()
		k.scans[3] = []genetlink.Message{m}
		k.mu.Unlock()
	}
	// The grace ends when the test says so: no clock involved.
	type timer struct {
		f       func()
		stopped bool
	}
	var (
		tmu    sync.Mutex
		timers []*timer
	)
	s := &Source{Dial: k.dial, SkipJoin: true, RoamGrace: time.Hour}
	s.afterFunc = func(d time.Duration, f func()) func() bool {
		tmu.Lock()
		defer tmu.Unlock()
		tm := &timer{f: f}
		timers = append(timers, tm)
		return func() bool {
			tmu.Lock()
			defer tmu.Unlock()
			was := !tm.stopped
			tm.stopped = true
			return was
		}
	}
	pending := func() []*timer {
		tmu.Lock()
		defer tmu.Unlock()
		var out []*timer
		for _, tm := range timers {
			if !tm.stopped {
				out = append(out, tm)
			}
		}
		return out
	}
	hints := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func() { hints <- struct{}{} }) }()
	waitHint := func() {
		t.Helper()
		select {
		case <-hints:
		case <-time.After(20 * time.Second):
			t.Fatal("no hint")
		}
	}
	send := func(m genetlink.Message) { t.Helper(); k.events <- m; waitHint() }
	observe := func() []watcher.Network {
		t.Helper()
		n, err := s.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	connect := func(ap net.HardwareAddr, ssid string) genetlink.Message {
		return event(t, unix.NL80211_CMD_CONNECT, func(ae *netlink.AttributeEncoder) {
			ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
			ae.Bytes(unix.NL80211_ATTR_MAC, ap)
			ae.Uint16(unix.NL80211_ATTR_STATUS_CODE, 0)
			ae.Bytes(unix.NL80211_ATTR_REQ_IE, ie(0, []byte(ssid)))
		})
	}
	disconnect := event(t, unix.NL80211_CMD_DISCONNECT, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Uint16(unix.NL80211_ATTR_REASON_CODE, 1)
	})
	is := func(what string, n []watcher.Network, ssid string, bssid net.HardwareAddr) {
		t.Helper()
		if len(n) != 1 || n[0].SSID != ssid || n[0].BSSID != bssid.String() {
			t.Fatalf("%s: %+v, want %q at %s", what, n, ssid, bssid)
		}
	}

	// A disconnect before anything was reported holds nothing.
	send(disconnect)
	if n := observe(); len(n) != 0 || len(pending()) != 0 {
		t.Fatalf("disconnect while not associated: %+v, %d holds", n, len(pending()))
	}
	setScan(bss(t, apA, 2412, 0x0011, append(ie(0, []byte(home)), ie(48, rsn(2))...), true))
	send(connect(apA, home))
	is("connected", observe(), home, apA)
	// The roam: DISCONNECT (nothing associated now), then CONNECT to B.
	setScan(bss(t, apA, 2412, 0x0011, append(ie(0, []byte(home)), ie(48, rsn(2))...), false))
	send(disconnect)
	is("between the DISCONNECT and the CONNECT of a roam", observe(), home, apA)
	setScan(bss(t, apB, 2437, 0x0011, append(ie(0, []byte(home)), ie(48, rsn(2))...), true))
	send(connect(apB, home))
	is("roamed", observe(), home, apB)
	if len(pending()) != 0 {
		t.Fatal("the CONNECT did not end the hold")
	}
	// Leaving for another network: reported as soon as it is joined.
	setScan(bss(t, apB, 2437, 0x0011, ie(0, []byte(home)), false))
	send(disconnect)
	setScan(bss(t, apA, 2462, 0x0001, ie(0, []byte(cafe)), true))
	send(connect(apA, cafe))
	is("another network joined", observe(), cafe, apA)
	// A disconnect for good: held until the grace ends, then gone, with a
	// hint for the watcher to look again.
	setScan(bss(t, apA, 2462, 0x0001, ie(0, []byte(cafe)), false))
	send(disconnect)
	is("just disconnected", observe(), cafe, apA)
	p := pending()
	if len(p) != 1 {
		t.Fatalf("%d holds, want 1", len(p))
	}
	tmu.Lock()
	p[0].stopped = true // fired
	tmu.Unlock()
	p[0].f()
	waitHint()
	if n := observe(); len(n) != 0 {
		t.Fatalf("after the grace: %+v", n)
	}
	// A failed CONNECT ends a hold too: not associated, nothing coming.
	setScan(bss(t, apA, 2462, 0x0001, ie(0, []byte(cafe)), true))
	send(connect(apA, cafe))
	observe()
	setScan(bss(t, apA, 2462, 0x0001, ie(0, []byte(cafe)), false))
	send(disconnect)
	send(event(t, unix.NL80211_CMD_CONNECT, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Bytes(unix.NL80211_ATTR_MAC, apB)
		ae.Uint16(unix.NL80211_ATTR_STATUS_CODE, 17)
	}))
	if n := observe(); len(n) != 0 || len(pending()) != 0 {
		t.Fatalf("after a failed CONNECT: %+v, %d holds", n, len(pending()))
	}
	cancel()
	close(k.events)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestNoWifi: a kernel without nl80211 makes the source unavailable.
func TestNoWifi(t *testing.T) {
	s := &Source{Dial: func() (*genetlink.Conn, error) {
		return genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
			return nil, genltest.Error(int(unix.ENOENT))
		}), nil
	}}
	err := s.Run(context.Background(), func() {})
	if !errors.Is(err, watcher.ErrUnavailable) {
		t.Fatalf("run without nl80211: %v", err)
	}
	if _, err := s.Observe(context.Background()); !errors.Is(err, watcher.ErrUnavailable) {
		t.Fatalf("observe without nl80211: %v", err)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(uint8(unix.NL80211_CMD_CONNECT), attrs(f, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NL80211_ATTR_IFINDEX, 3)
		ae.Bytes(unix.NL80211_ATTR_MAC, apA)
		ae.Bytes(unix.NL80211_ATTR_REQ_IE, append(ie(0, []byte("x")), ie(48, rsn(2))...))
	}))
	f.Add(uint8(unix.NL80211_CMD_ROAM), []byte{8, 0, 3, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, cmd uint8, data []byte) {
		DecodeEvent(genetlink.Message{Header: genetlink.Header{Command: cmd}, Data: data})
		DecodeBSS(genetlink.Message{Data: data})
		DecodeInterface(genetlink.Message{Data: data})
		if ies, err := ParseIEs(data); err == nil {
			Security(ies, 0x11)
		}
	})
}
