// Package route makes and undoes every change roamtun applies to the
// host's networking, each journaled before it is made: its routing table
// (5250) and rules (5300/5310), the lockdown firewall (nftables table
// "inet roamtun") and the standby firewall ("inet roamtun_standby"). Undo
// refuses whatever is not roamtun's own. Routes and firewall share one
// package because they are applied as one ordered, journaled list with one
// rollback.
package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/internal/journal"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// Routing numbers. The table and rule preferences are roamtun's own; the
// rules sit well ahead of the main table's (32766) so that nothing added to
// main — a DHCP renewal, NetworkManager, injected option 121 routes — can
// take traffic away from the tunnel.
//
// They also sit where other tunnels on the same laptop keep working:
// after tailscale's 5210–5270 (its own packets, marked, to main; the tailnet
// in table 52 — a catch-all before 5270 would swallow the tailnet), and
// before wg-quick's and NetworkManager-WireGuard's full-tunnel rules
// (31000–32765): while roamtun's tunnel is up the default route is its own,
// and such a VPN's packets travel inside it.
const (
	RouteTable     = 5250 // our table: host route to the server, default via the TUN, unreachable fallbacks
	RulePrefDHCP   = 5300 // DHCP (v4 and v6) keeps using main, so leases still renew on the untrusted link
	RulePrefTunnel = 5310 // everything else looks up RouteTable first
	NFTTable       = "roamtun"

	// The preferences of versions before 2026-12, inside tailscale's range:
	// a journal written then is still undone.
	legacyPrefDHCP   = 5240
	legacyPrefTunnel = 5250

	// fallbackMetric puts unreachable routes behind the TUN's default route in
	// RouteTable: when the TUN goes away (redialing) they are what is left.
	fallbackMetric = 4000000000
)

// Journal kinds written by Routing; Undoers undoes them.
const (
	KindRoute = "route"
	KindRule  = "rule"
	KindNFT   = "nft"
)

// Path is how the server is reached before anything changes.
type Path struct {
	Dev     string     // uplink interface, e.g. wlan0
	Index   int        // its ifindex
	Gateway netip.Addr // invalid when the server is on-link
}

func (p Path) String() string {
	if p.Gateway.IsValid() {
		return "via " + p.Gateway.String() + " dev " + p.Dev
	}
	return "dev " + p.Dev + " (on-link)"
}

// FindPath looks the server up in the main table only (longest prefix, then
// lowest metric), so that routes of our own left by an earlier run cannot
// mislead it. It never returns a path over ignoreDev (the TUN).
func FindPath(server netip.Addr, ignoreDev string) (Path, error) {
	fam := netlink.FAMILY_V4
	if server.Is6() {
		fam = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return Path{}, fmt.Errorf("listing routes: %w", err)
	}
	best, bestBits := -1, -1
	for i, r := range routes {
		if r.Type != unix.RTN_UNICAST || r.LinkIndex == 0 && len(r.MultiPath) == 0 {
			continue
		}
		bits := 0
		if r.Dst != nil {
			pfx, ok := prefixOf(r.Dst)
			if !ok || !pfx.Contains(server) {
				continue
			}
			bits = pfx.Bits()
		}
		if bits > bestBits || bits == bestBits && r.Priority < routes[best].Priority {
			best, bestBits = i, bits
		}
	}
	if best < 0 {
		return Path{}, fmt.Errorf("no route to the server %s in the main table", server)
	}
	r := routes[best]
	idx, gw := r.LinkIndex, r.Gw
	if idx == 0 && len(r.MultiPath) > 0 {
		idx, gw = r.MultiPath[0].LinkIndex, r.MultiPath[0].Gw
	}
	l, err := netlink.LinkByIndex(idx)
	if err != nil {
		return Path{}, fmt.Errorf("route to %s: interface %d: %w", server, idx, err)
	}
	p := Path{Dev: l.Attrs().Name, Index: idx}
	if p.Dev == ignoreDev {
		return Path{}, fmt.Errorf("the server %s is routed over %s itself", server, ignoreDev)
	}
	if a, ok := netip.AddrFromSlice(gw); ok && !a.Unmap().IsUnspecified() {
		p.Gateway = a.Unmap()
	}
	return p, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones).Masked(), true
}

// RoutingOptions say what Routing does.
type RoutingOptions struct {
	Server     netip.Addr // the SSH server
	ServerPort int
	Path       Path // from FindPath, before anything changed
	IPv6       config.IPv6Mode
	Lockdown   bool
	Journal    *journal.Journal
	Log        *slog.Logger
	Firewall   Firewall // nftables; nil: the kernel's (NewFirewall)
}

// Routing sends everything but the server through the tunnel and, with
// lockdown, nothing out of the uplink but ssh to the server, DHCP and
// ARP/ND. Every change is journaled before it is made.
//
// What it sets up (Setup), RouteTable holding:
//   - SERVER/32 via the original gateway dev UPLINK (or on-link);
//   - unreachable default (v4: with lockdown; v6: always) at a high metric;
//   - on TunnelUp: default dev TUN (and ::/0 dev TUN with ipv6 = "tunnel").
//
// and rules (v4 and v6): pref 5300 DHCP → main; pref 5310 all → RouteTable.
// With lockdown, an nftables table "inet roamtun" also drops everything
// leaving (or forwarded out of) the uplink but ssh to the server, DHCP and
// ND: routes and rules do not bind sockets bound to the device itself
// (SO_BINDTODEVICE, ping -I), the firewall does.
type Routing struct {
	o RoutingOptions

	mu      sync.Mutex
	applied []*journal.Entry // setup changes, in order
	host    *journal.Entry   // the server's host route (also in applied)
	tunnel  []*journal.Entry // changes tied to the current TUN
}

// Forbidden is what the far end may not hand the client over IPCP: the
// server's own address and the subnets of the uplink the server is reached
// over now (its gateway, its resolver). See ppp.Config.Forbidden.
func (r *Routing) Forbidden() []ppp.Forbidden {
	r.mu.Lock()
	server, dev := r.o.Server, r.o.Path.Dev
	r.mu.Unlock()
	out := []ppp.Forbidden{{Prefix: netip.PrefixFrom(server, server.BitLen()), Why: "the ssh server's address"}}
	for _, p := range UplinkPrefixes(dev) {
		out = append(out, ppp.Forbidden{Prefix: p, Why: "inside the uplink's subnet " + p.String()})
	}
	return out
}

// UplinkPrefixes lists the subnets of dev's addresses (IPv4 and IPv6).
func UplinkPrefixes(dev string) []netip.Prefix {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return nil
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p.Masked())
		}
	}
	return out
}

// NewRouting returns a Routing that has changed nothing yet.
func NewRouting(o RoutingOptions) *Routing {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Firewall == nil {
		o.Firewall = NewFirewall()
	}
	return &Routing{o: o}
}

// Setup installs the server route, our table's fallbacks, the rules and
// (lockdown) the firewall. On error it undoes what it did.
func (r *Routing) Setup() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.o
	if !o.Server.IsValid() || o.Path.Dev == "" {
		return errors.New("routing: server address and path are required")
	}
	if o.Lockdown && (o.ServerPort < 1 || o.ServerPort > 65535) {
		return fmt.Errorf("routing: server port %d out of range", o.ServerPort)
	}
	steps := []change{{KindRoute, hostRoute(o.Server, o.Path)}}
	if o.Lockdown {
		steps = append(steps,
			change{KindNFT, NFTRec{Table: NFTTable, spec: lockdownTable(o), fw: o.Firewall}},
			change{KindRoute, RouteRec{Table: RouteTable, Dst: "0.0.0.0/0", Type: "unreachable", Metric: fallbackMetric}})
	}
	// IPv6 never leaves outside the tunnel: blocked, or tunnelled with this
	// as the fallback while the TUN is down.
	steps = append(steps, change{KindRoute, RouteRec{Table: RouteTable, Dst: "::/0", Type: "unreachable", Metric: fallbackMetric}})
	for _, fam := range []int{4, 6} {
		proto, port := 17, 67
		if fam == 6 {
			port = 547
		}
		steps = append(steps,
			change{KindRule, RuleRec{Family: fam, Priority: RulePrefDHCP, Table: unix.RT_TABLE_MAIN, IPProto: proto, DPort: port}},
			change{KindRule, RuleRec{Family: fam, Priority: RulePrefTunnel, Table: RouteTable}})
	}
	for i, s := range steps {
		e, err := apply(o.Journal, s.kind, s.rec)
		if err != nil {
			r.undoLocked(&r.applied)
			return err
		}
		if i == 0 {
			r.host = e
		}
		r.applied = append(r.applied, e)
	}
	o.Log.Info("routes set", "server", o.Server, "path", o.Path.String(), "table", RouteTable, "lockdown", o.Lockdown, "ipv6", o.IPv6)
	return nil
}

func hostRoute(server netip.Addr, p Path) RouteRec {
	rec := RouteRec{Table: RouteTable, Dst: netip.PrefixFrom(server, server.BitLen()).String(), Dev: p.Dev}
	if p.Gateway.IsValid() {
		rec.Gateway = p.Gateway.String()
	}
	return rec
}

// Refresh follows the uplink: before each dial it looks the server up in
// main again and, when the path changed (a new gateway after a roam) or the
// host route went with a flushed interface, puts the host route (and the
// lockdown firewall, which names the interface) back in line. With no path
// at all it keeps the old one: the dial fails and is retried.
func (r *Routing) Refresh() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.host == nil {
		return nil
	}
	p, err := FindPath(r.o.Server, "")
	if err != nil {
		return err
	}
	if p == r.o.Path && r.hostRoutePresent() {
		return nil
	}
	old := r.o.Path
	r.o.Path = p
	if err := r.moveHostLocked(p.Dev != old.Dev); err != nil {
		return err
	}
	r.o.Log.Info("server route follows the uplink", "server", r.o.Server, "was", old.String(), "now", p.String())
	return nil
}

// UseServer points the server's host route, and with lockdown the
// firewall's one hole, at addr — another address of the same server, tried
// when the last one did not answer — before a dial.
func (r *Routing) UseServer(addr netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if addr == r.o.Server {
		return nil
	}
	if r.host == nil {
		r.o.Server = addr
		return nil
	}
	p, err := FindPath(addr, "")
	if err != nil {
		return err
	}
	old := r.o.Server
	r.o.Server, r.o.Path = addr, p
	if err := r.moveHostLocked(true); err != nil {
		return err
	}
	r.o.Log.Info("trying another address of the server", "was", old, "now", addr, "path", p.String())
	return nil
}

// moveHostLocked replaces the server's host route (same journal entry) with
// one for r.o.Server over r.o.Path, and rewrites the lockdown firewall when
// what it names changed.
func (r *Routing) moveHostLocked(firewall bool) error {
	if firewall && r.o.Lockdown {
		if err := r.o.Firewall.Replace(lockdownTable(r.o)); err != nil {
			return err
		}
	}
	if err := undo(r.o.Firewall, r.host); err != nil {
		return err
	}
	rec := hostRoute(r.o.Server, r.o.Path)
	if r.o.Journal != nil {
		data, _ := json.Marshal(rec)
		// Rewrite the same entry: its place in the undo order stays.
		e, err := r.o.Journal.Rewrite(r.host, data)
		if err != nil {
			return err
		}
		r.host = e
		for i, a := range r.applied {
			if a.Seq == e.Seq {
				r.applied[i] = e
			}
		}
	} else {
		r.host.Data, _ = json.Marshal(rec)
	}
	if err := rec.add(); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func (r *Routing) hostRoutePresent() bool {
	var rec RouteRec
	if json.Unmarshal(r.host.Data, &rec) != nil {
		return false
	}
	nr, err := rec.route(true)
	if err != nil {
		return false
	}
	rs, err := netlink.RouteListFiltered(nr.Family, &netlink.Route{Table: RouteTable, Dst: nr.Dst},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	return err == nil && len(rs) > 0
}

// TunnelUp routes the default (and with ipv6 = "tunnel", ::/0) through the
// TUN. ::/0 goes there only when the session has a global IPv6 address from
// the far end; otherwise it stays unreachable.
func (r *Routing) TunnelUp(ifname string, s ppp.Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.undoLocked(&r.tunnel) // a previous TUN's routes (gone with it)
	recs := []RouteRec{{Table: RouteTable, Dst: "0.0.0.0/0", Dev: ifname}}
	if r.o.IPv6 == config.IPv6Tunnel && s.IPv6 && s.Addr6.IsValid() {
		recs = append(recs, RouteRec{Table: RouteTable, Dst: "::/0", Dev: ifname})
	}
	for _, rec := range recs {
		e, err := apply(r.o.Journal, KindRoute, rec)
		if err != nil {
			r.undoLocked(&r.tunnel)
			return err
		}
		r.tunnel = append(r.tunnel, e)
	}
	return nil
}

// TunnelDown forgets the TUN's routes (the kernel removed them with it).
func (r *Routing) TunnelDown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.undoLocked(&r.tunnel)
}

// Teardown undoes everything, newest first. Changes that are already gone
// count as undone; those that cannot be undone stay in the journal.
func (r *Routing) Teardown() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.undoLocked(&r.tunnel), r.undoLocked(&r.applied))
}

func (r *Routing) undoLocked(list *[]*journal.Entry) error {
	var errs []error
	for i := len(*list) - 1; i >= 0; i-- {
		e := (*list)[i]
		if err := undo(r.o.Firewall, e); err != nil {
			r.o.Log.Warn("undo failed; left in the journal for roamtun cleanup", "change", e.Kind, "err", err)
			errs = append(errs, err)
			continue
		}
		if r.o.Journal != nil {
			errs = append(errs, r.o.Journal.Done(e))
		}
	}
	*list = nil
	return errors.Join(errs...)
}

// change is one system change to journal and make.
type change struct {
	kind string
	rec  any
}

// apply journals a change, then makes it.
func apply(j *journal.Journal, kind string, rec any) (*journal.Entry, error) {
	var e *journal.Entry
	var err error
	if j != nil {
		if e, err = j.Record(kind, rec); err != nil {
			return nil, err
		}
	} else {
		e = &journal.Entry{Kind: kind}
	}
	switch rec := rec.(type) {
	case RouteRec:
		err = rec.add()
	case RuleRec:
		err = rec.add()
	case NFTRec:
		err = rec.add()
	default:
		err = fmt.Errorf("unknown change %T", rec)
	}
	if err != nil {
		if j != nil {
			j.Done(e) // nothing was made
		}
		return nil, err
	}
	if j == nil {
		// Keep the record for Undo even without a journal.
		e.Data, _ = json.Marshal(rec)
	}
	return e, nil
}

// Undoers undo the kinds of change Routing journals, for journal.Replay.
func Undoers() map[string]journal.Undoer {
	u := func(ctx context.Context, e *journal.Entry) error { return Undo(ctx, e) }
	return map[string]journal.Undoer{KindRoute: u, KindRule: u, KindNFT: u}
}

// Undo undoes one journaled change; one that is already gone is done. Only
// what roamtun itself makes is undone — routes in its table, rules at its
// preferences, its own nftables tables — so an entry that names anything
// else (main's default route, the "lookup main" rule, another program's
// table) is refused, whoever wrote it.
func Undo(_ context.Context, e *journal.Entry) error {
	return undo(NewFirewall(), e)
}

// undo is Undo with nftables tables deleted through fw.
func undo(fw Firewall, e *journal.Entry) error {
	var rec interface {
		ours() error
		del() error
	}
	switch e.Kind {
	case KindRoute:
		rec = new(RouteRec)
	case KindRule:
		rec = new(RuleRec)
	case KindNFT:
		rec = &NFTRec{fw: fw}
	default:
		return fmt.Errorf("not a routing change: %q", e.Kind)
	}
	if err := e.Decode(rec); err != nil {
		return err
	}
	if err := rec.ours(); err != nil {
		return fmt.Errorf("%s: refused, not roamtun's: %w; left in place for inspection", e.File, err)
	}
	return rec.del()
}

// RouteRec is a journaled route.
type RouteRec struct {
	Table   int    `json:"table"`
	Dst     string `json:"dst"`
	Gateway string `json:"gateway,omitempty"`
	Dev     string `json:"dev,omitempty"`
	Type    string `json:"type,omitempty"` // "" (unicast) or "unreachable"
	Metric  int    `json:"metric,omitempty"`
}

func (r RouteRec) route(resolveDev bool) (*netlink.Route, error) {
	pfx, err := netip.ParsePrefix(r.Dst)
	if err != nil {
		return nil, fmt.Errorf("route dst: %w", err)
	}
	nr := &netlink.Route{Table: r.Table, Priority: r.Metric, Family: netlink.FAMILY_V4,
		Dst: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
	if pfx.Addr().Is6() {
		nr.Family = netlink.FAMILY_V6
	}
	switch r.Type {
	case "":
		nr.Type = unix.RTN_UNICAST
	case "unreachable":
		nr.Type = unix.RTN_UNREACHABLE
	default:
		return nil, fmt.Errorf("route type %q", r.Type)
	}
	if r.Gateway != "" {
		gw, err := netip.ParseAddr(r.Gateway)
		if err != nil {
			return nil, fmt.Errorf("route gateway: %w", err)
		}
		nr.Gw = gw.AsSlice()
	} else if r.Type == "" {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Dev != "" && resolveDev {
		l, err := netlink.LinkByName(r.Dev)
		if err != nil {
			return nil, err
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return nr, nil
}

func (r RouteRec) String() string {
	s := r.Dst
	if r.Type != "" {
		s = r.Type + " " + s
	}
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s + " table " + strconv.Itoa(r.Table)
}

func (r RouteRec) add() error {
	nr, err := r.route(true)
	if err == nil {
		err = netlink.RouteAdd(nr)
	}
	if err != nil {
		return fmt.Errorf("adding route %s: %w", r, err)
	}
	return nil
}

// ours checks that the route is one roamtun makes: in its own table.
func (r RouteRec) ours() error {
	if r.Table != RouteTable {
		return fmt.Errorf("route %s is not in table %d", r, RouteTable)
	}
	return nil
}

func (r RouteRec) del() error {
	nr, err := r.route(true)
	var lnf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &lnf):
		return nil // the device went, and its routes with it
	case err != nil:
		return err
	}
	if err := netlink.RouteDel(nr); err != nil && !gone(err) {
		return fmt.Errorf("deleting route %s: %w", r, err)
	}
	return nil
}

// RuleRec is a journaled policy-routing rule.
type RuleRec struct {
	Family   int `json:"family"` // 4 or 6
	Priority int `json:"priority"`
	Table    int `json:"table"`
	IPProto  int `json:"ipproto,omitempty"`
	DPort    int `json:"dport,omitempty"`
}

func (r RuleRec) rule() *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	if r.Family == 6 {
		nr.Family = netlink.FAMILY_V6
	}
	nr.Priority, nr.Table = r.Priority, r.Table
	if r.IPProto != 0 {
		nr.IPProto = r.IPProto
	}
	if r.DPort != 0 {
		nr.Dport = netlink.NewRulePortRange(uint16(r.DPort), uint16(r.DPort))
	}
	return nr
}

func (r RuleRec) String() string {
	s := fmt.Sprintf("v%d pref %d", r.Family, r.Priority)
	if r.IPProto != 0 {
		s += fmt.Sprintf(" ipproto %d dport %d", r.IPProto, r.DPort)
	}
	return s + " lookup " + strconv.Itoa(r.Table)
}

func (r RuleRec) add() error {
	if err := netlink.RuleAdd(r.rule()); err != nil {
		return fmt.Errorf("adding rule %s: %w", r, err)
	}
	return nil
}

// ours checks that the rule is one roamtun makes (or made, in an earlier
// version): DHCP to main at RulePrefDHCP, everything to RouteTable at
// RulePrefTunnel.
func (r RuleRec) ours() error {
	dhcp := (r.Priority == RulePrefDHCP || r.Priority == legacyPrefDHCP) && r.Table == unix.RT_TABLE_MAIN &&
		r.IPProto == unix.IPPROTO_UDP && (r.Family == 4 && r.DPort == 67 || r.Family == 6 && r.DPort == 547)
	tunnel := (r.Priority == RulePrefTunnel || r.Priority == legacyPrefTunnel) && r.Table == RouteTable &&
		r.IPProto == 0 && r.DPort == 0 && (r.Family == 4 || r.Family == 6)
	if !dhcp && !tunnel {
		return fmt.Errorf("rule %s is not one of roamtun's", r)
	}
	return nil
}

func (r RuleRec) del() error {
	if err := netlink.RuleDel(r.rule()); err != nil && !gone(err) {
		return fmt.Errorf("deleting rule %s: %w", r, err)
	}
	return nil
}

// NFTRec is a journaled nftables table (inet family) of our own. Only the
// name is journaled: it is all undoing needs. Journals written before
// issue #13 also hold the nft script that made the table ("script"); it is
// ignored.
type NFTRec struct {
	Table string `json:"table"`

	spec *Table   // what add installs
	fw   Firewall // where; nil: the kernel's
}

// ours checks that the table is one of roamtun's two.
func (r NFTRec) ours() error {
	if r.Table != NFTTable && r.Table != StandbyTable {
		return fmt.Errorf("nftables table %q is not %s or %s", r.Table, NFTTable, StandbyTable)
	}
	return nil
}

func (r NFTRec) firewall() Firewall {
	if r.fw == nil {
		return NewFirewall()
	}
	return r.fw
}

func (r NFTRec) add() error {
	if r.spec == nil || r.spec.Name != r.Table {
		return fmt.Errorf("nftables: no rules for table inet %s", r.Table)
	}
	return r.firewall().Replace(r.spec)
}

// del deletes the table; one already gone is deleted.
func (r NFTRec) del() error {
	if err := r.firewall().Delete(r.Table); err != nil && !gone(err) {
		return err
	}
	return nil
}

// lockdownTable is the firewall half of lockdown: on the uplink, only ssh
// to the server, DHCP (v4/v6) and neighbour discovery go out (with MLDv2
// reports, which switches that snoop multicast need for ND to work); nothing
// is forwarded out of it. ARP is not IP and is not affected.
func lockdownTable(o RoutingOptions) *Table {
	up := OIFName(o.Path.Dev)
	server := DAddrTCPDPort(netip.AddrPortFrom(o.Server, uint16(o.ServerPort)))
	return &Table{Name: NFTTable, Chains: []Chain{
		{Name: "output", Hook: HookOutput, Rules: []Rule{
			{Match: []Match{up, server}, Verdict: Accept},
			{Match: []Match{up, UDPPorts{Src: 68, Dst: 67}}, Verdict: Accept},
			{Match: []Match{up, UDPPorts{Src: 546, Dst: 547}}, Verdict: Accept},
			{Match: []Match{up, ndTypes}, Verdict: Accept},
			{Match: []Match{up}, Counter: true, Verdict: Drop},
		}},
		{Name: "forward", Hook: HookForward, Rules: []Rule{
			{Match: []Match{up}, Counter: true, Verdict: Drop},
		}},
	}}
}

// gone reports whether a netlink delete failed because the thing is not there.
func gone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

// OwnRoutes lists what of roamtun's is in the kernel now (routes in
// RouteTable, rules at our preferences), for diagnostics and tests.
func OwnRoutes() ([]string, error) {
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: RouteTable}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			out = append(out, "route "+r.String())
		}
		rules, err := netlink.RuleList(fam)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			if slices.Contains([]int{RulePrefDHCP, RulePrefTunnel, legacyPrefDHCP, legacyPrefTunnel}, r.Priority) {
				out = append(out, "rule "+r.String())
			}
		}
	}
	return out, nil
}
