// Package portal is the watcher's "portal" source: captive portals found
// without NetworkManager. When a network with a default route appears, or
// its gateway, address or DNS servers change, it fetches a known page over
// plain HTTP through that network alone (Prober) and reports the verdict
// as the interface's Connectivity (full, portal, limited), with the
// portal's address. While a portal is suspected it probes again, backing
// off (2 s doubling to 30 s, for 30 minutes at most) so that signing in is
// noticed; on an open network it never polls.
//
// NetworkManager's own check, where it has one, is believed first (see
// watcher.Merge).
package portal

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/roamtun/roamtun/watcher"
)

// Options tune a Source; zero values are the defaults.
type Options struct {
	Log *slog.Logger
	// Re-probes while a portal is suspected: First, doubling up to Max,
	// until the network has been a portal for For.
	First, Max, For time.Duration
	// Probe replaces the prober (tests).
	Probe func(ctx context.Context, t Target) Result
}

// Source is the portal source. It implements watcher.Follower: the
// watcher tells it which networks there are.
type Source struct {
	o        Options
	probe    func(ctx context.Context, t Target) Result
	needsDNS bool
	followed chan struct{}

	mu     sync.Mutex
	latest []watcher.Network
	ifs    map[string]*ifState
}

// ifState is what the source knows of one interface's network.
type ifState struct {
	key      string // gateway, address, DNS: a change is a new network to judge
	target   Target
	gen      int                // numbers probes, so a cancelled one's late result is ignored
	cancel   context.CancelFunc // the probe running now; nil: none
	known    bool
	res      Result
	portalAt time.Time     // first seen a portal (zero: not one)
	wait     time.Duration // the current re-probe backoff
	next     time.Time     // the next re-probe (zero: none)
}

type probeDone struct {
	ifname string
	gen    int
	res    Result
}

// New returns a source probing with p.
func New(p *Prober, o Options) *Source {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.First <= 0 {
		o.First = 2 * time.Second
	}
	if o.Max <= 0 {
		o.Max = 30 * time.Second
	}
	if o.For <= 0 {
		o.For = 30 * time.Minute
	}
	s := &Source{o: o, probe: o.Probe, followed: make(chan struct{}, 1), ifs: map[string]*ifState{}}
	if s.probe == nil {
		s.probe, s.needsDNS = p.Probe, p.NeedsDNS()
	}
	return s
}

// Name implements watcher.Source.
func (s *Source) Name() string { return "portal" }

// Follow implements watcher.Follower: it keeps the newest networks and
// wakes Run.
func (s *Source) Follow(all []watcher.Network) {
	s.mu.Lock()
	s.latest = all
	s.mu.Unlock()
	select {
	case s.followed <- struct{}{}:
	default:
	}
}

// Observe implements watcher.Source: the verdict for each interface
// probed so far.
func (s *Source) Observe(context.Context) ([]watcher.Network, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []watcher.Network
	for ifname, st := range s.ifs {
		if st.known {
			out = append(out, watcher.Network{Interface: ifname, Connectivity: st.res.Connectivity, PortalURL: st.res.PortalURL})
		}
	}
	return out, nil
}

// Run implements watcher.Source: it starts the probes the networks call
// for and hints when a verdict changes. Probes end with it.
func (s *Source) Run(ctx context.Context, hint func()) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan probeDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		changed, next := s.plan(ctx, &wg, results)
		if changed {
			hint()
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-s.followed:
		case <-timer.C:
		case r := <-results:
			if s.record(r) {
				hint()
			}
		}
	}
}

// key identifies one network of an interface for probing: a new gateway,
// address or set of resolvers is judged afresh.
func key(n watcher.Network) string {
	dns := make([]string, len(n.DNS))
	for i, a := range n.DNS {
		dns[i] = a.String()
	}
	return fmt.Sprintf("%s|%s|%s", n.Gateway, n.Address, strings.Join(dns, ","))
}

// plan follows the latest networks: probes new ones and due re-probes,
// forgets those gone. It returns whether what Observe says changed, and
// when the next re-probe is due.
func (s *Source) plan(ctx context.Context, wg *sync.WaitGroup, results chan<- probeDone) (changed bool, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, n := range s.latest {
		if n.Interface == "" || !n.Gateway.IsValid() {
			continue
		}
		seen[n.Interface] = true
		k := key(n)
		gen := 0
		if old := s.ifs[n.Interface]; old != nil {
			if old.key == k {
				continue
			}
			old.stop()
			changed = changed || old.known
			gen = old.gen
		}
		st := &ifState{key: k, gen: gen, target: Target{Interface: n.Interface, DNS: slices.Clone(n.DNS)}}
		s.ifs[n.Interface] = st
		if s.needsDNS && len(n.DNS) == 0 {
			// The lease's resolvers are not known yet (another source
			// brings them): the probe waits for them.
			continue
		}
		s.start(ctx, wg, results, st)
	}
	now := time.Now()
	for ifname, st := range s.ifs {
		if !seen[ifname] {
			st.stop()
			changed = changed || st.known
			delete(s.ifs, ifname)
			continue
		}
		if st.next.IsZero() || st.cancel != nil {
			continue
		}
		if !now.Before(st.next) {
			st.next = time.Time{}
			s.start(ctx, wg, results, st)
			continue
		}
		if next.IsZero() || st.next.Before(next) {
			next = st.next
		}
	}
	return changed, next
}

func (st *ifState) stop() {
	if st.cancel != nil {
		st.cancel()
		st.cancel = nil
	}
}

// start probes st's network in the background.
func (s *Source) start(ctx context.Context, wg *sync.WaitGroup, results chan<- probeDone, st *ifState) {
	pctx, cancel := context.WithCancel(ctx)
	st.cancel = cancel
	st.gen++
	gen, t := st.gen, st.target
	wg.Go(func() {
		defer cancel()
		r := s.probe(pctx, t)
		select {
		case results <- probeDone{ifname: t.Interface, gen: gen, res: r}:
		case <-ctx.Done():
		}
	})
}

// record takes a probe's verdict; it returns whether Observe's answer
// changed.
func (s *Source) record(r probeDone) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ifs[r.ifname]
	if st == nil || st.gen != r.gen {
		return false // the network changed meanwhile: a new probe runs
	}
	st.cancel = nil
	old, wasKnown := st.res, st.known
	res := r.res
	suspected := wasKnown && old.Connectivity == watcher.ConnectivityPortal
	if suspected && res.Connectivity == watcher.ConnectivityLimited {
		// No answer to a re-probe says nothing new about the portal
		// (it may drop the odd probe; the sign-in window may be over and
		// the lockdown holding the probe back): it is still believed.
		s.o.Log.Debug("portal probe: no answer; still a portal", "interface", r.ifname, "why", res.Why)
		res = old
	}
	if suspected && res.Connectivity == watcher.ConnectivityPortal {
		res.PortalURL = old.PortalURL // the first address stands: no churn from per-probe tokens
	}
	st.res, st.known = res, true
	now := time.Now()
	if res.Connectivity == watcher.ConnectivityPortal {
		if st.portalAt.IsZero() {
			st.portalAt, st.wait = now, s.o.First
		} else {
			st.wait = min(st.wait*2, s.o.Max)
		}
		if now.Sub(st.portalAt) < s.o.For {
			st.next = now.Add(st.wait)
		} else {
			st.next = time.Time{}
			s.o.Log.Info("portal probe: still a portal; probing no more on this network", "interface", r.ifname, "for", s.o.For)
		}
	} else {
		st.portalAt, st.wait, st.next = time.Time{}, 0, time.Time{}
	}
	if wasKnown && old.Connectivity == res.Connectivity && old.PortalURL == res.PortalURL {
		return false
	}
	s.o.Log.Info("portal probe", "interface", r.ifname, "connectivity", res.Connectivity, "why", r.res.Why, "portal", res.PortalURL)
	return true
}
