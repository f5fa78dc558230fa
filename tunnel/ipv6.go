package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/roamtun/roamtun/internal/nd"
	"github.com/roamtun/roamtun/internal/tun"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// DefaultRAWait is how long a laptop waits for the far end's router
// advertisement once IPv6CP is open (two solicitations, 1 s apart).
const DefaultRAWait = 2 * time.Second

// ndTap is a link whose router solicitations and advertisements go to the
// session's router discovery instead of the TUN: the kernel never sees them,
// so it neither autoconfigures from them nor answers them. Every other
// packet goes on as before; the check is three header bytes, with no
// allocation (*ppp.Link's batching and read-done methods are promoted).
type ndTap struct {
	*ppp.Link
	msgs chan []byte
}

func newNDTap(l *ppp.Link) ndTap { return ndTap{Link: l, msgs: make(chan []byte, 4)} }

// SetPacketHandler installs fn behind the router discovery filter.
func (t ndTap) SetPacketHandler(fn func(pkt []byte)) {
	t.Link.SetPacketHandler(func(pkt []byte) {
		if nd.RouterMessage(pkt) == 0 {
			fn(pkt)
			return
		}
		select {
		case t.msgs <- bytes.Clone(pkt): // rare: off the data path
		default: // a flood: drop
		}
	})
}

// ndLink is what router discovery needs of the link (*ppp.Link has it).
type ndLink interface {
	WritePacket(pkt []byte) error
	Done() <-chan struct{}
}

// addr6Adder is what the laptop's router discovery needs of the TUN.
type addr6Adder interface{ AddAddr6(netip.Addr) error }

// solicit is the laptop's router discovery: it asks for a router
// advertisement and configures the address it gives, within o.RAWait. It
// returns s with Addr6 and DNS6 filled in, or with IPv6 false when the far
// end offered no usable IPv6 — then ::/0 stays unreachable.
func solicit(ctx context.Context, o *SessionOptions, link ndLink, msgs <-chan []byte, dev addr6Adder, s ppp.Session, log *slog.Logger) ppp.Session {
	wait := o.RAWait
	if wait <= 0 {
		wait = DefaultRAWait
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	resend := time.NewTicker(time.Second)
	defer resend.Stop()
	rs := nd.Solicitation(s.LocalIfID)
	link.WritePacket(rs)
	var forbidden []ppp.Forbidden
	if o.Link.Forbidden != nil {
		forbidden = o.Link.Forbidden()
	}
	for {
		select {
		case <-ctx.Done():
			s.IPv6 = false
			return s
		case <-link.Done():
			s.IPv6 = false
			return s
		case <-deadline.C:
			log.Warn("IPv6CP is up but the far end sent no router advertisement: IPv6 stays blocked", "waited", wait)
			s.IPv6 = false
			return s
		case <-resend.C:
			link.WritePacket(rs)
		case pkt := <-msgs:
			hc, err := hostConfig(pkt, s.LocalIfID, forbidden)
			if err != nil {
				log.Warn("router advertisement ignored", "err", err)
				continue
			}
			if err := dev.AddAddr6(hc.Addr); err != nil {
				log.Warn("IPv6 address not configured: IPv6 stays blocked", "addr", hc.Addr, "err", err)
				s.IPv6 = false
				return s
			}
			s.Addr6, s.DNS6 = hc.Addr, hc.DNS
			log.Info("IPv6 from the far end's router advertisement", "addr", hc.Addr, "prefix", hc.Prefix, "dns", hc.DNS)
			return s
		}
	}
}

// hostConfig checks one router message from the far end and what it
// gives: an address and DNS servers a far end may hand us (as IPCP's are
// checked: not loopback, multicast, link-local, the ssh server or the
// uplink's subnets).
func hostConfig(pkt []byte, id [8]byte, forbidden []ppp.Forbidden) (nd.HostConfig, error) {
	if nd.RouterMessage(pkt) != nd.TypeRA {
		return nd.HostConfig{}, errors.New("a router solicitation from the far end")
	}
	ra, _, err := nd.ParseRA(pkt)
	if err != nil {
		return nd.HostConfig{}, err
	}
	hc, err := nd.Host(ra, id)
	if err != nil {
		return hc, err
	}
	if why := ppp.Unusable(hc.Addr, forbidden); why != "" {
		return hc, fmt.Errorf("prefix %s: our address %s would be %s", hc.Prefix, hc.Addr, why)
	}
	dns := hc.DNS[:0]
	for _, a := range hc.DNS {
		if why := ppp.Unusable(a, forbidden); why != "" || !a.Is6() {
			continue // one bad server does not spoil the address
		}
		dns = append(dns, a)
	}
	hc.DNS = dns
	return hc, nil
}

// advertise is the far end's router: it routes prefix to the TUN, then
// sends router advertisements down the link — at once, in answer to every
// solicitation (at most one a second), and every nd.Interval — until the
// link ends. The caller runs loop on a goroutine it waits for.
func advertise(o *SessionOptions, link ndTap, dev *tun.Device, s ppp.Session, log *slog.Logger) (loop func(), err error) {
	if err := dev.RoutePrefix(o.Prefix6); err != nil {
		return nil, err
	}
	src := nd.LinkLocal(s.LocalIfID)
	ra, err := nd.Packet(nd.Advertisement(o.Prefix6, o.DNS6, s.MTU), src, nd.AllNodes)
	if err != nil {
		return nil, err
	}
	log.Info("advertising IPv6", "prefix", o.Prefix6, "dns", o.DNS6,
		"peer_addr", prefixAddr(o.Prefix6, s.PeerIfID))
	return func() {
		tick := time.NewTicker(nd.Interval)
		defer tick.Stop()
		var last time.Time
		link.WritePacket(ra)
		for {
			select {
			case <-link.Done():
				return
			case <-tick.C:
			case pkt := <-link.msgs:
				if !nd.IsSolicitation(pkt) || time.Since(last) < time.Second {
					continue
				}
			}
			last = time.Now()
			link.WritePacket(ra)
		}
	}, nil
}

// prefixAddr is the address a host with interface identifier id forms in
// prefix (SLAAC): what the laptop will use.
func prefixAddr(p netip.Prefix, id [8]byte) netip.Addr {
	a := p.Masked().Addr().As16()
	copy(a[8:], id[:])
	return netip.AddrFrom16(a)
}
