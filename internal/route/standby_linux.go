package route

import (
	"net/netip"

	"github.com/roamtun/roamtun/internal/journal"
	"golang.org/x/sys/unix"
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

// The standby table's sets.
const (
	standbyOpen    = "open"    // interfaces let out
	standbyProbes  = "probes"  // IPv4 address . TCP port of verify probes
	standbyProbes6 = "probes6" // the same for IPv6
)

// Standby is the standby firewall.
type Standby struct {
	fw    Firewall
	entry *journal.Entry
}

// StartStandby installs the standby firewall (journaled) through fw (nil:
// the kernel's), open for exempt interfaces (the profiles' TUNs). With
// portalPort, the portal probe (marked PortalProbeMark) may send DNS
// queries (udp 53) and connect to that TCP port: it judges the network
// before the daemon does.
func StartStandby(fw Firewall, j *journal.Journal, exempt []string, portalPort uint16) (*Standby, error) {
	if fw == nil {
		fw = NewFirewall()
	}
	e, err := apply(j, KindNFT, NFTRec{Table: StandbyTable, spec: standbyTable(exempt, portalPort), fw: fw})
	if err != nil {
		return nil, err
	}
	return &Standby{fw: fw, entry: e}, nil
}

// standbyTable is the standby firewall, open for exempt (and the portal
// probe's marked DNS and HTTP with portalPort).
func standbyTable(exempt []string, portalPort uint16) *Table {
	open := Set{Name: standbyOpen, Type: SetIfname}
	for _, e := range exempt {
		open.Elems = append(open.Elems, IfnameElem(e))
	}
	out := []Rule{
		{Match: []Match{OIFName("lo")}, Verdict: Accept},
		{Match: []Match{OIFNameIn(standbyOpen)}, Verdict: Accept},
		{Match: []Match{DAddrTCPDPortIn{Set: standbyProbes}}, Verdict: Accept},
		{Match: []Match{DAddrTCPDPortIn{Set: standbyProbes6, IPv6: true}}, Verdict: Accept},
		{Match: []Match{UDPPorts{Src: 68, Dst: 67}}, Verdict: Accept},
		{Match: []Match{UDPPorts{Src: 546, Dst: 547}}, Verdict: Accept},
		{Match: []Match{ndTypes}, Verdict: Accept},
	}
	if portalPort != 0 {
		out = append(out,
			Rule{Match: []Match{MarkDPort{Mark: PortalProbeMark, Proto: unix.IPPROTO_UDP, Port: 53}}, Verdict: Accept},
			Rule{Match: []Match{MarkDPort{Mark: PortalProbeMark, Proto: unix.IPPROTO_TCP, Port: portalPort}}, Verdict: Accept})
	}
	out = append(out, Rule{Counter: true, Verdict: Drop})
	return &Table{
		Name: StandbyTable,
		// The host-key probes of verify rules must reach their targets
		// before the network is judged (that is what judges it).
		Sets: []Set{open,
			{Name: standbyProbes, Type: SetIPv4AddrService},
			{Name: standbyProbes6, Type: SetIPv6AddrService}},
		Chains: []Chain{
			{Name: "output", Hook: HookOutput, Rules: out},
			{Name: "forward", Hook: HookForward, Rules: []Rule{
				{Match: []Match{OIFNameIn(standbyOpen)}, Verdict: Accept},
				{Counter: true, Verdict: Drop},
			}},
		},
	}
}

// Open lets traffic out of ifname (judged: trusted, or protected by Routing).
func (s *Standby) Open(ifname string) error {
	return s.fw.AddElements(StandbyTable, standbyOpen, IfnameElem(ifname))
}

// Close puts ifname back under the standby rules (a no-op if it was not open).
func (s *Standby) Close(ifname string) error {
	if err := s.fw.DeleteElements(StandbyTable, standbyOpen, IfnameElem(ifname)); err != nil && !gone(err) {
		return err
	}
	return nil
}

// SetProbes replaces the addresses verify probes may reach.
func (s *Standby) SetProbes(targets []netip.AddrPort) error {
	v4 := SetElems{Set: standbyProbes}
	v6 := SetElems{Set: standbyProbes6}
	for _, t := range targets {
		e := AddrPortElem(t)
		if e.Type() == SetIPv6AddrService {
			v6.Elems = append(v6.Elems, e)
		} else {
			v4.Elems = append(v4.Elems, e)
		}
	}
	return s.fw.ResetSets(StandbyTable, v4, v6)
}

// Stop removes the standby firewall and its journal entry.
func (s *Standby) Stop(j *journal.Journal) error {
	if err := (NFTRec{Table: StandbyTable, fw: s.fw}).del(); err != nil {
		return err
	}
	if j != nil {
		return j.Done(s.entry)
	}
	return nil
}
