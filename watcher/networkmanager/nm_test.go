package networkmanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/lab"
	"github.com/roamtun/roamtun/watcher"
)

// nmLab is real NetworkManager in a laptop namespace on a private system
// bus, getting its lease from dnsmasq in the café (LAB.md §4).
type nmLab struct {
	l      *lab.Lab
	laptop *lab.Namespace
	cafe   *lab.Namespace
	bus    string
	dir    string
	nm     *lab.Proc
}

func startNMLab(t *testing.T, connectivity string) *nmLab {
	t.Helper()
	l := lab.NewT(t)
	for _, c := range []string{"NetworkManager", "nmcli", "dnsmasq", "dbus-daemon", "unshare"} {
		lab.RequireCommand(t, c)
	}
	laptop, cafe, err := l.CafeLink("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cafe.StartDHCPServer("lan0", "10.200.1.100", "10.200.1.150", "10.200.1.1",
		"--dhcp-option=121,0.0.0.0/1,10.200.1.1,128.0.0.0/1,10.200.1.1", "--dhcp-option=option:domain-name,cafe.lab"); err != nil {
		t.Fatal(err)
	}
	m := &nmLab{l: l, laptop: laptop, cafe: cafe, dir: filepath.Join(l.Dir(), "nm")}
	busDir := filepath.Join(l.Dir(), "bus")
	os.MkdirAll(busDir, 0o755)
	sock := filepath.Join(busDir, "system_bus_socket")
	m.bus = "unix:path=" + sock
	os.WriteFile(filepath.Join(busDir, "system.conf"), []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>`+m.bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny user="*"/>
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`), 0o644)
	bus := exec.Command("dbus-daemon", "--config-file="+filepath.Join(busDir, "system.conf"), "--nofork", "--nopidfile")
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	l.Track(bus.Process)
	wait(t, "private system bus", func() bool { _, err := os.Stat(sock); return err == nil })

	for _, d := range []string{"etc/conf.d", "etc/system-connections", "varlib"} {
		os.MkdirAll(filepath.Join(m.dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(m.dir, "etc/NetworkManager.conf"), []byte(`[main]
plugins=keyfile
dns=none
rc-manager=unmanaged
systemd-resolved=false
hostname-mode=none
auth-polkit=false
no-auto-default=*
[logging]
level=INFO
[connectivity]
`+connectivity+`
[device-lab]
match-device=interface-name:wan0
managed=1
`), 0o644)
	os.WriteFile(filepath.Join(m.dir, "etc/system-connections/cafe-wired.nmconnection"), []byte(`[connection]
id=cafe-wired
type=ethernet
interface-name=wan0
autoconnect=true
[ipv4]
method=auto
[ipv6]
method=ignore
`), 0o600)
	m.startNM(t)
	return m
}

// startNM runs NetworkManager in its own mount (and UTS) namespace inside
// the laptop's network namespace: /sys read-only (so it does not wait for
// udev), its own /run, config and state.
func (m *nmLab) startNM(t *testing.T) {
	t.Helper()
	script := "mount -o remount,ro /sys && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/NetworkManager && " +
		"mount --bind " + m.dir + "/etc /etc/NetworkManager && mount --bind " + m.dir + "/varlib /var/lib/NetworkManager && " +
		"exec NetworkManager --no-daemon --config=/etc/NetworkManager/NetworkManager.conf " +
		"--config-dir=/etc/NetworkManager/conf.d --system-config-dir=/etc/NetworkManager/conf.d"
	p, err := m.laptop.StartProc(func(c *exec.Cmd) {
		c.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+m.bus)
	}, "unshare", "--uts", "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	m.nm = p
}

func (m *nmLab) nmcli(t *testing.T, args ...string) string {
	t.Helper()
	c := exec.Command("nmcli", args...)
	c.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+m.bus)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("nmcli %v: %v %s", args, err, out)
	}
	return string(out)
}

func wait(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

// TestRealNetworkManager: connect (DHCP options incl. option 121),
// disconnect, NetworkManager restarting — against the real thing.
func TestRealNetworkManager(t *testing.T) {
	m := startNMLab(t, "enabled=false")
	s := &Source{BusAddress: m.bus}
	var hints atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	wait(t, "NetworkManager on the bus", func() bool {
		c, err := dbus.Connect(m.bus)
		if err != nil {
			return false
		}
		defer c.Close()
		return nmOnBus(c)
	})
	go func() { done <- s.Run(ctx, func() { hints.Add(1) }) }()
	defer func() { cancel(); <-done }()

	wan0 := func() (watcher.Network, bool) {
		ns, err := s.Observe(ctx)
		if err != nil {
			t.Logf("observe: %v", err) // NetworkManager may be between states; ask again
			return watcher.Network{}, false
		}
		for _, n := range ns {
			if n.Interface == "wan0" {
				return n, true
			}
		}
		return watcher.Network{}, false
	}
	took := wait(t, "wan0 connected with a lease", func() bool { n, ok := wan0(); return ok && n.Address.IsValid() })
	t.Logf("NetworkManager connected wan0 in %s after it was on the bus", took.Round(time.Millisecond))
	n, _ := wan0()
	t.Logf("observed: %+v", n)
	if n.Connection != "cafe-wired" || n.Kind != watcher.KindEthernet || len(n.DNS) != 1 || n.DNS[0] != netip.MustParseAddr("10.200.1.1") ||
		n.DHCPServer != netip.MustParseAddr("10.200.1.1") || n.LeaseSeconds != 600 || !strings.HasPrefix(n.Address.String(), "10.200.1.1") ||
		n.Address.Bits() != 24 {
		t.Errorf("observed %+v", n)
	}
	if len(n.ClasslessRoutes) != 2 || !n.TunnelVision || n.Gateway.IsValid() {
		t.Errorf("option 121: routes %v tunnelvision %v gateway %v; want 2 routes covering the default, no gateway from option 3", n.ClasslessRoutes, n.TunnelVision, n.Gateway)
	}
	h := hints.Load()
	m.nmcli(t, "device", "disconnect", "wan0")
	wait(t, "a hint for the disconnect", func() bool { return hints.Load() > h })
	wait(t, "wan0 gone", func() bool { _, ok := wan0(); return !ok })

	h = hints.Load()
	m.nmcli(t, "connection", "up", "cafe-wired")
	wait(t, "a hint for the connection coming up", func() bool { return hints.Load() > h })
	wait(t, "wan0 back", func() bool { n, ok := wan0(); return ok && n.Address.IsValid() })

	// NetworkManager restarts: the source keeps running, sees it leave and
	// come back, and reports the connection again.
	h = hints.Load()
	m.nm.Cmd.Process.Signal(os.Interrupt)
	if _, err := m.nm.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	wait(t, "a hint for NetworkManager leaving", func() bool { return hints.Load() > h })
	if ns, err := s.Observe(ctx); err != nil || len(ns) != 0 {
		t.Errorf("while NetworkManager is away: %+v %v", ns, err)
	}
	h = hints.Load()
	m.startNM(t)
	wait(t, "a hint for NetworkManager returning", func() bool { return hints.Load() > h })
	wait(t, "wan0 reported again", func() bool { n, ok := wan0(); return ok && n.Connection == "cafe-wired" })
	select {
	case err := <-done:
		t.Fatalf("the source stopped: %v", err)
	default:
	}
}

// TestPortal: the café's router redirects plain HTTP to its sign-in page,
// so NetworkManager's connectivity check says PORTAL, and so does the
// source.
func TestPortal(t *testing.T) {
	m := startNMLab(t, "enabled=true\nuri=http://10.200.1.1:8080/check\nresponse=roamtun-ok\ninterval=1")
	var ln net.Listener
	if err := m.cafe.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "10.200.1.1:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://10.200.1.1:8080/signin", http.StatusFound)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	s := &Source{BusAddress: m.bus}
	wait(t, "PORTAL", func() bool {
		ns, _ := s.Observe(context.Background())
		return len(ns) == 1 && ns[0].Connectivity == watcher.ConnectivityPortal
	})
}

// TestDHCPOptionsBadData: wrong variant types and malformed values are
// errors naming the option, never a panic.
func TestDHCPOptionsBadData(t *testing.T) {
	for _, c := range []struct {
		opts map[string]dbus.Variant
		want string
	}{
		{map[string]dbus.Variant{"domain_name_servers": dbus.MakeVariant(uint32(7))}, "domain_name_servers: want a string"},
		{map[string]dbus.Variant{"domain_name_servers": dbus.MakeVariant("10.0.0.1 nope")}, `domain_name_servers: "nope"`},
		{map[string]dbus.Variant{"rfc3442_classless_static_routes": dbus.MakeVariant("0.0.0.0/1")}, "not destination/gateway pairs"},
		{map[string]dbus.Variant{"dhcp_lease_time": dbus.MakeVariant("-1")}, "dhcp_lease_time"},
		{map[string]dbus.Variant{"routers": dbus.MakeVariant("x")}, "routers"},
	} {
		var n watcher.Network
		if err := applyDHCP(&n, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.opts, err, c.want)
		}
	}
	var n watcher.Network
	if err := applyDHCP(&n, map[string]dbus.Variant{"routers": dbus.MakeVariant("10.0.0.1 10.0.0.2"),
		"rfc3442_classless_static_routes": dbus.MakeVariant("10.9.0.0/16 10.0.0.1 0.0.0.0/0 10.0.0.254")}); err != nil {
		t.Fatal(err)
	}
	if n.Gateway != netip.MustParseAddr("10.0.0.254") || n.TunnelVision {
		t.Errorf("with option 121's own default: %+v", n)
	}
}

func TestSecurityFlags(t *testing.T) {
	for _, c := range []struct {
		flags, wpa, rsn uint32
		want            watcher.Security
	}{
		{0, 0, 0, watcher.SecurityOpen},
		{privacy, 0, 0, watcher.SecurityWEP},
		{privacy, keyPSK | 0x8, 0, watcher.SecurityWPA},
		{privacy, 0, keyPSK | 0x8, watcher.SecurityWPA2},
		{privacy, 0, keySAE, watcher.SecurityWPA3},
		{privacy, 0, keyPSK | keySAE, watcher.SecurityWPA2},
		{privacy, 0, key8021X, watcher.Security8021X},
		{0, 0, keyOWE, watcher.SecurityOpen},
	} {
		if got := Security(c.flags, c.wpa, c.rsn); got != c.want {
			t.Errorf("%#x %#x %#x: %s, want %s", c.flags, c.wpa, c.rsn, got, c.want)
		}
	}
}

// TestVanished: an object removed between listing and reading is told
// apart from other failures (GDBus's wording, and the generic error).
func TestVanished(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("/x Type: %w", err) }
	for _, c := range []struct {
		err  error
		want bool
	}{
		{wrap(dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownMethod", Body: []any{"Object does not exist at path “/org/freedesktop/NetworkManager/ActiveConnection/1”"}}), true},
		{wrap(dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownObject", Body: []any{"gone"}}), true},
		{wrap(dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownMethod", Body: []any{"No such interface"}}), false},
		{wrap(dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}), false},
		{errors.New("boom"), false},
		{nil, false},
	} {
		if got := vanished(c.err); got != c.want {
			t.Errorf("vanished(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
