// Package watcher turns event sources (nl80211, NetworkManager over D-Bus,
// rtnetlink, DHCP acknowledgements) into Network snapshots. It observes and
// reports; it never decides what to do about a network (that is policy's job)
// and never changes the system.
package watcher

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the kind of link a network is reached over.
type Kind string

// Link kinds.
const (
	KindWifi     Kind = "wifi"
	KindEthernet Kind = "ethernet"
)

// Security is the protection of a Wi-Fi network as advertised by its access
// point. Wired networks report SecurityNone unless 802.1X is in use.
type Security string

// Security kinds, weakest first.
const (
	SecurityNone  Security = ""
	SecurityOpen  Security = "open"
	SecurityWEP   Security = "wep"
	SecurityWPA   Security = "wpa"
	SecurityWPA2  Security = "wpa2"
	SecurityWPA3  Security = "wpa3"
	Security8021X Security = "8021x"
)

// Connectivity is how far the network reaches: NetworkManager's view, or
// the portal source's own probe where NetworkManager has none.
type Connectivity string

// Connectivity states (NM_CONNECTIVITY_*); ConnectivityUnknown when no source knows.
const (
	ConnectivityUnknown Connectivity = ""
	ConnectivityNone    Connectivity = "none"
	ConnectivityPortal  Connectivity = "portal"
	ConnectivityLimited Connectivity = "limited"
	ConnectivityFull    Connectivity = "full"
)

// Route is a classless static route handed out by DHCP (option 121).
type Route struct {
	Dest    netip.Prefix `json:"dest"`
	Gateway netip.Addr   `json:"gateway"`
}

// Network is a snapshot of the network the laptop is attached to through one
// interface. The zero value means "no network". Snapshots are values: compare
// them with Equal, never mutate one that has been handed out.
type Network struct {
	Interface string   `json:"interface"`
	Kind      Kind     `json:"kind"`
	SSID      string   `json:"ssid,omitempty"`  // raw bytes as broadcast; may be non-UTF-8 (see DisplaySSID)
	BSSID     string   `json:"bssid,omitempty"` // lower-case aa:bb:cc:dd:ee:ff
	Security  Security `json:"security,omitempty"`
	Frequency int      `json:"frequency,omitempty"` // MHz

	Gateway netip.Addr `json:"gateway,omitzero"`
	// RouteMetric is the default route's metric: among several networks
	// the lowest carries the traffic (see Primary). Not part of Equal.
	RouteMetric int          `json:"-"`
	GatewayMAC  string       `json:"gateway_mac,omitempty"` // lower-case
	Address     netip.Prefix `json:"address,omitzero"`      // our address on the interface

	DNS             []netip.Addr `json:"dns,omitempty"`
	ClasslessRoutes []Route      `json:"classless_routes,omitempty"` // DHCP option 121
	// TunnelVision is set when option 121 routes would cover (part of) the
	// default route: 0.0.0.0/1 + 128.0.0.0/1 and the like (CVE-2024-3661).
	TunnelVision bool       `json:"tunnelvision,omitempty"`
	LeaseSeconds uint32     `json:"lease_seconds,omitempty"`
	DHCPServer   netip.Addr `json:"dhcp_server,omitzero"`

	Connection   string       `json:"connection,omitempty"` // NetworkManager connection id
	Connectivity Connectivity `json:"connectivity,omitempty"`
	// PortalURL is where a captive portal sent the connectivity probe
	// (its redirect), as the network said it: shown and opened, never
	// trusted. Set only with ConnectivityPortal, by the source that said so.
	PortalURL string `json:"portal_url,omitempty"`
}

// IsZero reports whether n describes no network at all.
func (n Network) IsZero() bool { return n.Interface == "" }

// Equal reports whether two snapshots describe the same network state.
func (n Network) Equal(o Network) bool {
	return n.Interface == o.Interface && n.Kind == o.Kind && n.SSID == o.SSID &&
		n.BSSID == o.BSSID && n.Security == o.Security && n.Frequency == o.Frequency &&
		n.Gateway == o.Gateway && n.GatewayMAC == o.GatewayMAC && n.Address == o.Address &&
		slices.Equal(n.DNS, o.DNS) && slices.Equal(n.ClasslessRoutes, o.ClasslessRoutes) &&
		n.TunnelVision == o.TunnelVision && n.LeaseSeconds == o.LeaseSeconds &&
		n.DHCPServer == o.DHCPServer && n.Connection == o.Connection &&
		n.Connectivity == o.Connectivity && n.PortalURL == o.PortalURL
}

// DisplaySSID returns the SSID for people: printable UTF-8 as is, anything else
// escaped as \xNN so that hidden (empty) and binary SSIDs stay distinguishable.
func (n Network) DisplaySSID() string { return EscapeSSID(n.SSID) }

// EscapeSSID escapes an SSID's raw bytes for display. Printable UTF-8 runes are
// kept; backslash and every other byte become \\ and \xNN.
func EscapeSSID(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == utf8.RuneError && size <= 1, !strconv.IsPrint(r):
			for _, c := range []byte(s[i : i+size]) {
				b.WriteString(`\x`)
				b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
				b.WriteString(strconv.FormatUint(uint64(c)&0xf, 16))
			}
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

// CoversDefault reports whether a set of routes overrides (part of) the default
// route: any prefix shorter than /8 other than the default itself pulls a
// large slice of the address space away from whatever the default points at.
func CoversDefault(routes []Route) bool {
	for _, r := range routes {
		if r.Dest.Bits() > 0 && r.Dest.Bits() < 8 {
			return true
		}
	}
	return false
}

// ErrUnavailable is wrapped by a Source's Run error when the source cannot run
// on this machine (no Wi-Fi hardware, no NetworkManager on the bus, ...).
var ErrUnavailable = errors.New("source unavailable")
