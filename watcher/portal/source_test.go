package portal

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/roamtun/roamtun/watcher"
)

// scripted is a probe whose answers the test sets; it records each probe.
type scripted struct {
	mu     sync.Mutex
	answer map[string]Result // by interface
	probes []Target
	probed chan Target
}

func newScripted() *scripted {
	return &scripted{answer: map[string]Result{}, probed: make(chan Target, 64)}
}

func (s *scripted) set(ifname string, r Result) {
	s.mu.Lock()
	s.answer[ifname] = r
	s.mu.Unlock()
}

func (s *scripted) probe(_ context.Context, t Target) Result {
	s.mu.Lock()
	s.probes = append(s.probes, t)
	r := s.answer[t.Interface]
	s.mu.Unlock()
	s.probed <- t
	return r
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.probes)
}

// fixed is a source that always reports the same networks.
type fixed struct {
	name string
	mu   sync.Mutex
	nets []watcher.Network
	hint func()
	up   chan struct{}
}

func (f *fixed) Name() string { return f.name }
func (f *fixed) Run(ctx context.Context, hint func()) error {
	f.mu.Lock()
	f.hint = hint
	f.mu.Unlock()
	close(f.up)
	<-ctx.Done()
	return nil
}
func (f *fixed) Observe(context.Context) ([]watcher.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]watcher.Network(nil), f.nets...), nil
}
func (f *fixed) set(nets ...watcher.Network) {
	f.mu.Lock()
	f.nets = nets
	h := f.hint
	f.mu.Unlock()
	h()
}

var (
	gw1  = netip.MustParseAddr("10.200.1.1")
	gw2  = netip.MustParseAddr("10.200.9.1")
	cafe = watcher.Network{Interface: "wan0", Gateway: gw1, Address: netip.MustParsePrefix("10.200.1.100/24"),
		DNS: []netip.Addr{gw1}}
)

func waitFor(t *testing.T, w *watcher.Watcher, what string, ok func(watcher.Network) bool) watcher.Network {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case n := <-w.Changes():
			if ok(n) {
				return n
			}
		case <-deadline:
			p, _ := w.Current()
			t.Fatalf("%s: never seen; now %+v", what, p)
		}
	}
}

// TestSourceFollowsNetworks: through a real Watcher, the portal source
// probes a new network once, reports a portal with its address, probes
// again while the portal stays (signing in is noticed), stops once the
// network is open, and probes afresh when the gateway changes.
func TestSourceFollowsNetworks(t *testing.T) {
	probe := newScripted()
	probe.set("wan0", Result{Connectivity: watcher.ConnectivityPortal, PortalURL: "http://portal.test/login"})
	src := New(nil, Options{Probe: probe.probe, First: 10 * time.Millisecond, Max: 40 * time.Millisecond})
	nl := &fixed{name: "netlink", up: make(chan struct{})}
	w := watcher.New([]watcher.Source{nl, src}, watcher.Options{Debounce: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-nl.up
	nl.set(cafe)
	n := waitFor(t, w, "portal", func(n watcher.Network) bool { return n.Connectivity == watcher.ConnectivityPortal })
	if n.PortalURL != "http://portal.test/login" || n.Gateway != gw1 {
		t.Errorf("%+v", n)
	}
	if got := (<-probe.probed); got.Interface != "wan0" || len(got.DNS) != 1 || got.DNS[0] != gw1 {
		t.Errorf("probe target %+v", got)
	}
	// Re-probes while the portal stays; a new token in the redirect does
	// not make a new snapshot, and a dropped re-probe is not "signed in".
	probe.set("wan0", Result{Connectivity: watcher.ConnectivityPortal, PortalURL: "http://portal.test/login?token=2"})
	<-probe.probed
	probe.set("wan0", Result{Connectivity: watcher.ConnectivityLimited, Why: "timed out"})
	<-probe.probed
	<-probe.probed
	if p, _ := w.Current(); p.Connectivity != watcher.ConnectivityPortal || p.PortalURL != "http://portal.test/login" {
		t.Errorf("after re-probes: %+v", p)
	}
	// Signed in: the probe answers right, the source says full and stops.
	probe.set("wan0", Result{Connectivity: watcher.ConnectivityFull})
	n = waitFor(t, w, "full", func(n watcher.Network) bool { return n.Connectivity == watcher.ConnectivityFull })
	if n.PortalURL != "" {
		t.Errorf("open network with a portal URL: %+v", n)
	}
	drain(probe.probed)
	before := probe.count()
	nl.hint() // the same network read again: no probe
	time.Sleep(200 * time.Millisecond)
	if got := probe.count(); got != before {
		t.Errorf("%d probes on an open network that did not change", got-before)
	}
	// The gateway changes: judged afresh.
	probe.set("wan0", Result{Connectivity: watcher.ConnectivityLimited})
	moved := cafe
	moved.Gateway = gw2
	nl.set(moved)
	waitFor(t, w, "limited after the gateway changed", func(n watcher.Network) bool {
		return n.Gateway == gw2 && n.Connectivity == watcher.ConnectivityLimited
	})
	// Gone: nothing reported.
	nl.set()
	waitFor(t, w, "gone", func(n watcher.Network) bool { return n.IsZero() })
	// The source's last verdict goes with the next read (it hints).
	deadline := time.Now().Add(20 * time.Second)
	for _, all := w.Current(); len(all) != 0; _, all = w.Current() {
		if time.Now().After(deadline) {
			t.Fatalf("networks after the interface went: %+v", all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSourceWaitsForDNS: a probe URL naming a host waits until the
// network's resolvers are known.
func TestSourceWaitsForDNS(t *testing.T) {
	p, err := NewProber(DefaultURL, DefaultAnswer)
	if err != nil {
		t.Fatal(err)
	}
	src := New(p, Options{})
	probe := newScripted()
	src.probe = probe.probe
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx, func() {}); close(done) }()
	defer func() { cancel(); <-done }()
	noDNS := cafe
	noDNS.DNS = nil
	src.Follow([]watcher.Network{noDNS})
	src.Follow([]watcher.Network{cafe})
	if got := <-probe.probed; len(got.DNS) != 1 {
		t.Errorf("probed %+v", got)
	}
	if n := probe.count(); n != 1 {
		t.Errorf("%d probes, want 1", n)
	}
}

func drain(c chan Target) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
