package route

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/roamtun/roamtun/internal/journal"
)

// StandbyTable is the daemon's standby firewall: with lockdown on, nothing
// but DHCP and neighbour discovery leaves any interface the daemon has not
// yet judged — so the moments between a new lease and the daemon's verdict
// leak nothing either. Interfaces it has judged (trusted ones, and the
// uplinks Routing protects with its own rules) are opened in the set
// "open"; the TUNs and loopback always are.
const StandbyTable = "roamtun_standby"

// PortalProbeMark marks the portal probe's sockets (SO_MARK, which takes
// CAP_NET_ADMIN): the standby firewall lets packets so marked out of an
// unjudged interface, to DNS (udp 53) and the probe's HTTP port only. It
// steers no routing (no rule matches it); the value is one no common tool
// sets (kube-proxy's 0x4000/0x8000 bits and tailscale's 0xff0000 byte are
// not used).
const PortalProbeMark = 0x72740000

// Standby is the standby firewall.
type Standby struct {
	entry *journal.Entry
}

// StartStandby installs the standby firewall (journaled), open for exempt
// interfaces (the profiles' TUNs). With portalPort, the portal probe
// (marked PortalProbeMark) may send DNS queries (udp 53) and connect to
// that TCP port: it judges the network before the daemon does.
func StartStandby(j *journal.Journal, exempt []string, portalPort uint16) (*Standby, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\n", StandbyTable, StandbyTable)
	fmt.Fprintf(&b, "table inet %s {\n  set open {\n    type ifname\n", StandbyTable)
	if len(exempt) > 0 {
		q := make([]string, len(exempt))
		for i, e := range exempt {
			q[i] = strconv.Quote(e)
		}
		fmt.Fprintf(&b, "    elements = { %s }\n", strings.Join(q, ", "))
	}
	b.WriteString("  }\n")
	// The host-key probes of verify rules must reach their targets before
	// the network is judged (that is what judges it).
	b.WriteString("  set probes { type ipv4_addr . inet_service; }\n  set probes6 { type ipv6_addr . inet_service; }\n")
	b.WriteString("  chain output {\n    type filter hook output priority filter; policy accept;\n")
	b.WriteString("    oifname \"lo\" accept\n    oifname @open accept\n")
	b.WriteString("    ip daddr . tcp dport @probes accept\n    ip6 daddr . tcp dport @probes6 accept\n")
	b.WriteString("    udp sport 68 udp dport 67 accept\n    udp sport 546 udp dport 547 accept\n")
	b.WriteString("    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept\n")
	if portalPort != 0 {
		fmt.Fprintf(&b, "    meta mark %#x udp dport 53 accept\n    meta mark %#x tcp dport %d accept\n",
			PortalProbeMark, PortalProbeMark, portalPort)
	}
	b.WriteString("    counter drop\n  }\n")
	b.WriteString("  chain forward {\n    type filter hook forward priority filter; policy accept;\n")
	b.WriteString("    oifname @open accept\n    counter drop\n  }\n}\n")
	e, err := apply(j, KindNFT, NFTRec{Table: StandbyTable, Script: b.String()})
	if err != nil {
		return nil, err
	}
	return &Standby{entry: e}, nil
}

// Open lets traffic out of ifname (judged: trusted, or protected by Routing).
func (s *Standby) Open(ifname string) error {
	return nft(fmt.Sprintf("add element inet %s open { %s }\n", StandbyTable, strconv.Quote(ifname)))
}

// Close puts ifname back under the standby rules (a no-op if it was not open).
func (s *Standby) Close(ifname string) error {
	err := nft(fmt.Sprintf("delete element inet %s open { %s }\n", StandbyTable, strconv.Quote(ifname)))
	if err != nil && strings.Contains(err.Error(), "No such file or directory") {
		return nil
	}
	return err
}

// SetProbes replaces the addresses verify probes may reach.
func (s *Standby) SetProbes(targets []netip.AddrPort) error {
	var b strings.Builder
	fmt.Fprintf(&b, "flush set inet %s probes\nflush set inet %s probes6\n", StandbyTable, StandbyTable)
	for _, t := range targets {
		set := "probes"
		if t.Addr().Is6() && !t.Addr().Is4In6() {
			set = "probes6"
		}
		fmt.Fprintf(&b, "add element inet %s %s { %s . %d }\n", StandbyTable, set, t.Addr().Unmap(), t.Port())
	}
	return nft(b.String())
}

// Stop removes the standby firewall and its journal entry.
func (s *Standby) Stop(j *journal.Journal) error {
	nr := NFTRec{Table: StandbyTable}
	if err := nr.del(); err != nil {
		return err
	}
	if j != nil {
		return j.Done(s.entry)
	}
	return nil
}
