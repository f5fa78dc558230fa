// Package networkmanager is the watcher's "networkmanager" source: what
// NetworkManager says over D-Bus about the active connections — their id
// and type, the access point (SSID bytes, BSSID, protection), the DHCPv4
// lease's options (routers, DNS, option 121 as
// rfc3442_classless_static_routes) and connectivity, including PORTAL.
package networkmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/watcher"
)

const (
	nmName   = "org.freedesktop.NetworkManager"
	nmPath   = dbus.ObjectPath("/org/freedesktop/NetworkManager")
	nmIface  = "org.freedesktop.NetworkManager"
	acIface  = nmIface + ".Connection.Active"
	devIface = nmIface + ".Device"
	wifiDev  = nmIface + ".Device.Wireless"
	apIface  = nmIface + ".AccessPoint"
	dhcp4    = nmIface + ".DHCP4Config"
)

// Source is the NetworkManager watcher source.
type Source struct {
	// BusAddress is the system bus to use (tests: a private one); "" is
	// the system bus.
	BusAddress string
	Log        *slog.Logger
}

// Name implements watcher.Source.
func (s *Source) Name() string { return "networkmanager" }

func (s *Source) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Source) connect(opts ...dbus.ConnOption) (*dbus.Conn, error) {
	if s.BusAddress == "" {
		return dbus.ConnectSystemBus(opts...)
	}
	return dbus.Connect(s.BusAddress, opts...)
}

func nmOnBus(c *dbus.Conn) bool {
	var has bool
	return c.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, nmName).Store(&has) == nil && has
}

// Run implements watcher.Source: it hints on NetworkManager's signals, in
// order, and when NetworkManager (re)appears or goes away.
func (s *Source) Run(ctx context.Context, hint func()) error {
	c, err := s.connect(dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		return fmt.Errorf("system bus: %v: %w", err, watcher.ErrUnavailable)
	}
	defer c.Close()
	if !nmOnBus(c) {
		return fmt.Errorf("NetworkManager is not on the bus: %w", watcher.ErrUnavailable)
	}
	for _, m := range [][]dbus.MatchOption{
		{dbus.WithMatchSender(nmName), dbus.WithMatchPathNamespace(nmPath)},
		{dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, nmName)},
	} {
		if err := c.AddMatchSignal(m...); err != nil {
			return fmt.Errorf("subscribing to NetworkManager: %w", err)
		}
	}
	sigs := make(chan *dbus.Signal, 256)
	c.Signal(sigs)
	defer c.RemoveSignal(sigs)
	hint() // listening now: whatever changed before is worth a look
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-sigs:
			if !ok {
				return errors.New("system bus connection closed")
			}
			if sig.Name == "org.freedesktop.DBus.NameOwnerChanged" {
				var name, old, new string
				if dbus.Store(sig.Body, &name, &old, &new) == nil {
					s.log().Info("NetworkManager on the bus changed", "old", old, "new", new)
				}
			}
			hint()
		}
	}
}

// prop reads one property, naming it in errors.
func prop[T any](obj dbus.BusObject, iface, name string) (T, error) {
	var v T
	variant, err := obj.GetProperty(iface + "." + name)
	if err != nil {
		return v, fmt.Errorf("%s %s.%s: %w", obj.Path(), iface, name, err)
	}
	if err := variant.Store(&v); err != nil {
		return v, fmt.Errorf("%s %s.%s: unexpected type %s: %w", obj.Path(), iface, name, variant.Signature(), err)
	}
	return v, nil
}

// Observe implements watcher.Source: one Network per device of each active
// connection.
func (s *Source) Observe(ctx context.Context) ([]watcher.Network, error) {
	c, err := s.connect()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if !nmOnBus(c) {
		return nil, nil // NetworkManager is away (restarting): it knows nothing now
	}
	nm := c.Object(nmName, nmPath)
	actives, err := prop[[]dbus.ObjectPath](nm, nmIface, "ActiveConnections")
	var de dbus.Error
	if errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.UnknownObject" ||
		de.Name == "org.freedesktop.DBus.Error.UnknownInterface" || de.Name == "org.freedesktop.DBus.Error.UnknownProperty") {
		return nil, nil // NetworkManager is starting: it owns its name but has not exported its objects yet
	}
	if err != nil {
		return nil, err
	}
	primary, _ := prop[dbus.ObjectPath](nm, nmIface, "PrimaryConnection")
	global, _ := prop[uint32](nm, nmIface, "Connectivity")
	var out []watcher.Network
	for _, ap := range actives {
		ns, err := s.active(c, ap, ap == primary, global)
		if vanished(err) {
			// Deactivated between the list and the look (seen on every
			// switch from one Wi-Fi network to the next): already gone.
			s.log().Debug("NetworkManager: active connection went away while observed", "err", err)
			continue
		}
		if err != nil {
			s.log().Warn("NetworkManager: active connection not understood", "err", err)
			continue
		}
		out = append(out, ns...)
	}
	return out, nil
}

// vanished reports whether err says an object is not (any longer) on the
// bus. NetworkManager (GDBus) answers UnknownMethod "Object does not exist
// at path" for a removed object; other services say UnknownObject.
func vanished(err error) bool {
	var de dbus.Error
	if !errors.As(err, &de) {
		return false
	}
	switch de.Name {
	case "org.freedesktop.DBus.Error.UnknownObject":
		return true
	case "org.freedesktop.DBus.Error.UnknownMethod":
		return len(de.Body) > 0 && strings.HasPrefix(fmt.Sprint(de.Body[0]), "Object does not exist at path")
	}
	return false
}

func (s *Source) active(c *dbus.Conn, path dbus.ObjectPath, primary bool, global uint32) ([]watcher.Network, error) {
	ac := c.Object(nmName, path)
	id, err := prop[string](ac, acIface, "Id")
	if err != nil {
		return nil, err
	}
	typ, err := prop[string](ac, acIface, "Type")
	if err != nil {
		return nil, err
	}
	state, err := prop[uint32](ac, acIface, "State")
	if err != nil {
		return nil, err
	}
	if state != 2 { // NM_ACTIVE_CONNECTION_STATE_ACTIVATED
		return nil, nil
	}
	kind := watcher.KindEthernet
	switch typ {
	case "802-11-wireless":
		kind = watcher.KindWifi
	case "802-3-ethernet":
	default:
		return nil, nil // VPNs, bridges, loopback, our own TUN...: not a network the laptop joins
	}
	devs, err := prop[[]dbus.ObjectPath](ac, acIface, "Devices")
	if err != nil {
		return nil, err
	}
	var out []watcher.Network
	for _, dp := range devs {
		dev := c.Object(nmName, dp)
		ifname, err := prop[string](dev, devIface, "Interface")
		if err != nil {
			return nil, err
		}
		n := watcher.Network{Interface: ifname, Kind: kind, Connection: id}
		if kind == watcher.KindWifi {
			if err := s.accessPoint(c, dev, &n); err != nil {
				return nil, err
			}
		}
		if dp4, err := prop[dbus.ObjectPath](dev, devIface, "Dhcp4Config"); err == nil && dp4 != "/" {
			opts, err := prop[map[string]dbus.Variant](c.Object(nmName, dp4), dhcp4, "Options")
			if err != nil {
				return nil, err
			}
			if err := applyDHCP(&n, opts); err != nil {
				return nil, fmt.Errorf("%s: %w", dp4, err)
			}
		}
		// Connectivity: the device's own view where NetworkManager has one
		// (1.16+), else the global state for the primary connection.
		conn, err := prop[uint32](dev, devIface, "Ip4Connectivity")
		if err != nil && primary {
			conn = global
		}
		n.Connectivity = connectivity(conn)
		out = append(out, n)
	}
	return out, nil
}

func (s *Source) accessPoint(c *dbus.Conn, dev dbus.BusObject, n *watcher.Network) error {
	app, err := prop[dbus.ObjectPath](dev, wifiDev, "ActiveAccessPoint")
	if err != nil || app == "/" {
		return err
	}
	ap := c.Object(nmName, app)
	ssid, err := prop[[]byte](ap, apIface, "Ssid")
	if err != nil {
		return err
	}
	n.SSID = string(ssid)
	if hw, err := prop[string](ap, apIface, "HwAddress"); err == nil {
		n.BSSID = strings.ToLower(hw)
	}
	if f, err := prop[uint32](ap, apIface, "Frequency"); err == nil {
		n.Frequency = int(f)
	}
	flags, err := prop[uint32](ap, apIface, "Flags")
	if err != nil {
		return err
	}
	wpa, err := prop[uint32](ap, apIface, "WpaFlags")
	if err != nil {
		return err
	}
	rsn, err := prop[uint32](ap, apIface, "RsnFlags")
	if err != nil {
		return err
	}
	n.Security = Security(flags, wpa, rsn)
	return nil
}

// NM_802_11_AP_SEC_KEY_MGMT_* and NM_802_11_AP_FLAGS_PRIVACY.
const (
	keyPSK    = 0x100
	key8021X  = 0x200
	keySAE    = 0x400
	keyOWE    = 0x800
	keySuiteB = 0x2000
	privacy   = 0x1
)

// Security maps an access point's flags to the weakest mode a client may
// use (a WPA2/WPA3 transition network is wpa2).
func Security(flags, wpa, rsn uint32) watcher.Security {
	switch {
	case rsn&keyPSK != 0:
		return watcher.SecurityWPA2
	case rsn&keySAE != 0:
		return watcher.SecurityWPA3
	case rsn&(key8021X|keySuiteB) != 0:
		return watcher.Security8021X
	case wpa != 0:
		return watcher.SecurityWPA
	case rsn&keyOWE != 0:
		return watcher.SecurityOpen
	case flags&privacy != 0:
		return watcher.SecurityWEP
	}
	return watcher.SecurityOpen
}

func connectivity(v uint32) watcher.Connectivity {
	switch v {
	case 1:
		return watcher.ConnectivityNone
	case 2:
		return watcher.ConnectivityPortal
	case 3:
		return watcher.ConnectivityLimited
	case 4:
		return watcher.ConnectivityFull
	}
	return watcher.ConnectivityUnknown
}

// applyDHCP reads NetworkManager's DHCPv4 options (strings, as dhclient
// names them) into n. With option 121, routers (option 3) is ignored
// (RFC 3442): the gateway is the classless default, if any.
func applyDHCP(n *watcher.Network, opts map[string]dbus.Variant) error {
	str := func(k string) (string, bool, error) {
		v, ok := opts[k]
		if !ok {
			return "", false, nil
		}
		s, ok := v.Value().(string)
		if !ok {
			return "", false, fmt.Errorf("DHCP option %s: want a string, got %s", k, v.Signature())
		}
		return s, true, nil
	}
	if v, ok, err := str("domain_name_servers"); err != nil {
		return err
	} else if ok {
		for _, f := range strings.Fields(v) {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return fmt.Errorf("DHCP option domain_name_servers: %q: %w", f, err)
			}
			n.DNS = append(n.DNS, a)
		}
	}
	if v, ok, err := str("dhcp_lease_time"); err != nil {
		return err
	} else if ok {
		t, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("DHCP option dhcp_lease_time: %q: %w", v, err)
		}
		n.LeaseSeconds = uint32(t)
	}
	if v, ok, err := str("dhcp_server_identifier"); err != nil {
		return err
	} else if ok {
		if a, err := netip.ParseAddr(v); err == nil {
			n.DHCPServer = a
		}
	}
	if v, ok, err := str("ip_address"); err != nil {
		return err
	} else if ok {
		if a, err := netip.ParseAddr(v); err == nil {
			bits := 32
			if m, ok, _ := str("subnet_mask"); ok {
				if mask, err := netip.ParseAddr(m); err == nil {
					b := mask.As4()
					bits = 0
					for _, x := range b {
						for ; x != 0; x <<= 1 {
							bits++
						}
					}
				}
			}
			n.Address = netip.PrefixFrom(a, bits)
		}
	}
	routes, has121, err := str("rfc3442_classless_static_routes")
	if err != nil {
		return err
	}
	if has121 {
		rs, err := ParseClassless(routes)
		if err != nil {
			return fmt.Errorf("DHCP option rfc3442_classless_static_routes: %w", err)
		}
		n.ClasslessRoutes = rs
		for _, r := range rs {
			if r.Dest.Bits() == 0 {
				n.Gateway = r.Gateway
			}
		}
	} else if v, ok, err := str("routers"); err != nil {
		return err
	} else if ok {
		if f := strings.Fields(v); len(f) > 0 {
			a, err := netip.ParseAddr(f[0])
			if err != nil {
				return fmt.Errorf("DHCP option routers: %q: %w", f[0], err)
			}
			n.Gateway = a
		}
	}
	n.TunnelVision = watcher.CoversDefault(n.ClasslessRoutes)
	return nil
}

// ParseClassless reads NetworkManager's rendering of option 121:
// "0.0.0.0/1 10.0.0.1 128.0.0.0/1 10.0.0.1".
func ParseClassless(s string) ([]watcher.Route, error) {
	f := strings.Fields(s)
	if len(f)%2 != 0 {
		return nil, fmt.Errorf("%q: not destination/gateway pairs", s)
	}
	var out []watcher.Route
	for i := 0; i < len(f); i += 2 {
		p, err := netip.ParsePrefix(f[i])
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f[i], err)
		}
		gw, err := netip.ParseAddr(f[i+1])
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f[i+1], err)
		}
		out = append(out, watcher.Route{Dest: p.Masked(), Gateway: gw})
	}
	return out, nil
}
