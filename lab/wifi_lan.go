package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WifiLAN is one Wi-Fi network behind its access points, inside a Wi-Fi
// guest: the radios of all its access points share a namespace
// "lan-<Name>" where hostapd bridges them (br0) with the router's
// address, so that a station keeps its address when it roams from one
// access point to another, as on a real network with several access
// points. dnsmasq leases addresses on br0; the router forwards to the
// guest's server namespace (WifiServerNS), where ServerIP answers.
type WifiLAN struct {
	Name    string
	NS      string // the namespace in the guest
	Index   int    // 1..200: the LAN is 10.77.<Index>.0/24
	Gateway string // 10.77.<Index>.1, on br0
	MAC     string // br0's (the gateway's) MAC
	APs     []*AccessPoint
}

// Addresses of the guest's server namespace.
const (
	WifiServerNS = "srv"
	WifiServerIP = "10.99.0.1" // on the server namespace's loopback
)

// StartWifiLAN starts the access points aps (each on the next free radio)
// as one network with a DHCP server (dnsmasq: 10.77.<index>.100-150,
// router and DNS server the gateway) and a route to the server namespace
// (created on first use), and waits until every access point beacons.
func (g *WifiGuest) StartWifiLAN(name string, index int, aps ...*AccessPoint) (*WifiLAN, error) {
	if index < 1 || index > 200 {
		return nil, fmt.Errorf("wifi LAN %s: index %d (1..200)", name, index)
	}
	lan := &WifiLAN{Name: name, NS: "lan-" + name, Index: index, Gateway: fmt.Sprintf("10.77.%d.1", index),
		MAC: fmt.Sprintf("02:77:00:00:%02x:01", index), APs: aps}
	var b strings.Builder
	fmt.Fprintf(&b, `set -e
[ -e /run/netns/%[1]s ] || {
	ip netns add %[1]s
	ip -n %[1]s link set lo up
	ip -n %[1]s addr add %[2]s/32 dev lo
}
ip netns add %[3]s
ip -n %[3]s link set lo up
ip -n %[3]s link add br0 address %[4]s type bridge
ip -n %[3]s addr add %[5]s/24 dev br0
ip -n %[3]s link set br0 up
ip netns exec %[3]s sysctl -qw net.ipv4.ip_forward=1
ip link add up0 netns %[3]s type veth peer name lan%[6]d netns %[1]s
ip -n %[3]s addr add 10.78.%[6]d.2/24 dev up0
ip -n %[3]s link set up0 up
ip -n %[3]s route add default via 10.78.%[6]d.1
ip -n %[1]s addr add 10.78.%[6]d.1/24 dev lan%[6]d
ip -n %[1]s link set lan%[6]d up
ip -n %[1]s route add 10.77.%[6]d.0/24 via 10.78.%[6]d.2
ip netns exec %[3]s dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=br0 --bind-interfaces --no-ping --log-dhcp \
	--dhcp-leasefile=/run/%[3]s.leases --pid-file= --dhcp-range=10.77.%[6]d.100,10.77.%[6]d.150,255.255.255.0,10m \
	--dhcp-option=option:router,%[5]s --dhcp-option=option:dns-server,%[5]s > /run/dnsmasq-%[3]s.log 2>&1 &
`, WifiServerNS, WifiServerIP, lan.NS, lan.MAC, lan.Gateway, index)
	if _, err := g.Run(30*time.Second, b.String()); err != nil {
		return nil, fmt.Errorf("wifi LAN %s: %w", name, err)
	}
	if err := g.startAPs(lan.NS, "br0", aps); err != nil {
		return nil, err
	}
	if _, err := g.Poll(20*time.Second, 100*time.Millisecond, "grep -q 'DHCP, IP range' /run/dnsmasq-"+lan.NS+".log"); err != nil {
		log, _ := g.Run(5*time.Second, "cat /run/dnsmasq-"+lan.NS+".log")
		return nil, fmt.Errorf("wifi LAN %s: dnsmasq: %w\n%s", name, err, log)
	}
	return lan, nil
}

// WifiSSHD is OpenSSH's sshd in the guest's server namespace, on
// WifiServerIP:Port, for root with one key whose only use is a forced
// command (in the guest, file capabilities do not survive hostfs, so the
// far end runs as root there). Its files are on the host, in the lab dir.
// The guest's /root becomes an empty tmpfs: root's shell runs the forced
// command, and the host's ~/.bashrc (which bash reads for ssh commands)
// cost seconds per login there.
type WifiSSHD struct {
	Port       int
	ClientKey  string // host path
	KnownHosts string // host path
	Log        string // guest path
}

// StartWifiSSHD runs sshd in the guest's server namespace (which a
// StartWifiLAN has made) with forced as the command of its only key.
func (l *Lab) StartWifiSSHD(g *WifiGuest, port int, forced string) (*WifiSSHD, error) {
	dir := filepath.Join(l.dir, "wifi-sshd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &WifiSSHD{Port: port, ClientKey: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts"),
		Log: "/run/wifi-sshd.log"}
	hostKey, _, ak, err := sshdKeys(dir, "roamtun-wifi", forced, WifiServerIP, port)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(SSHDConfig(port, WifiServerIP, g.GuestPath(hostKey), g.GuestPath(ak),
		"AllowUsers root", "PermitRootLogin prohibit-password")), 0o644); err != nil {
		return nil, err
	}
	if _, err := g.Run(20*time.Second, fmt.Sprintf(`set -e
mkdir -p -m 0755 /run/sshd
mountpoint -q /root || mount -t tmpfs -o mode=0700 roamtun-lab-root /root
ip netns exec %s /usr/sbin/sshd -D -e -f %s > %s 2>&1 &`, WifiServerNS, ShellQuote(g.GuestPath(conf)), s.Log)); err != nil {
		return nil, fmt.Errorf("sshd in the guest: %w", err)
	}
	if _, err := g.Poll(20*time.Second, 100*time.Millisecond,
		fmt.Sprintf("ip netns exec %s ss -Hltn 'sport = :%d' | grep -q .", WifiServerNS, port)); err != nil {
		log, _ := g.Run(5*time.Second, "cat "+s.Log)
		return nil, fmt.Errorf("sshd in the guest not listening: %w\n%s", err, log)
	}
	return s, nil
}

// BuildWifiHelper builds lab/wifihelper (a DHCP client and a checked TCP
// stream for Wi-Fi guests, which have neither) into dir, statically.
func BuildWifiHelper(dir string) (string, error) {
	return BuildStatic(dir, "github.com/roamtun/roamtun/lab/wifihelper")
}
