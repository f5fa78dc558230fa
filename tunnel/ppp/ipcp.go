package ppp

import (
	"fmt"
	"net/netip"
	"slices"
)

// IPCP options (RFC 1332 §3, RFC 1877).
const (
	ipcpAddrs    = 1 // IP-Addresses (deprecated)
	ipcpCompress = 2 // IP-Compression-Protocol (Van Jacobson)
	ipcpAddr     = 3
	ipcpDNS1     = 129
	ipcpNBNS1    = 130
	ipcpDNS2     = 131
	ipcpNBNS2    = 132
)

// ipcp negotiates IPv4 addresses and DNS servers.
//
// Client role (Config.LocalIP zero): we ask for 0.0.0.0 and the server Naks
// with the address it assigns; the same for DNS when RequestDNS. Server role:
// we announce LocalIP, Nak the peer's request with PeerIP, and hand out DNS.
type ipcp struct {
	l *Link
	f *fsm

	local    netip.Addr // what we ask for / were given
	dns      [2]netip.Addr
	askDNS   [2]bool
	peer     netip.Addr
	wantAddr bool
}

func newIPCP(l *Link) *ipcp {
	c := &ipcp{l: l}
	c.f = newFSM(l, ProtoIPCP, "IPCP", c)
	return c
}

var zero4 = netip.IPv4Unspecified()

func (c *ipcp) resetCI() {
	c.local = c.l.cfg.LocalIP
	if !c.local.IsValid() {
		c.local = zero4
	}
	c.wantAddr = true
	c.askDNS = [2]bool{c.l.cfg.RequestDNS, c.l.cfg.RequestDNS}
	c.dns = [2]netip.Addr{zero4, zero4}
	c.peer = netip.Addr{}
}

func appendAddr(b []byte, typ byte, a netip.Addr) []byte {
	v := a.As4()
	return append(b, typ, 6, v[0], v[1], v[2], v[3])
}

func (c *ipcp) addCI(b []byte) []byte {
	if c.wantAddr {
		b = appendAddr(b, ipcpAddr, c.local)
	}
	if c.askDNS[0] {
		b = appendAddr(b, ipcpDNS1, c.dns[0])
	}
	if c.askDNS[1] {
		b = appendAddr(b, ipcpDNS2, c.dns[1])
	}
	return b
}

func (c *ipcp) ackCI(opts []byte) bool {
	var buf [32]byte
	return string(c.addCI(buf[:0])) == string(opts)
}

func addr4(v []byte) (netip.Addr, bool) {
	if len(v) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(v)), true
}

func (c *ipcp) nakCI(opts []byte) bool {
	return forOptions(opts, func(typ byte, v, _ []byte) {
		a, ok := addr4(v)
		if !ok {
			return
		}
		switch typ {
		case ipcpAddr:
			// The server assigns our address. In server role we keep ours.
			if !c.l.cfg.LocalIP.IsValid() && !a.IsUnspecified() {
				c.local = a
			}
		case ipcpDNS1:
			c.dns[0] = a
		case ipcpDNS2:
			c.dns[1] = a
		}
	})
}

func (c *ipcp) rejCI(opts []byte) bool {
	return forOptions(opts, func(typ byte, _, _ []byte) {
		switch typ {
		case ipcpAddr:
			c.wantAddr = false
		case ipcpDNS1:
			c.askDNS[0] = false
			c.l.log.Info("the far end does not hand out DNS servers")
		case ipcpDNS2:
			c.askDNS[1] = false
		}
	})
}

func (c *ipcp) reqCI(opts []byte, dst []byte, rejectIfDisagree bool) (byte, []byte) {
	var naks, rejs []byte
	peer := netip.Addr{}
	ok := forOptions(opts, func(typ byte, v, raw []byte) {
		a, valid := addr4(v)
		switch typ {
		case ipcpAddr:
			if !valid {
				rejs = append(rejs, raw...)
				return
			}
			assign := c.l.cfg.PeerIP
			switch {
			case assign.IsValid() && a != assign:
				naks = appendAddr(naks, ipcpAddr, assign) // §3.3: Nak with the address to use
			case !assign.IsValid() && a.IsUnspecified():
				rejs = append(rejs, raw...) // the peer wants an address and we have none to give
			default:
				peer = a
			}
		case ipcpDNS1, ipcpDNS2:
			i := 0
			if typ == ipcpDNS2 {
				i = 1
			}
			if !valid || len(c.l.cfg.DNS) <= i {
				rejs = append(rejs, raw...)
				return
			}
			if want := c.l.cfg.DNS[i]; a != want {
				naks = appendAddr(naks, typ, want)
			}
		default:
			// VJ compression (we never speak it), IP-Addresses, NBNS, unknown.
			rejs = append(rejs, raw...)
		}
	})
	if ok && len(rejs) == 0 && len(naks) == 0 && !peer.IsValid() && c.l.cfg.PeerIP.IsValid() && !rejectIfDisagree {
		// The peer did not ask for an address at all; tell it which to use
		// (RFC 1332 §3.3 lets us Nak with an option it did not include).
		naks = appendAddr(naks, ipcpAddr, c.l.cfg.PeerIP)
	}
	code, out, acked := reply(ok, opts, rejs, naks, dst, rejectIfDisagree)
	if acked {
		c.peer = peer
	}
	return code, out
}

func (c *ipcp) up() {
	if !c.peer.IsValid() {
		c.peer = c.l.cfg.PeerIP
	}
	if c.local.IsUnspecified() || !c.local.IsValid() {
		c.l.fail(errNegotiation("IPCP: the far end assigned us no IPv4 address"))
		return
	}
	var dns []netip.Addr
	for i, d := range c.dns {
		// pppd with one ms-dns hands out the same server as secondary.
		if c.askDNS[i] && d.IsValid() && !d.IsUnspecified() && !slices.Contains(dns, d) {
			dns = append(dns, d)
		}
	}
	if !c.l.cfg.RequestDNS {
		dns = c.l.cfg.DNS
	}
	if !c.l.cfg.LocalIP.IsValid() {
		// A client: what we use came from the far end.
		if err := c.checkFarEnd(dns); err != nil {
			c.l.fail(err)
			return
		}
	}
	c.l.ipcpUp(c.local, c.peer, dns)
}

// checkFarEnd refuses addresses a malicious (or misconfigured) far end could
// use to pull traffic out of the tunnel or break it: loopback, multicast,
// broadcast and the like, and whatever Config.Forbidden names.
func (c *ipcp) checkFarEnd(dns []netip.Addr) error {
	var forbidden []Forbidden
	if c.l.cfg.Forbidden != nil {
		forbidden = c.l.cfg.Forbidden()
	}
	check := func(what string, a netip.Addr) error {
		if why := unusableAddr(a, forbidden); why != "" {
			return errNegotiation(fmt.Sprintf("IPCP: refusing %s %s from the far end: %s", what, a, why))
		}
		return nil
	}
	if err := check("our address", c.local); err != nil {
		return err
	}
	if c.peer.IsValid() {
		if err := check("its address", c.peer); err != nil {
			return err
		}
		if c.peer == c.local {
			return errNegotiation(fmt.Sprintf("IPCP: refusing addresses from the far end: both ends would be %s", c.local))
		}
	}
	for _, d := range dns {
		if err := check("DNS server", d); err != nil {
			return err
		}
	}
	return nil
}

// unusableAddr says why a is no address for either end of the link or a DNS
// server behind it, or "" when it is usable.
func unusableAddr(a netip.Addr, forbidden []Forbidden) string {
	a = a.Unmap()
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsMulticast():
		return "a multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.Is4() && (a.As4()[0] == 0 || a.As4()[0] >= 240):
		return "a reserved address"
	}
	for _, f := range forbidden {
		if f.Prefix.Contains(a) {
			return f.Why
		}
	}
	return ""
}

func (c *ipcp) down()     { c.l.ipcpDown() }
func (c *ipcp) finished() { c.l.ncpFinished(ProtoIPCP) }

func (c *ipcp) extCode(byte, byte, []byte) bool { return false }
