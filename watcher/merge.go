package watcher

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Options tune a Watcher.
type Options struct {
	// Debounce is how long hints are gathered before the sources are read
	// again (default 150 ms). The first hint of a burst starts the wait and
	// later ones do not extend it, so a change is seen within Debounce plus
	// the time to read the sources, however noisy the network.
	Debounce time.Duration
	Log      *slog.Logger
}

// Watcher merges its sources' partial views into Network snapshots and
// emits the primary network whenever it really changes.
type Watcher struct {
	sources []Source
	o       Options
	changes chan Network

	mu      sync.Mutex
	primary Network
	all     []Network
	live    map[string]bool
	failing map[string]string // source name → its last Observe error (refresh only)
}

// New returns a Watcher over sources, which it starts when Run is called.
func New(sources []Source, o Options) *Watcher {
	if o.Debounce <= 0 {
		o.Debounce = 150 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{sources: sources, o: o, changes: make(chan Network, 1), live: map[string]bool{},
		failing: map[string]string{}}
}

// Changes delivers the primary network each time it changes (the zero
// Network: none). A slow reader gets the newest only.
func (w *Watcher) Changes() <-chan Network { return w.changes }

// Current returns the primary network and every network seen.
func (w *Watcher) Current() (Network, []Network) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.primary, slices.Clone(w.all)
}

// Run starts the sources and merges until ctx is done. A source that is
// unavailable here is logged once and left out; one that fails otherwise is
// restarted with backoff.
func (w *Watcher) Run(ctx context.Context) error {
	hints := make(chan struct{}, 1)
	hint := func() {
		select {
		case hints <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range w.sources {
		w.setLive(s.Name(), true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runSource(ctx, s, hint)
		}()
	}
	w.refresh(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hints:
		}
		t := time.NewTimer(w.o.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		// Hints that came during the wait are covered by this read.
		select {
		case <-hints:
		default:
		}
		w.refresh(ctx, false)
	}
}

func (w *Watcher) setLive(name string, live bool) {
	w.mu.Lock()
	w.live[name] = live
	w.mu.Unlock()
}

func (w *Watcher) isLive(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live[name]
}

func (w *Watcher) runSource(ctx context.Context, s Source, hint func()) {
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := s.Run(ctx, hint)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrUnavailable) {
			w.o.Log.Info("network source not available here; carrying on without it", "source", s.Name(), "why", err)
			w.setLive(s.Name(), false)
			hint()
			return
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second
		}
		w.o.Log.Warn("network source failed; restarting", "source", s.Name(), "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		hint()
	}
}

// refresh reads every live source, merges, and emits on a change.
func (w *Watcher) refresh(ctx context.Context, first bool) {
	parts := map[string][]Network{}
	for _, s := range w.sources {
		if !w.isLive(s.Name()) {
			continue
		}
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ns, err := s.Observe(octx)
		cancel()
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				w.observeFailed(s.Name(), err)
			}
			continue
		}
		if _, was := w.failing[s.Name()]; was {
			w.o.Log.Info("network source observes again", "source", s.Name())
			delete(w.failing, s.Name())
		}
		parts[s.Name()] = ns
	}
	all := Merge(parts, sourceOrder(w.sources))
	for _, s := range w.sources {
		if f, ok := s.(Follower); ok && w.isLive(s.Name()) {
			f.Follow(slices.Clone(all))
		}
	}
	primary := Primary(all)
	w.mu.Lock()
	// Another uplink coming, going or changing is news too: the daemon
	// judges every uplink, not only the primary.
	changed := first || !primary.Equal(w.primary) || !slices.EqualFunc(Uplinks(all), Uplinks(w.all), Network.Equal)
	w.primary, w.all = primary, all
	w.mu.Unlock()
	if !changed {
		return
	}
	select { // keep only the newest for a slow reader
	case <-w.changes:
	default:
	}
	w.changes <- primary
}

// observeFailed logs a source that cannot read what it watches: a warning
// when it starts failing (or fails differently), as the networks it would
// report are missing from every snapshot until it recovers; a debug line
// for each repeat.
func (w *Watcher) observeFailed(name string, err error) {
	msg := err.Error()
	if w.failing[name] == msg {
		w.o.Log.Debug("observing", "source", name, "err", err)
		return
	}
	w.failing[name] = msg
	w.o.Log.Warn("network source cannot observe; its networks are missing until it can", "source", name, "err", err)
}

func sourceOrder(ss []Source) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Name()
	}
	return out
}

// Which source is believed first for which facts. A source not named here
// comes after the named ones, in the order given to Merge.
var (
	// The radio knows what it associated with.
	radioOrder = []string{"nl80211", "networkmanager", "netlink", "dhcp"}
	// The kernel's tables are what traffic actually uses.
	routeOrder = []string{"netlink", "networkmanager", "dhcp", "nl80211"}
	// The lease: NetworkManager's record of it, then what was seen on the wire.
	leaseOrder = []string{"networkmanager", "dhcp", "netlink", "nl80211"}
	// Connectivity: NetworkManager's own check wherever it has one, then
	// roamtun's probe (watcher/portal).
	connectivityOrder = []string{"networkmanager", "portal"}
)

func rank(order []string, given []string) []string {
	out := slices.Clone(order)
	for _, g := range given {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// Merge combines partial networks per interface: each field comes from the
// first source (in the order that fits the field) that knows it.
func Merge(parts map[string][]Network, given []string) []Network {
	byIf := map[string]*Network{}
	var names []string
	get := func(ifname string) *Network {
		if n, ok := byIf[ifname]; ok {
			return n
		}
		n := &Network{Interface: ifname}
		byIf[ifname] = n
		names = append(names, ifname)
		return n
	}
	each := func(order []string, fill func(dst *Network, src Network)) {
		for _, name := range rank(order, given) {
			for _, src := range parts[name] {
				if src.Interface != "" {
					fill(get(src.Interface), src)
				}
			}
		}
	}
	each(radioOrder, func(d *Network, s Network) {
		first(&d.Kind, s.Kind)
		if d.Kind == KindWifi && s.Kind == KindWifi && d.SSID == "" && d.BSSID == "" {
			d.SSID, d.BSSID = s.SSID, s.BSSID
		}
		first(&d.Security, s.Security)
		first(&d.Frequency, s.Frequency)
	})
	each(routeOrder, func(d *Network, s Network) {
		if !d.Gateway.IsValid() && s.Gateway.IsValid() {
			d.Gateway, d.RouteMetric = s.Gateway, s.RouteMetric
		}
		if d.GatewayMAC == "" && s.Gateway == d.Gateway {
			d.GatewayMAC = s.GatewayMAC
		}
		if !d.Address.IsValid() {
			d.Address = s.Address
		}
	})
	each(leaseOrder, func(d *Network, s Network) {
		if len(d.DNS) == 0 {
			d.DNS = slices.Clone(s.DNS)
		}
		if len(d.ClasslessRoutes) == 0 {
			d.ClasslessRoutes = slices.Clone(s.ClasslessRoutes)
		}
		first(&d.LeaseSeconds, s.LeaseSeconds)
		if !d.DHCPServer.IsValid() {
			d.DHCPServer = s.DHCPServer
		}
		first(&d.Connection, s.Connection)
	})
	each(connectivityOrder, func(d *Network, s Network) {
		// The portal's address goes with the verdict of the source
		// that gave it, never with another source's.
		if d.Connectivity == ConnectivityUnknown && s.Connectivity != ConnectivityUnknown {
			d.Connectivity, d.PortalURL = s.Connectivity, ""
			if s.Connectivity == ConnectivityPortal {
				d.PortalURL = s.PortalURL
			}
		}
	})
	out := make([]Network, 0, len(names))
	for _, name := range names {
		n := byIf[name]
		if n.Kind == "" {
			n.Kind = KindEthernet
		}
		n.TunnelVision = CoversDefault(n.ClasslessRoutes)
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Network) int { return cmp.Compare(a.Interface, b.Interface) })
	return out
}

func first[T comparable](dst *T, v T) {
	var zero T
	if *dst == zero {
		*dst = v
	}
}

// Uplinks are the networks with a default route, in the order of all.
func Uplinks(all []Network) []Network {
	var out []Network
	for _, n := range all {
		if n.Gateway.IsValid() {
			out = append(out, n)
		}
	}
	return out
}

// Primary is the network the laptop's traffic uses: the one holding the
// default route with the lowest metric. The zero Network when none has a
// default route (not connected, or no lease yet).
func Primary(all []Network) Network {
	var best *Network
	for i := range all {
		n := &all[i]
		if !n.Gateway.IsValid() {
			continue
		}
		if best == nil || n.RouteMetric < best.RouteMetric {
			best = n
		}
	}
	if best == nil {
		return Network{}
	}
	return *best
}
