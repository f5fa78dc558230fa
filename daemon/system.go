// Package daemon ties roamtun together: the state machine, the journal of
// changes to the system (crash recovery), the control socket, events and hooks.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/roamtun/roamtun/internal/route"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/dnsctl"
	"github.com/roamtun/roamtun/internal/journal"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// KindDNS is the journal kind of a DNS change (a dnsctl.Change).
const KindDNS = "dns"

// System is roamtun's hold on the machine: every change to routes, rules,
// the firewall and DNS goes through its journal, so that whatever a killed
// run left behind is undone by the next (or by `roamtun cleanup`).
type System struct {
	Journal *journal.Journal
	DNS     dnsctl.Options
	Log     *slog.Logger
}

// OpenSystem takes the journal in d.StateDir: one roamtun at a time.
// Callers run Cleanup next to undo what an earlier run left behind.
func OpenSystem(d config.Daemon, log *slog.Logger) (*System, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j, err := journal.Open(d.StateDir)
	if err != nil {
		return nil, err
	}
	return &System{Journal: j, Log: log, DNS: dnsctl.Options{Backend: d.DNS, StateDir: d.StateDir, Log: log}}, nil
}

// Recover opens the system (OpenSystem) and undoes what an earlier run
// left behind (Cleanup), logging how much that was. The System is usable
// even when recovery failed in part: the error says what is left in the
// journal, and the caller decides whether to go on.
func Recover(ctx context.Context, d config.Daemon, log *slog.Logger) (*System, error) {
	s, err := OpenSystem(d, log)
	if err != nil {
		return nil, err
	}
	n, err := s.Cleanup(ctx)
	if n > 0 {
		s.Log.Warn("undid what an earlier run left behind", "changes", n)
	}
	if err != nil {
		return s, fmt.Errorf("undoing what an earlier run left: %w", err)
	}
	return s, nil
}

// Cleanup undoes every journaled change, newest first. Entries it cannot
// undo stay for the next try; the error says which and why.
func (s *System) Cleanup(ctx context.Context) (int, error) {
	undo := route.Undoers()
	undo[KindDNS] = func(ctx context.Context, e *journal.Entry) error {
		var c dnsctl.Change
		if err := e.Decode(&c); err != nil {
			return err
		}
		if err := dnsctl.CheckJournaled(s.DNS, c); err != nil {
			return fmt.Errorf("%s: refused, not roamtun's: %w; left in place for inspection", e.File, err)
		}
		return dnsctl.Revert(ctx, s.DNS, c)
	}
	return s.Journal.Replay(ctx, undo)
}

// Close releases the journal; pending entries stay for the next run.
func (s *System) Close() error { return s.Journal.Close() }

// guard is one profile's protection on the uplink (Guard): routes and
// lockdown from Protect until Close, the tunnel's default route and DNS
// while it is up.
type guard struct {
	s       *System
	p       *config.Profile
	routing *route.Routing

	mu       sync.Mutex
	dns      *dnsctl.Change
	dnsEntry *journal.Entry
	stopKeep context.CancelFunc
	keepDone chan struct{}

	// life orders a run's calls (Up, Down, Refresh, UseServer) against
	// Close: the daemon closes the guard without waiting for the run to
	// wind down, and a run still finishing in the background must not
	// bring routes or DNS back after it.
	life   sync.Mutex
	closed bool
}

// errGuardClosed: the run outlived its guard (it is being stopped).
var errGuardClosed = errors.New("the tunnel is being stopped")

// Protect finds how the server is reached now, before anything changes, and
// sets up the routing (and with the profile's lockdown, the firewall): from
// here on nothing but ssh to the server leaves the uplink outside the tunnel
// (with lockdown), and DHCP/option 121 routes in main cannot divert traffic.
func (s *System) Protect(ctx context.Context, p *config.Profile, server netip.Addr) (Guard, error) {
	path, err := route.FindPath(server, p.Interface)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	g := &guard{s: s, p: p}
	g.routing = route.NewRouting(route.RoutingOptions{Server: server, ServerPort: p.Port, Path: path,
		IPv6: p.IPv6, Lockdown: p.Lockdown, Journal: s.Journal, Log: s.Log})
	if err := g.routing.Setup(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	return g, nil
}

// Up routes everything through the tunnel's TUN and points DNS at the
// servers IPCP gave (and with ipv6 = "tunnel", those the far end's router
// advertisement gave).
func (g *guard) Up(ctx context.Context, ifname string, sess ppp.Session) error {
	g.life.Lock()
	defer g.life.Unlock()
	if g.closed {
		return errGuardClosed
	}
	if err := g.routing.TunnelUp(ifname, sess); err != nil {
		return err
	}
	dns := sess.DNS
	if g.p.IPv6 == config.IPv6Tunnel && sess.IPv6 && len(sess.DNS6) > 0 {
		// RDNSS from the far end's router advertisement: reached through
		// the tunnel like the rest of IPv6.
		dns = append(dns[:len(dns):len(dns)], sess.DNS6...)
	}
	return g.dnsUp(ctx, ifname, dns)
}

// Forbidden is what the far end may not hand us over IPCP (the server's
// address, the uplink's subnets), for ppp.Config.Forbidden.
func (g *guard) Forbidden() []ppp.Forbidden { return g.routing.Forbidden() }

// UseServer moves the server's host route and the lockdown's hole to addr,
// another address of the same server, before a dial.
func (g *guard) UseServer(addr netip.Addr) error {
	g.life.Lock()
	defer g.life.Unlock()
	if g.closed {
		return errGuardClosed
	}
	return g.routing.UseServer(addr)
}

// Refresh puts the server's route in line with the uplink before a dial
// (a new gateway after a roam, a flushed interface).
func (g *guard) Refresh() error {
	g.life.Lock()
	defer g.life.Unlock()
	if g.closed {
		return errGuardClosed
	}
	return g.routing.Refresh()
}

// Down notes that the TUN went away (its routes went with it). DNS stays
// pointed at the tunnel's servers while redialing, so no query leaks to the
// untrusted network's resolver meanwhile.
func (g *guard) Down() {
	g.life.Lock()
	defer g.life.Unlock()
	if !g.closed {
		g.routing.TunnelDown()
	}
}

// Close undoes everything Protect and Up did, newest first; later calls of
// the run's are no-ops.
func (g *guard) Close(ctx context.Context) error {
	g.life.Lock()
	defer g.life.Unlock()
	g.closed = true
	return errors.Join(g.dnsClose(ctx), g.routing.Teardown())
}

func (g *guard) dnsUp(ctx context.Context, ifname string, servers []netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(servers) == 0 {
		g.s.Log.Warn("the far end gave no DNS servers; DNS left as it is")
		return nil
	}
	want := dnsctl.Settings{Link: ifname, Servers: servers}
	if g.dns != nil {
		if g.dns.Backend != "resolved" && sameSettings(g.dns, want) {
			return nil // a file or resolvconf change outlives the TUN
		}
		if err := g.dnsCloseLocked(ctx); err != nil {
			return err
		}
	}
	c, err := dnsctl.Prepare(ctx, g.s.DNS, want)
	if err != nil {
		return err // dnsctl's errors say "dns: …" themselves
	}
	e, err := g.s.Journal.Record(KindDNS, c)
	if err != nil {
		return err
	}
	if err := dnsctl.Apply(ctx, g.s.DNS, c); err != nil {
		// A half-made change is undone; the entry goes once that worked.
		if rerr := dnsctl.Revert(ctx, g.s.DNS, c); rerr == nil {
			g.s.Journal.Done(e)
		}
		return err
	}
	g.dns, g.dnsEntry = &c, e
	g.s.Log.Info("dns set", "backend", c.Backend, "servers", servers, "link", ifname)
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	g.stopKeep, g.keepDone = cancel, done
	go func() {
		defer close(done)
		if err := dnsctl.Keep(kctx, g.s.DNS, c); err != nil && kctx.Err() == nil {
			g.s.Log.Warn("dns: keeping our resolver settings stopped", "err", err)
		}
	}()
	return nil
}

func sameSettings(c *dnsctl.Change, s dnsctl.Settings) bool {
	return c.Link == s.Link && slices.Equal(c.Servers, s.Servers)
}

func (g *guard) dnsClose(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dnsCloseLocked(ctx)
}

func (g *guard) dnsCloseLocked(ctx context.Context) error {
	if g.dns == nil {
		return nil
	}
	g.stopKeep()
	<-g.keepDone
	if err := dnsctl.Revert(ctx, g.s.DNS, *g.dns); err != nil {
		return fmt.Errorf("restoring: %w (left in the journal for roamtun cleanup)", err)
	}
	g.s.Journal.Done(g.dnsEntry)
	g.s.Log.Info("dns restored", "backend", g.dns.Backend)
	g.dns, g.dnsEntry = nil, nil
	return nil
}
