package route

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Firewall is everything roamtun does to nftables (issue #13): whole inet
// tables of its own, each replaced in one transaction, and the elements of
// their named sets. Deleting what is not there fails with an error that
// wraps ENOENT, as the kernel's does; callers decide that "already gone" is
// done. NewFirewall is the kernel's, through netlink; routetest.Firewall
// records what it is asked to do.
type Firewall interface {
	// Replace installs t in place of any inet table of that name, atomically:
	// nothing sees the old table gone and the new one not yet there.
	Replace(t *Table) error
	// Delete removes the inet table and everything in it.
	Delete(table string) error
	// AddElements adds elements to a named set; ones already in it stay.
	AddElements(table, set string, elems ...Elem) error
	// DeleteElements removes elements from a named set.
	DeleteElements(table, set string, elems ...Elem) error
	// ResetSets empties each named set and fills it with its elements, all
	// in one transaction.
	ResetSets(table string, sets ...SetElems) error
}

// Table is one inet table as roamtun writes it: named sets, then base
// chains.
type Table struct {
	Name   string
	Sets   []Set
	Chains []Chain
}

// SetType is the key type of a named set.
type SetType int

// The set types roamtun uses.
const (
	SetIfname          SetType = iota + 1 // type ifname
	SetIPv4AddrService                    // type ipv4_addr . inet_service
	SetIPv6AddrService                    // type ipv6_addr . inet_service
)

func (t SetType) String() string {
	switch t {
	case SetIfname:
		return "ifname"
	case SetIPv4AddrService:
		return "ipv4_addr . inet_service"
	case SetIPv6AddrService:
		return "ipv6_addr . inet_service"
	}
	return "SetType(" + strconv.Itoa(int(t)) + ")"
}

// Set is a named set and what it holds from the start.
type Set struct {
	Name  string
	Type  SetType
	Elems []Elem
}

// SetElems is the whole content of one named set (ResetSets).
type SetElems struct {
	Set   string
	Elems []Elem
}

// Elem is one set element: an interface name (SetIfname) or, when AddrPort
// is valid, an address and a TCP port (SetIPv4AddrService,
// SetIPv6AddrService).
type Elem struct {
	Ifname   string
	AddrPort netip.AddrPort
}

// IfnameElem is the element naming interface name.
func IfnameElem(name string) Elem { return Elem{Ifname: name} }

// AddrPortElem is the element addr . port (a v4-mapped address as IPv4).
func AddrPortElem(ap netip.AddrPort) Elem {
	return Elem{AddrPort: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
}

// Type is the type of set e belongs in.
func (e Elem) Type() SetType {
	switch {
	case !e.AddrPort.IsValid():
		return SetIfname
	case e.AddrPort.Addr().Is4():
		return SetIPv4AddrService
	}
	return SetIPv6AddrService
}

// String is e as nft writes it.
func (e Elem) String() string {
	if e.Type() == SetIfname {
		return strconv.Quote(e.Ifname)
	}
	return fmt.Sprintf("%s . %d", e.AddrPort.Addr(), e.AddrPort.Port())
}

// ifNameSize is the kernel's IFNAMSIZ: interface names are compared as
// that many bytes, NUL-padded.
const ifNameSize = 16

// ifnameBytes is name as the kernel compares it.
func ifnameBytes(name string) ([]byte, error) {
	if name == "" || len(name) >= ifNameSize || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("invalid interface name %q", name)
	}
	b := make([]byte, ifNameSize)
	copy(b, name)
	return b, nil
}

// key is e as the kernel stores it: an interface name NUL-padded to
// IFNAMSIZ; an address and a port each padded to 32-bit registers.
func (e Elem) key() ([]byte, error) {
	if e.Type() == SetIfname {
		return ifnameBytes(e.Ifname)
	}
	if e.Ifname != "" {
		return nil, fmt.Errorf("set element with both an interface name (%q) and an address", e.Ifname)
	}
	b := e.AddrPort.Addr().AsSlice()
	return append(b, byte(e.AddrPort.Port()>>8), byte(e.AddrPort.Port()), 0, 0), nil
}

// Hook is where a base chain sits; all are type filter, priority filter,
// policy accept.
type Hook int

// The hooks roamtun's chains use.
const (
	HookOutput Hook = iota + 1
	HookForward
)

func (h Hook) String() string {
	switch h {
	case HookOutput:
		return "output"
	case HookForward:
		return "forward"
	}
	return "Hook(" + strconv.Itoa(int(h)) + ")"
}

// Chain is a base chain: type filter hook Hook priority filter; policy accept.
type Chain struct {
	Name  string
	Hook  Hook
	Rules []Rule
}

// Verdict ends a rule.
type Verdict int

// The verdicts roamtun's rules use.
const (
	Accept Verdict = iota + 1
	Drop
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// Rule is its matches (all must hold), an optional counter and a verdict.
type Rule struct {
	Match   []Match
	Counter bool
	Verdict Verdict
}

// String is r as nft writes it (without the counter's figures).
func (r Rule) String() string {
	var parts []string
	for _, m := range r.Match {
		parts = append(parts, m.String())
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	return strings.Join(append(parts, r.Verdict.String()), " ")
}

// Match is one condition of a rule. The kinds are fixed: those below.
type Match interface {
	String() string // as nft writes it
	isMatch()
}

// OIFName matches packets leaving through the interface of that name.
type OIFName string

// OIFNameIn matches packets leaving through an interface named in the set.
type OIFNameIn string

// DAddrTCPDPort matches TCP to that address (IPv4 or IPv6) and port.
type DAddrTCPDPort netip.AddrPort

// UDPPorts matches UDP from port Src to port Dst.
type UDPPorts struct{ Src, Dst uint16 }

// ICMPv6Types matches ICMPv6 messages of these types.
type ICMPv6Types []ICMPv6Type

// MarkDPort matches packets carrying a firewall mark to a destination port
// of a protocol: "meta mark M udp dport P".
type MarkDPort struct {
	Mark  uint32
	Proto uint8 // unix.IPPROTO_UDP or unix.IPPROTO_TCP
	Port  uint16
}

func (m MarkDPort) String() string {
	proto := "tcp"
	if m.Proto == 17 {
		proto = "udp"
	}
	return fmt.Sprintf("meta mark %#08x %s dport %d", m.Mark, proto, m.Port)
}

// DAddrTCPDPortIn matches TCP whose destination address . port is in the
// set (of type SetIPv6AddrService if IPv6, else SetIPv4AddrService).
type DAddrTCPDPortIn struct {
	Set  string
	IPv6 bool
}

func (OIFName) isMatch()         {}
func (OIFNameIn) isMatch()       {}
func (DAddrTCPDPort) isMatch()   {}
func (UDPPorts) isMatch()        {}
func (ICMPv6Types) isMatch()     {}
func (DAddrTCPDPortIn) isMatch() {}
func (MarkDPort) isMatch()       {}

func (m OIFName) String() string   { return "oifname " + strconv.Quote(string(m)) }
func (m OIFNameIn) String() string { return "oifname @" + string(m) }
func (m UDPPorts) String() string  { return fmt.Sprintf("udp sport %d udp dport %d", m.Src, m.Dst) }

func (m DAddrTCPDPort) String() string {
	ap := netip.AddrPort(m)
	return fmt.Sprintf("%s daddr %s tcp dport %d", ipFamily(ap.Addr()), ap.Addr(), ap.Port())
}

func (m ICMPv6Types) String() string {
	names := make([]string, len(m))
	for i, t := range m {
		names[i] = t.String()
	}
	return "icmpv6 type { " + strings.Join(names, ", ") + " }"
}

func (m DAddrTCPDPortIn) String() string {
	fam := "ip"
	if m.IPv6 {
		fam = "ip6"
	}
	return fam + " daddr . tcp dport @" + m.Set
}

// ipFamily is nft's name for a's protocol ("ip" or "ip6").
func ipFamily(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "ip6"
	}
	return "ip"
}

// ICMPv6Type is an ICMPv6 message type.
type ICMPv6Type uint8

// The ICMPv6 types neighbour discovery needs (RFC 4861) and the MLDv2
// reports (RFC 3810) that switches snooping multicast need for it to work.
const (
	NDRouterSolicit    ICMPv6Type = 133
	NDNeighborSolicit  ICMPv6Type = 135
	NDNeighborAdvert   ICMPv6Type = 136
	MLD2ListenerReport ICMPv6Type = 143
)

func (t ICMPv6Type) String() string {
	switch t {
	case NDRouterSolicit:
		return "nd-router-solicit"
	case NDNeighborSolicit:
		return "nd-neighbor-solicit"
	case NDNeighborAdvert:
		return "nd-neighbor-advert"
	case MLD2ListenerReport:
		return "mld2-listener-report"
	}
	return strconv.Itoa(int(t))
}

// ndTypes lets neighbour discovery (and MLDv2) out.
var ndTypes = ICMPv6Types{NDRouterSolicit, NDNeighborSolicit, NDNeighborAdvert, MLD2ListenerReport}

// String is t as an nft script, for logs and test transcripts.
func (t *Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", t.Name)
	for _, s := range t.Sets {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Name, s.Type)
		if len(s.Elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", joinElems(s.Elems))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range t.Chains {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy accept;\n", c.Name, c.Hook)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func joinElems(elems []Elem) string {
	s := make([]string, len(elems))
	for i, e := range elems {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
}

// Check finds what the kernel would refuse in t before anything is sent:
// elements that do not fit their set, lookups of sets t does not have.
func (t *Table) Check() error {
	types := map[string]SetType{}
	for _, s := range t.Sets {
		types[s.Name] = s.Type
		for _, e := range s.Elems {
			if err := checkElem(s.Type, e); err != nil {
				return fmt.Errorf("table %s set %s: %w", t.Name, s.Name, err)
			}
		}
	}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			for _, m := range r.Match {
				var set string
				want := SetIfname
				switch m := m.(type) {
				case OIFNameIn:
					set = string(m)
				case DAddrTCPDPortIn:
					set, want = m.Set, SetIPv4AddrService
					if m.IPv6 {
						want = SetIPv6AddrService
					}
				default:
					continue
				}
				if types[set] != want {
					return fmt.Errorf("table %s chain %s: %q needs a set %s of type %s", t.Name, c.Name, m, set, want)
				}
			}
		}
	}
	return nil
}

// checkElem tells whether e fits a set of type t.
func checkElem(t SetType, e Elem) error {
	if _, err := e.key(); err != nil {
		return err
	}
	if e.Type() != t {
		return fmt.Errorf("element %s is not of type %s", e, t)
	}
	return nil
}
