package lab

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
)

// DHCPServer is dnsmasq serving DHCP (no DNS) on one interface of a
// namespace: the café router's lease server.
type DHCPServer struct {
	Proc *Proc
}

// StartDHCPServer runs dnsmasq in ns on dev, handing out addresses from
// first to last (same /24) with router as the gateway and DNS server.
// extra are more dnsmasq options (e.g. "--dhcp-option=121,0.0.0.0/1,GW").
func (ns *Namespace) StartDHCPServer(dev, first, last, router string, extra ...string) (*DHCPServer, error) {
	argv := append([]string{"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=" + dev, "--bind-interfaces", "--no-ping", "--log-dhcp",
		"--dhcp-leasefile=" + ns.lab.dir + "/" + ns.name + ".leases",
		"--pid-file=",
		"--dhcp-range=" + first + "," + last + ",255.255.255.0,10m",
		"--dhcp-option=option:router," + router, "--dhcp-option=option:dns-server," + router}, extra...)
	p, err := ns.StartProc(nil, argv...)
	if err != nil {
		return nil, err
	}
	// dnsmasq says it is ready once it has bound its socket.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Stderr(), "DHCP, IP range") {
		select {
		case <-p.Done():
			return nil, fmt.Errorf("dnsmasq exited: %s", p.Stderr())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dnsmasq did not start: %s", p.Stderr())
		}
	}
	return &DHCPServer{Proc: p}, nil
}

// Lease is what a DHCP client got and configured.
type Lease struct {
	Addr    *net.IPNet
	Router  net.IP
	DNS     []net.IP
	Server  net.IP
	Routes  dhcpv4.Routes  // option 121
	ACK     *dhcpv4.DHCPv4 // the server's acknowledgement, as received
	lease   *nclient4.Lease
	dev     string
	ns      *Namespace
	applied bool
}

// AcquireLease runs a real DHCP exchange (DISCOVER, OFFER, REQUEST, ACK)
// on dev in ns and configures what it got the way a DHCP client does: the
// address, and the default route via the router (or, with option 121, the
// classless routes instead, RFC 3442).
func (ns *Namespace) AcquireLease(dev string, timeout time.Duration) (*Lease, error) {
	var l *Lease
	err := ns.Do(func() error {
		c, err := nclient4.New(dev, nclient4.WithTimeout(timeout/4), nclient4.WithRetry(4))
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		// Ask for classless routes (option 121) as real clients do.
		lease, err := c.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionClasslessStaticRoute))
		if err != nil {
			return fmt.Errorf("DHCP on %s: %w", dev, err)
		}
		ack := lease.ACK
		l = &Lease{lease: lease, ACK: ack, dev: dev, ns: ns, Server: ack.ServerIdentifier(),
			DNS: ack.DNS(), Routes: ack.ClasslessStaticRoute()}
		mask := ack.SubnetMask()
		if mask == nil {
			mask = net.CIDRMask(24, 32)
		}
		l.Addr = &net.IPNet{IP: ack.YourIPAddr, Mask: mask}
		if rs := ack.Router(); len(rs) > 0 {
			l.Router = rs[0]
		}
		return l.apply()
	})
	return l, err
}

func (l *Lease) apply() error {
	link, err := netlink.LinkByName(l.dev)
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: l.Addr}); err != nil {
		return fmt.Errorf("adding %s: %w", l.Addr, err)
	}
	l.applied = true
	if len(l.Routes) > 0 {
		for _, r := range l.Routes {
			if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: r.Dest, Gw: r.Router}); err != nil {
				return fmt.Errorf("option 121 route %s: %w", r, err)
			}
		}
		return nil
	}
	if l.Router != nil {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router,
			Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}); err != nil {
			return fmt.Errorf("default via %s: %w", l.Router, err)
		}
	}
	return nil
}

// Release gives the lease back and removes the address (and with it its routes).
func (l *Lease) Release() error {
	return l.ns.Do(func() error {
		if c, err := nclient4.New(l.dev); err == nil {
			c.Release(l.lease)
			c.Close()
		}
		link, err := netlink.LinkByName(l.dev)
		if err != nil {
			return err
		}
		return netlink.AddrDel(link, &netlink.Addr{IPNet: l.Addr})
	})
}

// GoDHCPServer is a small DHCP server (insomniacslk/dhcp's server4) for
// the demo, which should need nothing but root and OpenSSH: it leases
// addresses from a /24 pool with router as gateway and DNS server.
type GoDHCPServer struct {
	srv *server4.Server
}

// StartGoDHCPServer serves DHCP on dev in ns, leasing first..first+n-1.
func (ns *Namespace) StartGoDHCPServer(dev string, first net.IP, n int, router net.IP) (*GoDHCPServer, error) {
	var mu sync.Mutex
	leases := map[string]net.IP{}
	next := 0
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var reply dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			reply = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			reply = dhcpv4.MessageTypeAck
		default:
			return
		}
		mu.Lock()
		ip, ok := leases[m.ClientHWAddr.String()]
		if !ok && next < n {
			base := first.To4()
			ip = net.IPv4(base[0], base[1], base[2], base[3]+byte(next))
			next++
			leases[m.ClientHWAddr.String()] = ip
		}
		mu.Unlock()
		if ip == nil {
			return
		}
		resp, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(reply),
			dhcpv4.WithYourIP(ip),
			dhcpv4.WithServerIP(router),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(router)),
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
			dhcpv4.WithOption(dhcpv4.OptRouter(router)),
			dhcpv4.WithOption(dhcpv4.OptDNS(router)),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(10*time.Minute)))
		if err != nil {
			return
		}
		to := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		if !m.ClientIPAddr.IsUnspecified() && m.ClientIPAddr != nil {
			to.IP = m.ClientIPAddr
		}
		conn.WriteTo(resp.ToBytes(), to)
	}
	s := &GoDHCPServer{}
	err := ns.Do(func() error {
		var err error
		s.srv, err = server4.NewServer(dev, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("DHCP server on %s: %w", dev, err)
	}
	go s.srv.Serve()
	ns.lab.Defer(func() { s.srv.Close() })
	return s, nil
}
