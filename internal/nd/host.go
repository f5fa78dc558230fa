package nd

import (
	"errors"
	"net/netip"

	"github.com/mdlayher/ndp"
)

// HostConfig is what a laptop takes from a router advertisement.
type HostConfig struct {
	Addr   netip.Addr   // prefix + our interface identifier
	Prefix netip.Prefix // the advertised /64
	DNS    []netip.Addr // RDNSS servers with a lifetime left, in order
}

// ErrNoDefaultRouter: the far end advertised a router lifetime of 0 — it
// says it is not to be used for ::/0, so IPv6 stays blocked.
var ErrNoDefaultRouter = errors.New("the router advertisement says the far end is no default router (router lifetime 0)")

// ErrNoPrefix: no /64 prefix with the autonomous flag and a lifetime left.
var ErrNoPrefix = errors.New("the router advertisement carries no /64 prefix for addresses")

// Host derives a laptop's configuration from ra: the address is the first
// autonomous /64 prefix with our interface identifier id, the way SLAAC forms
// it on a PPP link (RFC 4862 §5.5.3, RFC 5072 §5), so that both ends and any
// stock client agree on it without asking.
func Host(ra *ndp.RouterAdvertisement, id [8]byte) (HostConfig, error) {
	if ra.RouterLifetime == 0 {
		return HostConfig{}, ErrNoDefaultRouter
	}
	var c HostConfig
	for _, o := range ra.Options {
		switch o := o.(type) {
		case *ndp.PrefixInformation:
			if c.Addr.IsValid() || o.PrefixLength != 64 || !o.AutonomousAddressConfiguration ||
				o.ValidLifetime == 0 || o.PreferredLifetime > o.ValidLifetime || !o.Prefix.Is6() {
				continue
			}
			a := o.Prefix.As16()
			copy(a[8:], id[:])
			c.Addr = netip.AddrFrom16(a)
			c.Prefix = netip.PrefixFrom(o.Prefix, 64).Masked()
		case *ndp.RecursiveDNSServer:
			if o.Lifetime > 0 {
				c.DNS = append(c.DNS, o.Servers...)
			}
		}
	}
	if !c.Addr.IsValid() {
		return HostConfig{}, ErrNoPrefix
	}
	return c, nil
}
