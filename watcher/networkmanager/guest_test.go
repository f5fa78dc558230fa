package networkmanager

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// The guest's private system bus: at the default address, so that
// wpa_supplicant, NetworkManager and nmcli need no setting to find it; the
// guest's /run is its own tmpfs.
const guestBus = "unix:path=/run/dbus/system_bus_socket"

// guestBusConf is a system bus that only root may use (everything in the
// guest runs as root).
const guestBusConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>` + guestBus + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny user="*"/>
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`

// guestNMConf: LAB.md §4's settings, and only the station's radio managed
// (the access points' radios live in namespaces of their own anyway).
const guestNMConf = `[main]
plugins=keyfile
dns=none
rc-manager=unmanaged
systemd-resolved=false
hostname-mode=none
auth-polkit=false
no-auto-default=*
[keyfile]
unmanaged-devices=except:interface-name:` + lab.StationIface + `
[logging]
level=INFO
[connectivity]
enabled=false
[device-lab]
match-device=interface-name:` + lab.StationIface + `
managed=1
wifi.scan-rand-mac-address=no
`

// nmProfile is a keyfile connection profile for ap, with a static address
// (no DHCP server in the guest).
func nmProfile(id string, ap *lab.AccessPoint, prio int, addr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[connection]\nid=%s\ntype=wifi\ninterface-name=%s\nautoconnect=true\nautoconnect-priority=%d\n",
		id, lab.StationIface, prio)
	// The SSID as a list of bytes: a keyfile takes any bytes that way.
	ssid := make([]string, len(ap.SSID))
	for i, c := range ap.SSID {
		ssid[i] = fmt.Sprint(c)
	}
	fmt.Fprintf(&b, "[wifi]\nmode=infrastructure\nssid=%s;\n", strings.Join(ssid, ";"))
	switch ap.Security {
	case lab.WifiWPA2:
		fmt.Fprintf(&b, "[wifi-security]\nkey-mgmt=wpa-psk\npsk=%s\n", ap.Passphrase)
	case lab.WifiWPA3:
		fmt.Fprintf(&b, "[wifi-security]\nkey-mgmt=sae\npsk=%s\n", ap.Passphrase)
	}
	fmt.Fprintf(&b, "[ipv4]\nmethod=manual\naddress1=%s\n[ipv6]\nmethod=ignore\n", addr)
	return b.String()
}

// TestRealWifiNetworkManager runs NetworkManager inside the Wi-Fi guest
// (lab.WifiGuest) on a private system bus, driving a real wpa_supplicant
// over D-Bus, with keyfile profiles for a WPA2-PSK "home" and an open
// "cafe": NetworkManager joins home on its own (autoconnect, the higher
// priority), then is told to go to the café. For each, this source (run in
// the guest by the watch probe) must report the SSID bytes, BSSID,
// frequency and security that the nl80211 source reads from the kernel.
func TestRealWifiNetworkManager(t *testing.T) {
	lab.RequireWifi(t)
	for _, c := range []string{"NetworkManager", "nmcli", "dbus-daemon", "unshare"} {
		lab.RequireCommand(t, c)
	}
	l := lab.NewT(t)
	t0 := time.Now()
	bin, err := lab.BuildWatchProbe(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	tBuild := time.Since(t0)
	var (
		home = &lab.AccessPoint{Name: "home", SSID: []byte("home"), Channel: 1, Security: lab.WifiWPA2, Passphrase: "correct horse battery"}
		cafe = &lab.AccessPoint{Name: "cafe", SSID: []byte("caf\xc3\xa9"), Channel: 6, Security: lab.WifiOpen}
	)
	t1 := time.Now()
	g, err := l.StartWifiGuest("nmwifi", 3)
	if err != nil {
		t.Fatal(err)
	}
	tBoot := time.Since(t1)
	if err := g.StartAPs(home, cafe); err != nil {
		t.Fatal(err)
	}
	for _, ap := range []*lab.AccessPoint{home, cafe} {
		t.Logf("AP %-4s %s ch %2d %4d MHz %-4s ssid %q", ap.Name, ap.BSSID, ap.Channel, ap.Frequency, ap.Security, ap.SSID)
	}
	defer func() {
		if t.Failed() {
			out, _ := g.Run(20*time.Second, "export DBUS_SYSTEM_BUS_ADDRESS="+guestBus+
				"; tail -n 60 /run/nm.log; echo ---; tail -n 30 /run/wpa_supplicant.log; echo ---; tail -n 10 /run/dbus.log; "+
				"echo ---; nmcli -f GENERAL,WIFI-PROPERTIES device show wlan0 2>&1 | head -n 30; nmcli device wifi list 2>&1; iw dev wlan0 link")
			t.Logf("guest state:\n%s", out)
		}
	}()

	// The bus, then wpa_supplicant with its D-Bus interface (NetworkManager
	// asks it for wlan0 itself), then NetworkManager in a mount namespace
	// of its own: /sys read-only there (the guest has no udev, and with
	// /sys writable NetworkManager waits for udev to announce devices),
	// its config and state in the guest's tmpfs.
	files := map[string]string{
		"/run/dbus/system.conf":                            guestBusConf,
		"/run/nm/etc/NetworkManager.conf":                  guestNMConf,
		"/run/nm/etc/system-connections/home.nmconnection": nmProfile("home", home, 10, "10.77.1.2/24"),
		"/run/nm/etc/system-connections/cafe.nmconnection": nmProfile("cafe", cafe, 0, "10.77.2.2/24"),
	}
	if _, err := g.Run(10*time.Second, "mkdir -p /run/dbus /run/nm/etc/conf.d /run/nm/etc/system-connections /run/nm/etc/dispatcher.d /run/nm/varlib"); err != nil {
		t.Fatal(err)
	}
	for p, s := range files {
		if err := g.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t2 := time.Now()
	if _, err := g.Run(10*time.Second, `export DBUS_SYSTEM_BUS_ADDRESS=`+guestBus+`
dbus-daemon --config-file=/run/dbus/system.conf --nofork --nopidfile > /run/dbus.log 2>&1 &
i=0; while [ ! -S /run/dbus/system_bus_socket ]; do i=$((i+1)); [ $i -lt 100 ] || { echo no bus; exit 1; }; sleep 0.1; done
wpa_supplicant -u -t > /run/wpa_supplicant.log 2>&1 &
`); err != nil {
		t.Fatal(err)
	}
	busHas := func(name string) string {
		return "timeout 5 dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:" +
			name + " | grep -q 'boolean true'"
	}
	if _, err := g.Poll(20*time.Second, 100*time.Millisecond, "export DBUS_SYSTEM_BUS_ADDRESS="+guestBus+"\n"+busHas("fi.w1.wpa_supplicant1")); err != nil {
		log, _ := g.Run(10*time.Second, "cat /run/dbus.log; echo ---; cat /run/wpa_supplicant.log; ps")
		t.Fatalf("wpa_supplicant not on the bus: %v\n%s", err, log)
	}
	if _, err := g.Run(10*time.Second, `export DBUS_SYSTEM_BUS_ADDRESS=`+guestBus+`
unshare -m sh -c 'mount -o remount,bind,ro /sys && mount --bind /run/nm/etc /etc/NetworkManager &&
mount --bind /run/nm/varlib /var/lib/NetworkManager && mkdir -p /run/NetworkManager &&
exec NetworkManager --no-daemon --config=/etc/NetworkManager/NetworkManager.conf --config-dir=/etc/NetworkManager/conf.d --system-config-dir=/etc/NetworkManager/conf.d' > /run/nm.log 2>&1 &
`); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Poll(30*time.Second, 200*time.Millisecond, "export DBUS_SYSTEM_BUS_ADDRESS="+guestBus+"\n"+busHas("org.freedesktop.NetworkManager")); err != nil {
		log, _ := g.Run(10*time.Second, "tail -n 30 /run/nm.log")
		t.Fatalf("NetworkManager did not come on the guest's bus: %v\n%s", err, log)
	}
	tNM := time.Since(t2)

	p, err := g.StartProbe("probe", bin, "-sources", "nl80211,networkmanager", "-nm-bus", guestBus)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(20*time.Second, 0, func(ls []lab.ProbeLine) bool {
		return seen(ls, "nl80211") && seen(ls, "networkmanager")
	}); err != nil {
		t.Fatal(err)
	}

	// joined waits until both sources report the station on ap, and
	// compares what they say.
	joined := func(t *testing.T, ap *lab.AccessPoint, id, security string) {
		t.Helper()
		tj := time.Now()
		on := func(n lab.ProbeNetwork) bool { return n.BSSID == ap.BSSID }
		ls, err := p.Wait(40*time.Second, 0, func(ls []lab.ProbeLine) bool {
			return anyNet(last(ls, "nl80211"), on) && anyNet(last(ls, "networkmanager"), on)
		})
		if err != nil {
			t.Fatal(err)
		}
		kn, nm := last(ls, "nl80211")[0], last(ls, "networkmanager")[0]
		t.Logf("both sources on %s after %s:\n  nl80211        %+v\n  networkmanager %+v", ap.Name, time.Since(tj).Round(time.Millisecond), kn, nm)
		if !bytes.Equal(nm.SSID(), kn.SSID()) || nm.BSSID != kn.BSSID || nm.Security != kn.Security || nm.Frequency != kn.Frequency ||
			nm.Interface != kn.Interface || nm.Kind != kn.Kind {
			t.Errorf("networkmanager reports %+v (ssid %q), nl80211 %+v (ssid %q)", nm, nm.SSID(), kn, kn.SSID())
		}
		if !bytes.Equal(nm.SSID(), ap.SSID) || nm.BSSID != ap.BSSID || nm.Security != security || nm.Frequency != ap.Frequency ||
			nm.Interface != lab.StationIface || nm.Kind != "wifi" || nm.Connection != id {
			t.Errorf("networkmanager reports %+v (ssid %q); want %s, wifi, ssid %q, bssid %s, %d MHz, %s, connection %s",
				nm, nm.SSID(), lab.StationIface, ap.SSID, ap.BSSID, ap.Frequency, security, id)
		}
	}
	t3 := time.Now()
	t.Run("home-autoconnect", func(t *testing.T) { joined(t, home, "home", "wpa2") })
	tHome := time.Since(t3)
	t4 := time.Now()
	t.Run("cafe", func(t *testing.T) {
		if out, err := g.Run(60*time.Second, "export DBUS_SYSTEM_BUS_ADDRESS="+guestBus+"\nnmcli --wait 40 connection up cafe"); err != nil {
			t.Fatalf("nmcli connection up cafe: %v\n%s", err, out)
		}
		joined(t, cafe, "cafe", "open")
	})
	tCafe := time.Since(t4)
	ls, _ := p.Lines()
	for _, l := range ls {
		if l.T == "log" && strings.Contains(l.Msg, "went away") {
			t.Logf("probe (debug): %s", l.Raw)
		}
		if l.T == "error" || l.T == "unavailable" || l.T == "log" && (l.Level == "WARN" || l.Level == "ERROR") {
			t.Errorf("probe: %s", l.Raw)
		}
	}
	t.Logf("probe built in %s, guest booted in %s, bus+wpa_supplicant+NetworkManager up in %s, home in %s, café in %s; guest time %s, whole test %s",
		tBuild.Round(time.Millisecond), tBoot.Round(time.Millisecond), tNM.Round(time.Millisecond), tHome.Round(time.Millisecond),
		tCafe.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

// last returns the networks of the last "networks" line of source, nil if
// none.
func last(ls []lab.ProbeLine, source string) []lab.ProbeNetwork {
	for i := len(ls) - 1; i >= 0; i-- {
		if ls[i].T == "networks" && ls[i].Source == source {
			return ls[i].Networks
		}
	}
	return nil
}

// seen reports whether ls holds a "networks" line of source.
func seen(ls []lab.ProbeLine, source string) bool {
	for _, l := range ls {
		if l.T == "networks" && l.Source == source {
			return true
		}
	}
	return false
}

// anyNet reports whether one of ns satisfies f.
func anyNet(ns []lab.ProbeNetwork, f func(lab.ProbeNetwork) bool) bool {
	for _, n := range ns {
		if f(n) {
			return true
		}
	}
	return false
}
