package dnsctl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"
)

// systemd-resolved's D-Bus API (org.freedesktop.resolve1(5)).
const (
	resolvedName  = "org.freedesktop.resolve1"
	resolvedPath  = "/org/freedesktop/resolve1"
	resolvedIface = "org.freedesktop.resolve1.Manager"
)

// resolvedDNS is one entry of SetLinkDNS's a(iay).
type resolvedDNS struct {
	Family  int32
	Address []byte
}

// resolvedDomain is one entry of SetLinkDomains's a(sb).
type resolvedDomain struct {
	Domain      string
	RoutingOnly bool
}

func resolvedOnBus(ctx context.Context, o Options) (bool, error) {
	conn, err := o.bus()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	var has bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, resolvedName).Store(&has); err != nil {
		return false, err
	}
	return has, nil
}

func applyResolved(ctx context.Context, o Options, c Change) error {
	conn, err := o.bus()
	if err != nil {
		return fmt.Errorf("dns: system bus: %w", err)
	}
	defer conn.Close()
	obj := conn.Object(resolvedName, resolvedPath)
	var servers []resolvedDNS
	for _, a := range c.Servers {
		fam := int32(2) // AF_INET
		if a.Is6() && !a.Is4In6() {
			fam = 10 // AF_INET6
		}
		servers = append(servers, resolvedDNS{fam, a.Unmap().AsSlice()})
	}
	// "~." makes the tunnel's servers the ones for every name.
	domains := []resolvedDomain{{"~.", true}}
	for _, d := range c.Domains {
		domains = append(domains, resolvedDomain{d, false})
	}
	idx := int32(c.IfIndex)
	for _, call := range []struct {
		method string
		args   []any
	}{
		{"SetLinkDNS", []any{idx, servers}},
		{"SetLinkDomains", []any{idx, domains}},
		{"SetLinkDefaultRoute", []any{idx, true}},
	} {
		err := obj.CallWithContext(ctx, resolvedIface+"."+call.method, 0, call.args...).Err
		var de dbus.Error
		if call.method == "SetLinkDefaultRoute" && errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.UnknownMethod" {
			continue // resolved before v240: "~." alone does it
		}
		if err != nil {
			return fmt.Errorf("dns: resolved %s on %s (ifindex %d): %w", call.method, c.Link, c.IfIndex, err)
		}
	}
	return nil
}

func revertResolved(ctx context.Context, o Options, c Change) error {
	conn, err := o.bus()
	if err != nil {
		return fmt.Errorf("dns: system bus: %w", err)
	}
	defer conn.Close()
	err = conn.Object(resolvedName, resolvedPath).CallWithContext(ctx, resolvedIface+".RevertLink", 0, int32(c.IfIndex)).Err
	var de dbus.Error
	if errors.As(err, &de) && (strings.HasSuffix(de.Name, ".NoSuchLink") || de.Name == "org.freedesktop.DBus.Error.ServiceUnknown") {
		return nil // the link (or resolved) is gone, and our settings with it
	}
	if err != nil {
		return fmt.Errorf("dns: resolved RevertLink %s (ifindex %d): %w", c.Link, c.IfIndex, err)
	}
	return nil
}
