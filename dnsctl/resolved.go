package dnsctl

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/godbus/dbus/v5"
)

// systemd-resolved's D-Bus API, org.freedesktop.resolve1(5).
const (
	resolvedName  = "org.freedesktop.resolve1"
	resolvedPath  = "/org/freedesktop/resolve1"
	resolvedIface = "org.freedesktop.resolve1.Manager"

	// errNoSuchLink: resolved does not know the ifindex (the link is gone).
	errNoSuchLink = "org.freedesktop.resolve1.NoSuchLink"
)

// resolvedDNS is one entry of SetLinkDNS's a(iay): an address family
// (AF_INET 2, AF_INET6 10) and the address bytes.
type resolvedDNS struct {
	Family  int32
	Address []byte
}

// resolvedDomain is one entry of SetLinkDomains's a(sb): a domain and
// whether it only routes queries (true) or is a search domain too (false).
type resolvedDomain struct {
	Domain      string
	RoutingOnly bool
}

// resolvedOnBus tells whether resolve1 has an owner now. It does not start
// resolved by D-Bus activation: detection changes nothing.
func resolvedOnBus(ctx context.Context, o Options) (bool, error) {
	conn, err := o.bus()
	if err != nil {
		return false, fmt.Errorf("system bus: %w", err)
	}
	defer conn.Close()
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	var has bool
	err = conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, resolvedName).Store(&has)
	return has, err
}

func resolvedServers(c Change) []resolvedDNS {
	var servers []resolvedDNS
	for _, a := range c.Servers {
		a = a.Unmap()
		fam := int32(2) // AF_INET
		if a.Is6() {
			fam = 10 // AF_INET6
		}
		servers = append(servers, resolvedDNS{fam, a.AsSlice()})
	}
	return servers
}

// applyResolved gives the tunnel link its servers, "~." (every name is
// routed to this link's servers, not only its own domains) plus the search
// domains, and makes it the default route for DNS.
func applyResolved(ctx context.Context, o Options, c Change) error {
	if c.IfIndex <= 0 {
		return fmt.Errorf("dns change: ifindex %d is not a link", c.IfIndex)
	}
	conn, err := o.bus()
	if err != nil {
		return fmt.Errorf("dns: system bus: %w", err)
	}
	defer conn.Close()
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	obj := conn.Object(resolvedName, resolvedPath)
	domains := []resolvedDomain{{"~.", true}}
	for _, d := range c.Domains {
		domains = append(domains, resolvedDomain{d, false})
	}
	idx := int32(c.IfIndex)
	for _, call := range []struct {
		method string
		args   []any
	}{
		{"SetLinkDNS", []any{idx, resolvedServers(c)}},
		{"SetLinkDomains", []any{idx, domains}},
		{"SetLinkDefaultRoute", []any{idx, true}},
	} {
		err := obj.CallWithContext(ctx, resolvedIface+"."+call.method, 0, call.args...).Err
		var de dbus.Error
		if call.method == "SetLinkDefaultRoute" && errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.UnknownMethod" {
			o.log().Debug("resolved predates SetLinkDefaultRoute (v240): ~. alone routes every name to the tunnel")
			continue
		}
		if err != nil {
			return fmt.Errorf("dns: resolved %s on %s (ifindex %d): %w", call.method, c.Link, c.IfIndex, err)
		}
	}
	return nil
}

// revertResolved hands the link back to resolved's defaults. When the link
// is gone, resolved has dropped its settings with it: done, without asking.
// The same holds when its ifindex now belongs to another link (a reboot
// since the journal was written) — reverting that one would wipe settings
// someone else made.
func revertResolved(ctx context.Context, o Options, c Change) error {
	if c.IfIndex <= 0 {
		return fmt.Errorf("dns change: ifindex %d is not a link", c.IfIndex)
	}
	if ifi, err := net.InterfaceByIndex(c.IfIndex); err != nil || ifi.Name != c.Link {
		o.log().Debug("tunnel link gone; resolved forgot its settings with it", "link", c.Link, "ifindex", c.IfIndex)
		return nil
	}
	conn, err := o.bus()
	if err != nil {
		return fmt.Errorf("dns: system bus: %w", err)
	}
	defer conn.Close()
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	err = conn.Object(resolvedName, resolvedPath).CallWithContext(ctx, resolvedIface+".RevertLink", 0, int32(c.IfIndex)).Err
	var de dbus.Error
	if errors.As(err, &de) && (de.Name == errNoSuchLink || de.Name == "org.freedesktop.DBus.Error.ServiceUnknown") {
		return nil // the link (or resolved, and its settings) is gone
	}
	if err != nil {
		return fmt.Errorf("dns: resolved RevertLink %s (ifindex %d): %w", c.Link, c.IfIndex, err)
	}
	return nil
}
