package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// fakeSource is an in-memory Source: the merger is pure logic over what
// sources say, so this is its protocol boundary.
type fakeSource struct {
	name     string
	mu       sync.Mutex
	nets     []Network
	runErr   error
	obsErr   error // Observe fails with it while set
	hint     func()
	ready    chan struct{}
	observes atomic.Int32
}

func newFake(name string, nets ...Network) *fakeSource {
	return &fakeSource{name: name, nets: nets, ready: make(chan struct{})}
}

func (f *fakeSource) Name() string { return f.name }

func (f *fakeSource) Run(ctx context.Context, hint func()) error {
	if f.runErr != nil {
		return f.runErr
	}
	f.mu.Lock()
	f.hint = hint
	f.mu.Unlock()
	close(f.ready)
	<-ctx.Done()
	return nil
}

func (f *fakeSource) Observe(context.Context) ([]Network, error) {
	f.observes.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.obsErr != nil {
		return nil, f.obsErr
	}
	return append([]Network(nil), f.nets...), nil
}

func (f *fakeSource) setErr(err error) {
	f.mu.Lock()
	f.obsErr = err
	h := f.hint
	f.mu.Unlock()
	h()
}

func (f *fakeSource) set(nets ...Network) {
	f.mu.Lock()
	f.nets = nets
	h := f.hint
	f.mu.Unlock()
	h()
}

var (
	gw  = netip.MustParseAddr("10.0.0.1")
	gw2 = netip.MustParseAddr("192.168.7.1")
)

func TestMergePrecedence(t *testing.T) {
	routes := []Route{{Dest: netip.MustParsePrefix("0.0.0.0/1"), Gateway: gw}, {Dest: netip.MustParsePrefix("128.0.0.0/1"), Gateway: gw}}
	parts := map[string][]Network{
		"nl80211": {{Interface: "wlan0", Kind: KindWifi, SSID: "Caf\xe9", BSSID: "02:00:00:00:00:01", Security: SecurityOpen, Frequency: 2412}},
		"networkmanager": {{Interface: "wlan0", Kind: KindWifi, SSID: "wrong", Security: SecurityWPA2, Gateway: netip.MustParseAddr("10.0.0.99"),
			DNS: []netip.Addr{gw}, ClasslessRoutes: routes, Connection: "Cafe", Connectivity: ConnectivityPortal, LeaseSeconds: 3600}},
		"netlink": {
			{Interface: "wlan0", Kind: KindWifi, Gateway: gw, RouteMetric: 600, GatewayMAC: "aa:bb:cc:00:00:01", Address: netip.MustParsePrefix("10.0.0.7/24")},
			{Interface: "eth0", Kind: KindEthernet, Gateway: gw2, RouteMetric: 100, GatewayMAC: "aa:bb:cc:00:00:02", Address: netip.MustParsePrefix("192.168.7.9/24")},
		},
		"dhcp": {{Interface: "wlan0", DNS: []netip.Addr{netip.MustParseAddr("6.6.6.6")}, DHCPServer: gw, LeaseSeconds: 60}},
	}
	all := Merge(parts, []string{"nl80211", "networkmanager", "netlink", "dhcp"})
	if len(all) != 2 {
		t.Fatalf("%d networks", len(all))
	}
	w := all[1]
	want := Network{Interface: "wlan0", Kind: KindWifi, SSID: "Caf\xe9", BSSID: "02:00:00:00:00:01", Security: SecurityOpen,
		Frequency: 2412, Gateway: gw, RouteMetric: 600, GatewayMAC: "aa:bb:cc:00:00:01", Address: netip.MustParsePrefix("10.0.0.7/24"),
		DNS: []netip.Addr{gw}, ClasslessRoutes: routes, TunnelVision: true, LeaseSeconds: 3600, DHCPServer: gw,
		Connection: "Cafe", Connectivity: ConnectivityPortal}
	if !w.Equal(want) {
		t.Errorf("merged wlan0:\n%+v\nwant\n%+v", w, want)
	}
	if p := Primary(all); p.Interface != "eth0" {
		t.Errorf("primary %s, want eth0 (lower metric)", p.Interface)
	}
	if p := Primary(all[1:]); p.Interface != "wlan0" {
		t.Errorf("primary %s", p.Interface)
	}
	if p := Primary([]Network{{Interface: "wlan0", Kind: KindWifi, SSID: "x"}}); !p.IsZero() {
		t.Errorf("no default route: primary %+v, want none", p)
	}
}

func startWatcher(t *testing.T, sources ...Source) (*Watcher, *lab.SyncBuffer, func()) {
	t.Helper()
	logBuf := &lab.SyncBuffer{}
	w := New(sources, Options{Debounce: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logBuf, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	return w, logBuf, func() { cancel(); <-done }
}

func next(t *testing.T, w *Watcher) Network {
	t.Helper()
	select {
	case n := <-w.Changes():
		return n
	case <-time.After(20 * time.Second):
		t.Fatal("no change emitted")
	}
	return Network{}
}

func quiet(t *testing.T, w *Watcher, d time.Duration) {
	t.Helper()
	select {
	case n := <-w.Changes():
		t.Fatalf("emitted %+v with no real change", n)
	case <-time.After(d):
	}
}

// TestWatcherDebounceAndChange: a burst of 100 hints is one read of the
// sources; a change is emitted once, a hint without a change not at all.
func TestWatcherDebounceAndChange(t *testing.T) {
	a := newFake("netlink", Network{Interface: "eth0", Gateway: gw, Address: netip.MustParsePrefix("10.0.0.7/24")})
	w, _, stop := startWatcher(t, a)
	defer stop()
	<-a.ready
	if n := next(t, w); n.Interface != "eth0" || n.Kind != KindEthernet {
		t.Fatalf("first: %+v", n)
	}
	before := a.observes.Load()
	for range 100 {
		a.hint()
	}
	quiet(t, w, 500*time.Millisecond)
	if got := a.observes.Load() - before; got < 1 || got > 2 {
		t.Errorf("100 hints → %d reads of the source, want 1 (2 at most)", got)
	}
	a.set(Network{Interface: "eth0", Gateway: gw2, Address: netip.MustParsePrefix("192.168.7.9/24")})
	if n := next(t, w); n.Gateway != gw2 {
		t.Fatalf("after the change: %+v", n)
	}
	quiet(t, w, 300*time.Millisecond)
	a.set()
	if n := next(t, w); !n.IsZero() {
		t.Fatalf("network gone: %+v", n)
	}
}

// TestWatcherUnavailableSource: a source that cannot run here is logged once
// and the others carry on.
func TestWatcherUnavailableSource(t *testing.T) {
	wifi := newFake("nl80211")
	wifi.runErr = fmt.Errorf("no wireless interfaces: %w", ErrUnavailable)
	a := newFake("netlink", Network{Interface: "eth0", Gateway: gw, Address: netip.MustParsePrefix("10.0.0.7/24")})
	w, log, stop := startWatcher(t, wifi, a)
	<-a.ready
	next(t, w)
	a.set(Network{Interface: "eth0", Gateway: gw2, Address: netip.MustParsePrefix("10.0.0.7/24")})
	if n := next(t, w); n.Gateway != gw2 {
		t.Errorf("%+v", n)
	}
	stop()
	if c := strings.Count(log.String(), "not available here"); c != 1 {
		t.Errorf("unavailable logged %d times:\n%s", c, log.String())
	}
	if wifi.observes.Load() > 1 {
		t.Errorf("the unavailable source was read %d times", wifi.observes.Load())
	}
}

// TestWatcherSourceCannotObserve: a source that runs but cannot read what
// it watches (issue #15: rtnetlink on a kernel without xfrm_user) is a
// warning once, not a debug line per read, and its recovery is logged.
func TestWatcherSourceCannotObserve(t *testing.T) {
	a := newFake("netlink")
	a.obsErr = fmt.Errorf("protocol not supported")
	w, log, stop := startWatcher(t, a)
	defer stop()
	<-a.ready
	if n := next(t, w); !n.IsZero() {
		t.Fatalf("first: %+v", n)
	}
	for range 3 {
		before := a.observes.Load()
		a.hint()
		for a.observes.Load() == before {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if c := strings.Count(log.String(), "level=WARN"); c != 1 || !strings.Contains(log.String(), "source=netlink") ||
		!strings.Contains(log.String(), "protocol not supported") {
		t.Errorf("want one warning naming the source and the error; log:\n%s", log.String())
	}
	a.mu.Lock()
	a.nets = []Network{{Interface: "eth0", Gateway: gw, Address: netip.MustParsePrefix("10.0.0.7/24")}}
	a.mu.Unlock()
	a.setErr(nil)
	if n := next(t, w); n.Interface != "eth0" {
		t.Fatalf("after recovery: %+v", n)
	}
	if !strings.Contains(log.String(), "observes again") {
		t.Errorf("recovery not logged:\n%s", log.String())
	}
	a.setErr(fmt.Errorf("another failure"))
	if n := next(t, w); !n.IsZero() {
		t.Fatalf("failing again: %+v", n)
	}
	if c := strings.Count(log.String(), "level=WARN"); c != 2 {
		t.Errorf("a new failure after recovery: %d warnings, want 2:\n%s", c, log.String())
	}
}

// TestMergeConnectivity: NetworkManager's connectivity check is believed
// first; the portal probe fills in where NetworkManager has none, and the
// portal's address goes only with the verdict it came with.
func TestMergeConnectivity(t *testing.T) {
	portal := Network{Interface: "wlan0", Connectivity: ConnectivityPortal, PortalURL: "http://10.0.0.1/login"}
	for _, c := range []struct {
		name    string
		nm      Connectivity
		want    Connectivity
		wantURL string
	}{
		{"no NetworkManager verdict: the probe's", ConnectivityUnknown, ConnectivityPortal, "http://10.0.0.1/login"},
		{"NetworkManager says full", ConnectivityFull, ConnectivityFull, ""},
		{"NetworkManager says portal too", ConnectivityPortal, ConnectivityPortal, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			parts := map[string][]Network{
				"portal":         {portal},
				"networkmanager": {{Interface: "wlan0", Connection: "Cafe", Connectivity: c.nm}},
				"netlink":        {{Interface: "wlan0", Gateway: gw}},
			}
			all := Merge(parts, []string{"portal", "networkmanager", "netlink"})
			if len(all) != 1 || all[0].Connectivity != c.want || all[0].PortalURL != c.wantURL {
				t.Errorf("%+v", all)
			}
		})
	}
}
