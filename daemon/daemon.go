package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/roamtun/roamtun/internal/dial"
	"github.com/roamtun/roamtun/internal/netmon"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/internal/serveraddr"
	"github.com/roamtun/roamtun/policy"
	"github.com/roamtun/roamtun/tunnel"
	"github.com/roamtun/roamtun/tunnel/ppp"
	"github.com/roamtun/roamtun/watcher"
)

// State is the daemon's state (DESIGN.md "Status").
type State string

// States.
const (
	StateIdle         State = "idle"         // no network
	StateDirect       State = "direct"       // trusted: the network is used as it is
	StateConnecting   State = "connecting"   // untrusted: dialing the tunnel
	StateUp           State = "up"           // everything goes through the tunnel
	StateReconnecting State = "reconnecting" // the tunnel dropped; redialing
	StateBlocked      State = "blocked"      // lockdown, no tunnel
	StatePortal       State = "portal"       // a captive portal waits for sign-in
	StateStopped      State = "stopped"
)

// NetworkStatus is the network part of Status.
type NetworkStatus struct {
	Interface    string `json:"interface"`
	Kind         string `json:"kind"`
	SSID         string `json:"ssid,omitempty"` // escaped for display (watcher.EscapeSSID)
	BSSID        string `json:"bssid,omitempty"`
	Security     string `json:"security,omitempty"`
	Gateway      string `json:"gateway,omitempty"`
	GatewayMAC   string `json:"gateway_mac,omitempty"`
	Connectivity string `json:"connectivity,omitempty"`
	// PortalURL is where a captive portal sent the connectivity probe:
	// what "Sign in" opens. The network chose it: show it, never trust it.
	PortalURL    string `json:"portal_url,omitempty"`
	TunnelVision bool   `json:"tunnelvision,omitempty"` // DHCP option 121 routes cover the default
	Rule         string `json:"rule"`
	Action       string `json:"action"`
}

// TunnelStatus is the tunnel part of Status.
type TunnelStatus struct {
	Profile    string   `json:"profile"`
	Interface  string   `json:"interface"`
	Local      string   `json:"local,omitempty"`
	Remote     string   `json:"remote,omitempty"`
	DNS        []string `json:"dns"`
	UpSince    string   `json:"up_since,omitempty"` // RFC 3339
	Reconnects int      `json:"reconnects"`
	RxBytes    uint64   `json:"rx_bytes"`
	TxBytes    uint64   `json:"tx_bytes"`
}

// Status is what `roamtun status --json` prints (DESIGN.md).
type Status struct {
	State    State          `json:"state"`
	Network  *NetworkStatus `json:"network,omitempty"`
	Tunnel   *TunnelStatus  `json:"tunnel,omitempty"`
	Reason   string         `json:"reason"`
	Override Override       `json:"override,omitempty"` // until the network changes
	// Uplinks lists every network with a default route and its verdict,
	// the primary (Network) first, when there is more than one.
	Uplinks []NetworkStatus `json:"uplinks,omitempty"`
}

// Override is what `roamtun up` / `roamtun down` impose until the network
// changes.
type Override string

// Overrides.
const (
	OverrideNone Override = ""
	OverrideUp   Override = "up"   // tunnel whatever the policy says
	OverrideDown Override = "down" // use the network directly
)

// SeenNetwork is a network the daemon judged recently, and its verdict.
type SeenNetwork struct {
	NetworkStatus
	LastSeen string `json:"last_seen"` // RFC 3339
}

// maxSeen bounds the networks remembered for `roamtun networks`.
const maxSeen = 32

// Options wire a Daemon. Config and Host are needed; the rest have
// defaults (the real supervisor, network watcher and clock) or may be nil.
type Options struct {
	Config *config.Config
	Host   Host // *System, or a fake
	// Supervise runs a tunnel; nil: tunnel.Supervise.
	Supervise Supervisor
	// WatchNetwork kicks a waiting redial on network changes; nil:
	// netmon.WatchNetwork.
	WatchNetwork NetWatcher
	// Clock: nil is the real one.
	Clock  Clock
	Policy *policy.Holder
	Verify *policy.VerifyCache // host-key probes for verify rules, cached per network; nil: none
	// Networks delivers the primary network whenever it changes; the zero
	// Network means none. The daemon reads it until it is closed.
	Networks <-chan watcher.Network
	// Uplinks returns every network with a default route (the primary
	// among them), read at each evaluation: the others are judged too,
	// trusted ones let out of the standby firewall, untrusted ones kept
	// closed. nil: the primary only.
	Uplinks func() []watcher.Network
	Hooks   *Hooks // may be nil
	// Standby: until the daemon has judged a network, nothing but DHCP and
	// ND leaves it (route.StartStandby). Set when profiles use lockdown.
	Standby bool
	Log     *slog.Logger
	// Dial returns the command that carries PPP to p's server at addr;
	// nil: the profile's dial_command, else ssh.
	Dial func(p *config.Profile, addr netip.Addr) (argv, env []string)
	// Addrs remembers servers' and verify targets' addresses learnt where
	// they can be believed (a trusted network's DNS, a pinned host key
	// answering); nil remembers nothing.
	Addrs *serveraddr.Book
	// Resolver looks names up; nil: the system's.
	Resolver serveraddr.Resolver
	// PortalCheck is set when the watcher's "portal" source probes new
	// networks; the zero value: it does not.
	PortalCheck PortalCheck
}

// PortalCheck tells the daemon about the portal source (watcher/portal).
type PortalCheck struct {
	// Port is the probe's HTTP port: the standby firewall lets the
	// probe's marked packets out to it and to DNS.
	Port uint16
	// Wait is how long a new untrusted network whose connectivity is not
	// known yet is held under the standby firewall, nothing dialed, for
	// the probe's verdict: once the tunnel's lockdown holds the uplink the
	// probe cannot get out, and a portal would go unnoticed.
	Wait time.Duration
}

// Daemon is the state machine: Network snapshots and policy decisions in,
// tunnel, routes and DNS out. All state changes happen on Run's goroutine.
type Daemon struct {
	o   Options
	log *slog.Logger

	reqs   chan func(ctx context.Context)
	events chan tunEvent

	mu     sync.Mutex
	status Status
	stats  func() ppp.Stats
	subs   map[chan Status]struct{}
	seen   []SeenNetwork // newest first, one per network (see noteSeen)

	// Owned by Run's goroutine.
	net      watcher.Network
	override Override
	ovProf   string
	gen      int // numbers tunnel runs, so a stopped run's late events are ignored
	run      *tunnelRun
	portal   map[string]time.Time // per network: direct traffic allowed until, to sign in
	done     chan struct{}        // closed when Run returns
	standby  Standby
	opened   map[string]bool // interfaces the standby firewall lets out now
	primary  string          // the primary uplink's interface, when it may be let out
	trusted  map[string]bool // other uplinks judged trusted
	others   []NetworkStatus // the other uplinks and their verdicts
	check    portalCheck

	bg sync.WaitGroup // background lookups (learnAddrs); joined when Run returns
}

// tunnelRun is one supervised tunnel and the protection around it.
type tunnelRun struct {
	gen     int
	key     string // profile + interface: the same key survives roams
	profile *config.Profile
	guard   Guard
	cancel  context.CancelFunc
	done    chan struct{}
	ups     int
	block   bool   // lockdown only, no dial (action block)
	reason  string // the policy's words for this network
}

// portalCheck is the network held for the portal probe's verdict.
type portalCheck struct {
	key    string // interface, SSID, connection, gateway
	until  time.Time
	logged bool
}

type tunEvent struct {
	gen int
	ev  tunnel.Event
}

// New returns a daemon in state idle.
func New(o Options) *Daemon {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Supervise == nil {
		o.Supervise = tunnel.Supervise
	}
	if o.WatchNetwork == nil {
		o.WatchNetwork = netmon.WatchNetwork
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return &Daemon{o: o, log: o.Log, reqs: make(chan func(context.Context)), events: make(chan tunEvent, 64),
		subs: map[chan Status]struct{}{}, portal: map[string]time.Time{}, opened: map[string]bool{},
		done:   make(chan struct{}),
		status: Status{State: StateIdle, Reason: "no network yet"}}
}

// Run drives the daemon until ctx is done; then it stops the tunnel, puts
// routes and DNS back and returns.
func (d *Daemon) Run(ctx context.Context) error {
	nets := d.o.Networks
	defer close(d.done)
	defer d.bg.Wait()
	if d.o.Standby {
		var exempt []string
		for _, p := range d.o.Config.Profiles {
			exempt = append(exempt, p.Interface)
		}
		st, err := d.o.Host.Standby(exempt, d.o.PortalCheck.Port)
		if err != nil {
			return fmt.Errorf("lockdown: standby firewall: %w", err)
		}
		d.standby = st
		d.allowProbes(ctx)
		defer func() {
			if err := st.Stop(); err != nil {
				d.log.Error("removing the standby firewall", "err", err)
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			d.stop(context.WithoutCancel(ctx))
			d.setStatus(func(s *Status) {
				*s = Status{State: StateStopped, Reason: "the daemon stopped; routes and DNS restored"}
			})
			return nil
		case n, ok := <-nets:
			if !ok {
				nets = nil
				continue
			}
			prev := d.net
			d.net = n
			if d.override != OverrideNone && !sameNetwork(prev, n) {
				d.log.Info("network changed: override ends", "override", d.override)
				d.override, d.ovProf = OverrideNone, ""
			}
			d.evaluate(ctx)
		case te := <-d.events:
			d.onTunnelEvent(te)
		case f := <-d.reqs:
			f(ctx)
		}
	}
}

// do runs f on the daemon's goroutine and waits for it.
func (d *Daemon) do(ctx context.Context, f func(ctx context.Context) error) error {
	errc := make(chan error, 1)
	select {
	case d.reqs <- func(ctx context.Context) { errc <- f(ctx) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// allowProbes lets the policy's verify probes through the standby firewall.
func (d *Daemon) allowProbes(ctx context.Context) {
	if d.standby == nil {
		return
	}
	var targets []netip.AddrPort
	for _, r := range d.o.Policy.Policy().Rules {
		if r.Verify == "" {
			continue
		}
		host, port, err := net.SplitHostPort(r.Verify)
		if err != nil {
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			continue
		}
		// A name is let through only at addresses learnt on a trusted
		// network: the current network's DNS must not choose where the
		// standby firewall opens.
		addrs := d.o.Addrs.Known(host)
		if a, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{a}
		}
		for _, a := range addrs {
			targets = append(targets, netip.AddrPortFrom(a, uint16(p)))
		}
	}
	if err := d.standby.SetProbes(targets); err != nil {
		d.log.Error("standby firewall: verify probes", "err", err)
	}
}

// letOut lets the primary uplink ifname out of the standby firewall ("" for
// none); other uplinks stay as judged.
func (d *Daemon) letOut(ifname string) {
	d.primary = ifname
	d.syncStandby()
}

// syncStandby opens the standby firewall for the primary uplink (when let
// out) and the other uplinks judged trusted, and closes it for the rest.
func (d *Daemon) syncStandby() {
	if d.standby == nil {
		return
	}
	want := map[string]bool{}
	if d.primary != "" {
		want[d.primary] = true
	}
	for ifname := range d.trusted {
		want[ifname] = true
	}
	for _, ifname := range slices.Sorted(maps.Keys(d.opened)) {
		if !want[ifname] {
			if err := d.standby.Close(ifname); err != nil {
				d.log.Error("standby firewall", "err", err)
			}
			delete(d.opened, ifname)
		}
	}
	for _, ifname := range slices.Sorted(maps.Keys(want)) {
		if d.opened[ifname] {
			continue
		}
		if err := d.standby.Open(ifname); err != nil {
			d.log.Error("standby firewall", "err", err)
			continue
		}
		d.opened[ifname] = true
	}
}

// noteSeen remembers a judged network for `roamtun networks`: one entry per
// interface and network (SSID and BSSID, or the gateway's MAC), newest first.
func (d *Daemon) noteSeen(ns NetworkStatus) {
	key := func(n NetworkStatus) string {
		return n.Interface + "\x00" + n.Kind + "\x00" + n.SSID + "\x00" + n.BSSID + "\x00" + n.GatewayMAC
	}
	e := SeenNetwork{NetworkStatus: ns, LastSeen: d.o.Clock.Now().UTC().Format(time.RFC3339)}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = slices.DeleteFunc(d.seen, func(s SeenNetwork) bool { return key(s.NetworkStatus) == key(ns) })
	d.seen = append([]SeenNetwork{e}, d.seen...)
	if len(d.seen) > maxSeen {
		d.seen = d.seen[:maxSeen]
	}
}

// Seen returns the networks judged recently, newest first.
func (d *Daemon) Seen() []SeenNetwork {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seen)
}

// judgeOthers judges every uplink but the primary: a trusted one may carry
// traffic of its own (a dock's Ethernet at the office beside the café's
// Wi-Fi), an untrusted one stays closed under the standby firewall; the
// tunnel runs over the primary.
func (d *Daemon) judgeOthers(ctx context.Context, primary watcher.Network) {
	d.trusted, d.others = map[string]bool{}, nil
	if d.o.Uplinks == nil {
		return
	}
	for _, n := range d.o.Uplinks() {
		if n.Interface == primary.Interface || !n.Gateway.IsValid() {
			continue
		}
		var v policy.Verifier
		if d.o.Verify != nil {
			v = d.o.Verify.For(n)
		}
		dec := d.o.Policy.Policy().Decide(ctx, n, v)
		if dec.Action == policy.ActionTrust {
			d.trusted[n.Interface] = true
		}
		ns := networkStatus(n, dec)
		d.others = append(d.others, ns)
		d.noteSeen(ns)
	}
}

// networkStatus is a network and its verdict, for status.
func networkStatus(n watcher.Network, dec policy.Decision) NetworkStatus {
	ns := NetworkStatus{Interface: n.Interface, Kind: string(n.Kind), SSID: n.DisplaySSID(), BSSID: n.BSSID,
		Security: string(n.Security), GatewayMAC: n.GatewayMAC, Connectivity: string(n.Connectivity),
		TunnelVision: n.TunnelVision, Rule: dec.Rule, Action: string(dec.Action)}
	if n.Gateway.IsValid() {
		ns.Gateway = n.Gateway.String()
	}
	if n.Connectivity == watcher.ConnectivityPortal {
		ns.PortalURL = n.PortalURL
	}
	return ns
}

// sameNetwork: one network, perhaps another access point of it (a roam).
func sameNetwork(a, b watcher.Network) bool {
	return a.Interface == b.Interface && a.Kind == b.Kind && a.SSID == b.SSID && a.Connection == b.Connection
}

// evaluate decides what the current network gets and makes it so.
func (d *Daemon) evaluate(ctx context.Context) {
	n := d.net
	d.judgeOthers(ctx, n)
	if n.IsZero() {
		d.stop(ctx)
		d.letOut("")
		d.check = portalCheck{}
		d.setStatus(func(s *Status) { *s = Status{State: StateIdle, Reason: "no network: everything put back"} })
		return
	}
	var v policy.Verifier
	if d.o.Verify != nil {
		v = d.o.Verify.For(n)
	}
	dec := d.o.Policy.Policy().Decide(ctx, n, v)
	switch d.override {
	case OverrideUp:
		dec.Action, dec.Reason = policy.ActionTunnel, "override (roamtun up) until the network changes; policy says: "+dec.Reason
		if d.ovProf != "" {
			dec.Profile = d.ovProf
		}
	case OverrideDown:
		dec.Action, dec.Reason = policy.ActionTrust, "override (roamtun down) until the network changes; policy says: "+dec.Reason
	}
	primary := networkStatus(n, dec)
	ns := &primary
	d.noteSeen(primary)
	if n.TunnelVision {
		d.log.Warn("the network's DHCP pushes routes that cover the default route (TunnelVision, CVE-2024-3661)",
			"interface", n.Interface, "routes", n.ClasslessRoutes)
	}
	base := func(s *Status) {
		s.Network, s.Override = ns, d.override
		if len(d.others) > 0 {
			s.Uplinks = append([]NetworkStatus{primary}, d.others...)
		}
	}

	if dec.Action == policy.ActionTrust {
		d.stop(ctx)
		d.letOut(n.Interface)
		if d.override == OverrideNone {
			d.learnAddrs(ctx)
		}
		d.setStatus(func(s *Status) { *s = Status{State: StateDirect, Reason: dec.Reason}; base(s) })
		return
	}
	p, err := d.profile(dec.Profile)
	if err != nil {
		d.stop(ctx)
		d.letOut("")
		d.setStatus(func(s *Status) {
			*s = Status{State: StateBlocked, Reason: "cannot tunnel: " + err.Error()}
			base(s)
		})
		return
	}
	if d.inPortal(ctx, n, dec, p, base) {
		return
	}
	block := dec.Action == policy.ActionBlock
	key := fmt.Sprintf("%s|%s|%v", p.Name, n.Interface, block)
	if d.awaitPortalCheck(ctx, n, dec, p, key, base) {
		return
	}
	if d.run != nil && d.run.key == key {
		// The same network (another access point, a renewed lease): the
		// tunnel stays; the server route follows the gateway.
		if err := d.run.guard.Refresh(); err != nil {
			d.log.Warn("server route not refreshed", "err", err)
		}
		d.setStatus(func(s *Status) { base(s) })
		return
	}
	d.stop(ctx)
	d.letOut("")
	servers, err := d.candidates(ctx, p)
	if err != nil {
		d.setStatus(func(s *Status) { *s = Status{State: StateBlocked, Reason: err.Error()}; base(s) })
		return
	}
	prof := *p
	if block {
		prof.Lockdown = true
	}
	guard, err := d.o.Host.Protect(ctx, &prof, servers[0])
	if err != nil {
		d.log.Error("protecting the network failed", "err", err)
		d.setStatus(func(s *Status) { *s = Status{State: StateBlocked, Reason: err.Error()}; base(s) })
		return
	}
	// Routing's own rules now hold the uplink (only ssh to the server,
	// with lockdown): the standby firewall may let it out.
	d.letOut(n.Interface)
	d.gen++
	r := &tunnelRun{gen: d.gen, key: key, profile: p, guard: guard, done: make(chan struct{}), block: block, reason: dec.Reason}
	d.run = r
	if block {
		close(r.done)
		r.cancel = func() {}
		d.setStatus(func(s *Status) { *s = Status{State: StateBlocked, Reason: dec.Reason}; base(s) })
		return
	}
	d.setStatus(func(s *Status) {
		*s = Status{State: StateConnecting, Reason: dec.Reason,
			Tunnel: &TunnelStatus{Profile: p.Name, Interface: p.Interface, DNS: []string{}}}
		base(s)
	})
	d.dial(ctx, r, servers)
}

// inPortal handles a captive portal: with lockdown on, the tunnel cannot
// get out until the user signs in, so direct traffic is allowed for the
// portal window (state portal); the tunnel dials as soon as NetworkManager
// or the portal probe reports full connectivity, or when the window closes.
func (d *Daemon) inPortal(ctx context.Context, n watcher.Network, dec policy.Decision, p *config.Profile, base func(*Status)) bool {
	key := n.Interface + "\x00" + n.SSID + "\x00" + n.Connection
	if n.Connectivity != watcher.ConnectivityPortal || dec.Action != policy.ActionTunnel || !p.Lockdown || d.override != OverrideNone {
		if n.Connectivity != watcher.ConnectivityPortal {
			delete(d.portal, key) // signed in: a later portal gets a new window
		}
		return false
	}
	window := d.o.Config.Daemon.PortalWindow
	until, seen := d.portal[key]
	if !seen {
		until = d.o.Clock.Now().Add(window)
		d.portal[key] = until
		d.o.Clock.AfterFunc(window, func() {
			select {
			case d.reqs <- func(ctx context.Context) { d.evaluate(ctx) }:
			case <-d.done:
			}
		})
	}
	if !d.o.Clock.Now().Before(until) {
		d.log.Warn("captive portal: sign-in window over; tunnelling (lockdown) anyway", "network", n.DisplaySSID())
		return false
	}
	d.stop(ctx)
	d.letOut(n.Interface) // direct traffic, to sign in
	d.setStatus(func(s *Status) {
		*s = Status{State: StatePortal, Reason: fmt.Sprintf("captive portal: sign in within %s (until %s); direct traffic is allowed until then, the tunnel follows",
			until.Sub(d.o.Clock.Now()).Round(time.Second), until.Format("15:04:05"))}
		base(s)
	})
	return true
}

// awaitPortalCheck holds a new untrusted network under the standby
// firewall, nothing dialed, until the portal probe has judged it or
// PortalCheck.Wait has passed (then the tunnel dials anyway). A network
// already tunnelled (a roam, a renewed lease) keeps its tunnel.
func (d *Daemon) awaitPortalCheck(ctx context.Context, n watcher.Network, dec policy.Decision, p *config.Profile, key string, base func(*Status)) bool {
	wait := d.o.PortalCheck.Wait
	if n.Connectivity != watcher.ConnectivityUnknown {
		d.check = portalCheck{} // judged: a later unknown is a new question
		return false
	}
	if wait <= 0 || dec.Action != policy.ActionTunnel || !p.Lockdown || d.override != OverrideNone || d.run != nil && d.run.key == key {
		return false
	}
	ck := n.Interface + "\x00" + n.SSID + "\x00" + n.Connection + "\x00" + n.Gateway.String()
	if d.check.key != ck {
		d.check = portalCheck{key: ck, until: d.o.Clock.Now().Add(wait)}
		d.o.Clock.AfterFunc(wait, func() {
			select {
			case d.reqs <- func(ctx context.Context) { d.evaluate(ctx) }:
			case <-d.done:
			}
		})
	}
	if !d.o.Clock.Now().Before(d.check.until) {
		if !d.check.logged {
			d.check.logged = true
			d.log.Warn("captive portal check: no verdict in time; tunnelling", "network", n.DisplaySSID(), "interface", n.Interface, "waited", wait)
		}
		return false
	}
	d.stop(ctx)
	d.letOut("")
	d.setStatus(func(s *Status) {
		*s = Status{State: StateConnecting, Reason: fmt.Sprintf("checking for a captive portal first (up to %s); %s", wait, dec.Reason),
			Tunnel: &TunnelStatus{Profile: p.Name, Interface: p.Interface, DNS: []string{}}}
		base(s)
	})
	return true
}

// dial starts supervising r's tunnel.
func (d *Daemon) dial(ctx context.Context, r *tunnelRun, servers []netip.Addr) {
	p := r.profile
	lc, err := LinkConfig(p, d.log)
	if err != nil {
		close(r.done)
		r.cancel = func() {}
		d.setStatus(func(s *Status) { s.State, s.Reason = StateBlocked, err.Error() })
		return
	}
	lc.Forbidden = r.guard.Forbidden
	// Each attempt dials one of the server's addresses, moving on after
	// one that never came up; an address where the pinned host key
	// answered is remembered.
	rot := serveraddr.NewRotation(servers)
	var addr netip.Addr // the address of the current attempt (Supervise's goroutine)
	dialer := func(attempt int) ([]string, []string, error) {
		addr = rot.Next(attempt)
		if err := r.guard.UseServer(addr); err != nil {
			return nil, nil, err
		}
		switch {
		case d.o.Dial != nil:
			argv, env := d.o.Dial(p, addr)
			return argv, env, nil
		case len(p.DialCommand) > 0:
			return p.DialCommand, nil, nil
		}
		argv, env := dial.SSHCommandTo(p, addr)
		return argv, env, nil
	}
	prefix := "ssh"
	if len(p.DialCommand) > 0 {
		prefix = "dial"
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	// Once every known address has failed, the current network's DNS is
	// asked again, on Supervise's goroutine (the state machine never waits
	// for it).
	rot.Refresh(rctx, p.Host, p.Addresses, d.o.Resolver, func(err error) {
		d.log.Debug("looking the server up again", "host", p.Host, "err", err)
	})
	kick := make(chan struct{}, 1)
	var src netmon.SourceWatch // the uplink address the link came up over
	// Both goroutines belong to the run: stop cancels rctx and waits for
	// r.done, closed once both have returned.
	var wg sync.WaitGroup
	wg.Go(func() { d.o.WatchNetwork(rctx, kick, p.Interface, 100*time.Millisecond, d.log) })
	defer func() { go func() { wg.Wait(); close(r.done) }() }()
	var engine func(context.Context, []string, []string, tunnel.SessionOptions) error
	if p.Engine == config.EnginePPPD {
		engine = tunnel.NewPPPD(p).Run
	}
	wg.Go(func() {
		err := d.o.Supervise(rctx, tunnel.SuperviseOptions{
			Dial: dialer, LogPrefix: prefix, Log: d.log, Kick: kick, Stale: src.Stale, Engine: engine,
			Session: tunnel.SessionOptions{Link: lc, Interface: p.Interface, MTU: p.MTU, Log: d.log},
			OnEvent: func(ev tunnel.Event) {
				// Routes and DNS follow the link here, before anyone is
				// told it is up.
				switch ev.Kind {
				case tunnel.EventDialing:
					if err := r.guard.Refresh(); err != nil {
						d.log.Debug("no path to the server yet", "err", err)
					}
				case tunnel.EventUp:
					if err := r.guard.Up(rctx, ev.Ifname, ev.Session); err != nil {
						d.log.Error("routing through the tunnel failed", "err", err)
					}
					if len(p.DialCommand) == 0 && d.o.Dial == nil {
						d.o.Addrs.Remember(p.Host, addr) // the pinned host key answered there
					}
					src.Up(addr)
				case tunnel.EventDown:
					r.guard.Down()
				}
				select {
				case d.events <- tunEvent{gen: r.gen, ev: ev}:
				case <-rctx.Done():
				}
			},
		})
		if err != nil && !errors.Is(err, ppp.ErrClosed) {
			d.log.Warn("tunnel supervision ended", "err", err)
		}
	})
}

func (d *Daemon) onTunnelEvent(te tunEvent) {
	r := d.run
	if r == nil || r.gen != te.gen {
		return // from a tunnel already stopped
	}
	ev := te.ev
	switch ev.Kind {
	case tunnel.EventDialing:
		d.log.Info("dialing", "profile", r.profile.Name, "attempt", ev.Attempt, "cause", ev.Cause)
	case tunnel.EventUp:
		r.ups++
		d.mu.Lock()
		d.stats = ev.Stats
		d.mu.Unlock()
		dns := make([]string, len(ev.Session.DNS))
		for i, a := range ev.Session.DNS {
			dns[i] = a.String()
		}
		d.log.Info("tunnel up", "profile", r.profile.Name, "interface", ev.Ifname, "local", ev.Session.LocalIP, "remote", ev.Session.PeerIP)
		d.setStatus(func(s *Status) {
			s.State, s.Reason = StateUp, "everything goes through the tunnel: "+r.reason
			s.Tunnel = &TunnelStatus{Profile: r.profile.Name, Interface: ev.Ifname, Local: ev.Session.LocalIP.String(),
				Remote: ev.Session.PeerIP.String(), DNS: dns, UpSince: ev.Time.UTC().Format(time.RFC3339), Reconnects: r.ups - 1}
		})
		d.o.Hooks.Run(r.profile.HooksDir, "up", d.hookEnv(r, ev))
	case tunnel.EventDown:
		if ev.Reason != nil && !errors.Is(ev.Reason, ppp.ErrClosed) {
			d.log.Warn("tunnel down", "reason", ev.Reason)
		}
		d.mu.Lock()
		d.stats = nil
		d.mu.Unlock()
		d.setStatus(func(s *Status) {
			s.State = StateReconnecting
			if r.ups == 0 {
				s.State = StateConnecting
			}
			s.Reason = "redialing"
			if ev.Reason != nil {
				s.Reason = "redialing: " + ev.Reason.Error()
			}
			if s.Tunnel != nil {
				s.Tunnel.UpSince, s.Tunnel.Local, s.Tunnel.Remote = "", "", ""
			}
		})
		if r.ups > 0 {
			d.o.Hooks.Run(r.profile.HooksDir, "down", d.hookEnv(r, ev))
		}
	case tunnel.EventWaiting:
		d.log.Info("redialing", "in", ev.Wait.Round(time.Millisecond), "attempt", ev.Attempt+1)
	}
}

func (d *Daemon) hookEnv(r *tunnelRun, ev tunnel.Event) HookEnv {
	return HookEnv{Profile: r.profile.Name, Ifname: ev.Ifname, Local: ev.Session.LocalIP, Remote: ev.Session.PeerIP,
		DNS: ev.Session.DNS, SSID: d.net.SSID, Interface: d.net.Interface}
}

// stop ends the tunnel (cleanly: LCP terminate) and undoes its routes and DNS.
func (d *Daemon) stop(ctx context.Context) {
	r := d.run
	if r == nil {
		return
	}
	d.run = nil
	r.cancel()
	// Routes, firewall and DNS go back now; the link says its goodbye (LCP
	// Terminate, the transport closed — seconds, when the far end is
	// gone) in the background, off the state machine: the guard refuses
	// what the run might still try after Close. Run joins it at the end.
	if err := r.guard.Close(ctx); err != nil {
		d.log.Error("restoring routes and DNS", "err", err)
	}
	d.bg.Go(func() { <-r.done })
	d.mu.Lock()
	d.stats = nil
	d.mu.Unlock()
}

func (d *Daemon) profile(name string) (*config.Profile, error) {
	if name == "" {
		if len(d.o.Config.Profiles) == 1 {
			for _, p := range d.o.Config.Profiles {
				return p, nil
			}
		}
		return nil, errors.New("the policy names no profile to tunnel through")
	}
	return d.o.Config.Profile(name)
}

// candidates returns the addresses to dial p's server at (serveraddr):
// pinned ones, else those learnt where they could be believed, else the
// current network's answers (dial asks it again when all have failed).
func (d *Daemon) candidates(ctx context.Context, p *config.Profile) ([]netip.Addr, error) {
	if p.Host == "" {
		return nil, fmt.Errorf("profile %s has no host: the daemon needs one to route around the tunnel", p.Name)
	}
	return serveraddr.Candidates(ctx, p.Host, p.Addresses, d.o.Addrs, d.o.Resolver)
}

// learnAddrs looks up, in the background, the names a trusted network's DNS
// may be believed about — every profile's server and the policy's verify
// targets — and remembers the answers, then lets the verify targets
// through the standby firewall at them.
func (d *Daemon) learnAddrs(ctx context.Context) {
	if d.o.Addrs == nil {
		return
	}
	var hosts []string
	for _, p := range d.o.Config.Profiles {
		if _, err := netip.ParseAddr(p.Host); err != nil && p.Host != "" && len(p.Addresses) == 0 {
			hosts = append(hosts, p.Host)
		}
	}
	for _, r := range d.o.Policy.Policy().Rules {
		if host, _, err := net.SplitHostPort(r.Verify); err == nil {
			if _, err := netip.ParseAddr(host); err != nil {
				hosts = append(hosts, host)
			}
		}
	}
	if len(hosts) == 0 {
		return
	}
	d.bg.Go(func() {
		for _, h := range hosts {
			addrs, err := serveraddr.Lookup(ctx, d.o.Resolver, h)
			if err != nil {
				d.log.Debug("learning addresses on a trusted network", "host", h, "err", err)
				continue
			}
			if err := d.o.Addrs.Remember(h, addrs...); err != nil {
				d.log.Warn("remembering addresses", "host", h, "err", err)
			}
		}
		d.allowProbes(ctx)
	})
}

// Status returns the current status, with live byte counters.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := cloneStatus(d.status)
	if s.Tunnel != nil && d.stats != nil {
		st := d.stats()
		s.Tunnel.RxBytes, s.Tunnel.TxBytes = st.RxBytes, st.TxBytes
	}
	return s
}

func cloneStatus(s Status) Status {
	if s.Network != nil {
		n := *s.Network
		s.Network = &n
	}
	if s.Tunnel != nil {
		t := *s.Tunnel
		t.DNS = append([]string{}, t.DNS...)
		s.Tunnel = &t
	}
	s.Uplinks = slices.Clone(s.Uplinks)
	return s
}

func (d *Daemon) setStatus(f func(*Status)) {
	d.mu.Lock()
	old := cloneStatus(d.status)
	f(&d.status)
	s := cloneStatus(d.status)
	changed := old.State != s.State || old.Reason != s.Reason || old.Override != s.Override
	for ch := range d.subs {
		// Keep only the newest for a slow reader: no storms, no blocking.
		select {
		case ch <- s:
		default:
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- s:
			default:
			}
		}
	}
	d.mu.Unlock()
	if changed {
		d.log.Info("state", "state", s.State, "reason", s.Reason)
	}
}

// Subscribe returns a channel that receives the status on every change
// (the newest only, if the reader is slow) until cancel is called.
func (d *Daemon) Subscribe() (<-chan Status, func()) {
	ch := make(chan Status, 1)
	d.mu.Lock()
	d.subs[ch] = struct{}{}
	ch <- cloneStatus(d.status)
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}
}

// Up forces the tunnel (through profile, or the policy's) until the network changes.
func (d *Daemon) Up(ctx context.Context, profile string) error {
	return d.do(ctx, func(ctx context.Context) error {
		if profile != "" {
			if _, err := d.o.Config.Profile(profile); err != nil {
				return err
			}
		}
		if d.net.IsZero() {
			return errors.New("no network to tunnel from")
		}
		d.override, d.ovProf = OverrideUp, profile
		d.evaluate(ctx)
		return nil
	})
}

// Down uses the network directly until it changes.
func (d *Daemon) Down(ctx context.Context) error {
	return d.do(ctx, func(ctx context.Context) error {
		if d.net.IsZero() {
			return errors.New("no network")
		}
		d.override, d.ovProf = OverrideDown, ""
		d.evaluate(ctx)
		return nil
	})
}

// Reload re-reads the policy and judges the network again. A bad policy
// is reported and the last good one stays in force.
func (d *Daemon) Reload(ctx context.Context) error {
	return d.do(ctx, func(ctx context.Context) error {
		_, err := d.o.Policy.Reload()
		d.allowProbes(ctx)
		d.evaluate(ctx)
		return err
	})
}

// Ping returns once Run's loop has taken a request and answered it: the
// state machine is alive (the systemd watchdog asks this), and, with
// Standby, the standby firewall is in place (Run installs it before the
// loop starts).
func (d *Daemon) Ping(ctx context.Context) error {
	return d.do(ctx, func(context.Context) error { return nil })
}

// Network returns the current network.
func (d *Daemon) Network(ctx context.Context) (watcher.Network, error) {
	var n watcher.Network
	err := d.do(ctx, func(context.Context) error { n = d.net; return nil })
	return n, err
}
