package tunnel_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// engineLab is a laptop that is a user-mode-linux guest (the Wi-Fi kernel:
// PPP, nftables and policy routing built in, and its timers keep time) on a
// café link (a tap in the café namespace), the café routing to home. The
// laptop runs `roamtun connect` with engine = "pppd": the host kernel has no
// PPP, so pppd and its ppp interface live in the guest.
type engineLab struct {
	l          *lab.Lab
	cafe, home *lab.Namespace
	laptop     *lab.WifiGuest
	bin        string // roamtun, as the guest sees it
}

func startEngineLab(t *testing.T) *engineLab {
	t.Helper()
	l := lab.NewT(t)
	for _, c := range []string{"pppd", "sshd", "ethtool", "nft", "xz"} {
		lab.RequireCommand(t, c)
	}
	requireWifiKernel(t)
	e := &engineLab{l: l}
	var err error
	if e.cafe, err = l.Namespace("cafe"); err != nil {
		t.Fatal(err)
	}
	if e.home, err = l.Namespace("home"); err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(e.cafe, "up0", lab.CafeHomeIP+"/24", e.home, "eth0", lab.HomeIP+"/24"); err != nil {
		t.Fatal(err)
	}
	run(t, e.home, "ip", "route", "add", "default", "via", lab.CafeHomeIP)
	run(t, e.cafe, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	tap := tapFor(t, e.cafe, l.Prefix()+"lap", lab.CafeLaptopIP+"/24")
	if e.laptop, err = l.StartWifiGuestIn(e.cafe, "laptop", 2, "vec0:transport=tap,ifname="+tap); err != nil {
		t.Fatal(err)
	}
	e.bin = e.laptop.GuestPath(roamtun(t))
	// /etc is the host's, read-only: resolv.conf gets a private copy that
	// roamtun may rewrite in place (a bind mount, as in some containers).
	guestRun(t, e.laptop, 30*time.Second, fmt.Sprintf(`ip addr add %s/24 dev vec0
ip link set vec0 up
ip route add default via %s
# The link-local address leaves DAD (and gets its local route) a moment
# later: let it, so that the state compared before and after is settled.
while [ -n "$(ip -6 addr show dev vec0 tentative)" ]; do sleep 0.1; done
cat /etc/resolv.conf > /run/resolv.conf
mount --bind /run/resolv.conf /etc/resolv.conf
mkdir -p /run/state`, lab.LaptopIP, lab.CafeLaptopIP))
	return e
}

// requireWifiKernel skips the test when the Wi-Fi UML kernel is missing
// (fails instead under ROAMTUN_REQUIRE_PRIVILEGED=1).
func requireWifiKernel(t *testing.T) {
	t.Helper()
	if _, err := lab.WifiKernel(); err != nil {
		if os.Getenv("ROAMTUN_REQUIRE_PRIVILEGED") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// tapFor makes a tap in ns, up and addressed, before a guest attaches to
// it (see StartWifiGuestIn).
func tapFor(t *testing.T, ns *lab.Namespace, name, addr string) string {
	t.Helper()
	run(t, ns, "ip", "tuntap", "add", "dev", name, "mode", "tap")
	run(t, ns, "ip", "addr", "add", addr, "dev", name)
	run(t, ns, "ip", "link", "set", name, "up")
	// With TSO/GSO on the tap, host→guest TCP crawls (LAB.md §3).
	run(t, ns, "ethtool", "-K", name, "tso", "off", "gso", "off")
	return name
}

func run(t *testing.T, ns *lab.Namespace, argv ...string) {
	t.Helper()
	if out, err := ns.Run(argv...); err != nil {
		t.Fatalf("%v: %v %s", argv, err, out)
	}
}

func guestRun(t *testing.T, g *lab.WifiGuest, timeout time.Duration, script string) string {
	t.Helper()
	out, err := g.Run(timeout, script)
	if err != nil {
		t.Fatalf("guest %s: %v", g.Name, err)
	}
	return out
}

// profile writes the laptop's config for a server at host:port (paths as
// the guest sees them) and returns its guest path.
func (e *engineLab) profile(t *testing.T, host string, port int, user, key, knownHosts string) string {
	t.Helper()
	dir := e.l.Dir()
	secrets := writeFile(t, dir, "chap-secrets", goodSecrets, 0o600)
	g := e.laptop.GuestPath
	cfg := writeFile(t, dir, "roamtun.toml", fmt.Sprintf(`[daemon]
state_dir = "/run/state"
dns = "file"

[profile.home]
engine = "pppd"
host = %q
port = %d
user = %q
identity_file = %q
known_hosts = %q
secrets = %q
interface = "roamtun0"
keepalive = "1s"
`, host, port, user, g(key), g(knownHosts), g(secrets)), 0o644)
	return g(cfg)
}

// hostState is what must come back exactly after the tunnel: routes and
// rules (v4 and v6), the firewall, resolv.conf.
const hostState = `ip -4 route show table all; ip -6 route show table all; ip -4 rule; ip -6 rule
nft list ruleset; cat /etc/resolv.conf`

// runEngine is the story both far ends must tell: up over pppd with the
// right addresses, traffic through it, the far end killed and the link
// back, SIGTERM putting everything back as it was.
func (e *engineLab) runEngine(t *testing.T, cfg string, killFarEnd func()) {
	g := e.laptop
	before := guestRun(t, g, 30*time.Second, hostState)
	start := time.Now()
	guestRun(t, g, 10*time.Second, fmt.Sprintf(`( sh -c 'echo $$ >/run/connect.pid; exec "$0" "$@"' %s connect --config %s home
  echo "RT-EXIT $?" ) >/run/connect.log 2>&1 </dev/null &`, e.bin, cfg))
	log := func() string { out, _ := g.Run(10*time.Second, "cat /run/connect.log"); return out }
	waitUps := func(n int) time.Duration {
		t.Helper()
		t0 := time.Now()
		if _, err := g.Poll(90*time.Second, 200*time.Millisecond,
			fmt.Sprintf(`[ "$(grep -c '^up: ' /run/connect.log)" -ge %d ]`, n)); err != nil {
			t.Fatalf("%v\nconnect:\n%s", err, log())
		}
		return time.Since(t0)
	}
	waitUps(1)
	t.Logf("up %s after start (guest: dial, ssh, pppd negotiation)", time.Since(start).Round(time.Millisecond))
	out := guestRun(t, g, 10*time.Second, `grep '^up: ' /run/connect.log
ip -4 -o addr show dev roamtun0
echo "type $(cat /sys/class/net/roamtun0/type)"
ip route get 192.0.2.1
cat /etc/resolv.conf`)
	for _, w := range []string{"up: roamtun0 10.9.0.2 -> 10.9.0.1 dns 10.9.0.53 mtu 1200",
		"inet 10.9.0.2 peer 10.9.0.1/32", "type 512", // ARPHRD_PPP: pppd's interface, not a TUN
		"dev roamtun0", "nameserver 10.9.0.53"} {
		if !strings.Contains(out, w) {
			t.Errorf("guest lacks %q:\n%s", w, out)
		}
	}
	ping := func() {
		t.Helper()
		if out, err := g.Run(30*time.Second, "ping -c 3 -i 0.3 -W 3 10.9.0.1"); err != nil {
			t.Fatalf("ping through the link: %v\n%s\nconnect:\n%s", err, out, log())
		}
	}
	ping()
	killFarEnd()
	back := waitUps(2)
	t.Logf("far end killed: link back in %s", back.Round(time.Millisecond))
	ping()
	guestRun(t, g, 10*time.Second, `kill -TERM "$(cat /run/connect.pid)"`)
	if _, err := g.Poll(60*time.Second, 200*time.Millisecond, "grep -q '^RT-EXIT' /run/connect.log"); err != nil {
		t.Fatalf("connect did not exit: %v\n%s", err, log())
	}
	l := log()
	if !strings.Contains(l, "RT-EXIT 0") {
		t.Errorf("connect did not exit 0:\n%s", l)
	}
	for _, w := range []string{"pppd: Using interface", "pppd exited with status", "routes and DNS restored"} {
		if !strings.Contains(l, w) {
			t.Errorf("connect's log lacks %q:\n%s", w, l)
		}
	}
	if after := guestRun(t, g, 30*time.Second, hostState); after != before {
		t.Errorf("not restored exactly:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if t.Failed() {
		t.Logf("connect:\n%s", l)
	}
}

// TestPPPDEngineToServe: engine = "pppd" in the laptop (a UML guest) dials
// the host's OpenSSH sshd, whose forced command is `roamtun serve`.
func TestPPPDEngineToServe(t *testing.T) {
	lab.RequireCommand(t, "setcap")
	e := startEngineLab(t)
	serveBin, err := e.l.CapBinary(roamtun(t))
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, err := lab.EnsureLabUser()
	if err != nil {
		t.Fatal(err)
	}
	srvSecrets := writeFile(t, e.l.Dir(), "server-chap-secrets", goodSecrets, 0o600)
	if err := os.Chown(srvSecrets, uid, gid); err != nil {
		t.Fatal(err)
	}
	sshd, err := e.l.StartSSHD(e.home, lab.HomeIP, 2222, fmt.Sprintf(
		"%s serve --local 10.9.0.1 --peer 10.9.0.2 --dns 10.9.0.53 --require-chap --secrets %s", serveBin, srvSecrets))
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.profile(t, lab.HomeIP, 2222, sshd.User, sshd.ClientKey, sshd.KnownHosts)
	e.runEngine(t, cfg, func() { killServe(t, e.home) })

	// A wrong secret: the far end refuses our CHAP, pppd exits 19, and
	// that is the reason given, in words.
	writeFile(t, e.l.Dir(), "chap-secrets", "client server \"not-the-secret\" *\nserver client \"server-proves-this\" *\n", 0o600)
	out := guestRun(t, e.laptop, 90*time.Second, fmt.Sprintf(`%s connect --once --config %s home 2>&1; echo "RT-EXIT $?"`, e.bin, cfg))
	// The far end's own words (roamtun serve's stderr, through ssh and
	// pppd's log) are the most telling line.
	for _, w := range []string{"pppd exited with status 19: we failed to authenticate ourselves to the far end (pppd: ",
		"authentication failed", "RT-EXIT 1"} {
		if !strings.Contains(out, w) {
			t.Errorf("wrong secret: output lacks %q:\n%s", w, out)
		}
	}
}

// TestPPPDEngineToStockPPPD: pppd at both ends, the classic setup whole —
// the far end is a second guest whose sshd's forced command is stock
// `pppd notty`.
func TestPPPDEngineToStockPPPD(t *testing.T) {
	e := startEngineLab(t)
	run(t, e.home, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, e.cafe, "ip", "route", "add", "10.202.0.0/24", "via", lab.HomeIP)
	srv := startStockPPPDServer(t, e.l, e.home, "local nolock noipv6 lcp-echo-interval 1 lcp-echo-failure 3", "")
	if _, err := e.laptop.Poll(30*time.Second, 200*time.Millisecond, "ping -c 1 -W 2 "+stockServerIP); err != nil {
		out, _ := srv.g.Run(5*time.Second, "cat /run/sshd.log")
		t.Fatalf("server guest unreachable: %v\nsshd:\n%s", err, out)
	}
	cfg := e.profile(t, stockServerIP, 22, "root", srv.clientKey, srv.knownHosts)
	e.runEngine(t, cfg, func() {
		if out, err := srv.g.Run(10*time.Second, `kill -KILL $(pidof pppd)`); err != nil {
			t.Fatalf("killing the far end's pppd: %v %s", err, out)
		}
	})
}

// stockServerIP is the stock pppd server guest's address on its tap; the
// tap's own end (in the namespace the guest runs in) is 10.202.0.1/24.
const stockServerIP = "10.202.0.2"

// stockServer is a Wi-Fi kernel guest whose OpenSSH sshd lets root run
// only stock `pppd notty` (CHAP both ways with goodSecrets, 10.9.0.1 ->
// 10.9.0.2, DNS 10.9.0.53), and the laptop's key and known_hosts for it.
type stockServer struct {
	g                     *lab.WifiGuest
	clientKey, knownHosts string // host paths
}

// startStockPPPDServer boots the server guest in ns on a tap there, with
// pppdOpts appended to pppd's forced command line and setup (a guest
// script) run before sshd starts.
func startStockPPPDServer(t *testing.T, l *lab.Lab, ns *lab.Namespace, pppdOpts, setup string) *stockServer {
	t.Helper()
	dir := l.Dir()
	tap := tapFor(t, ns, l.Prefix()+"srv", "10.202.0.1/24")
	srv, err := l.StartWifiGuestIn(ns, "server", 2, "vec0:transport=tap,ifname="+tap)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, clientKey := filepath.Join(dir, "srv_host_key"), filepath.Join(dir, "laptop_key")
	hpub, err := lab.Keygen(hostKey, "srv-host")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := lab.Keygen(clientKey, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	pppd := "/usr/sbin/pppd notty require-chap name server remotename client ms-dns 10.9.0.53 10.9.0.1:10.9.0.2 " +
		"ip-up-script /bin/true ip-down-script /bin/true " + pppdOpts
	writeFile(t, dir, "authorized_keys", fmt.Sprintf("restrict,command=%q %s\n", pppd, pub), 0o644)
	g := srv.GuestPath
	writeFile(t, dir, "sshd_config", lab.SSHDConfig(22, stockServerIP, g(hostKey), g(filepath.Join(dir, "authorized_keys")),
		"AllowUsers root", "PermitRootLogin forced-commands-only"), 0o644)
	secrets := writeFile(t, dir, "server-chap-secrets", goodSecrets, 0o600)
	// root's shell /bin/sh (bash's rc files would run for every ssh
	// command), the server's chap-secrets, then sshd.
	guestRun(t, srv, 30*time.Second, fmt.Sprintf(`set -e
ip addr add %s/24 dev vec0
ip link set vec0 up
ip route add default via 10.202.0.1
cp /etc/passwd /run/passwd
sed -i 's#^\(root:.*:\)/bin/bash$#\1/bin/sh#' /run/passwd
mount --bind /run/passwd /etc/passwd
cat %s > /run/chap-secrets
chmod 600 /run/chap-secrets
mount --bind /run/chap-secrets /etc/ppp/chap-secrets
%s
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f %s >/run/sshd.log 2>&1 </dev/null &`, stockServerIP, g(secrets), setup, g(filepath.Join(dir, "sshd_config"))))
	knownHosts := writeFile(t, dir, "known_hosts", stockServerIP+" "+hpub+"\n", 0o644)
	return &stockServer{g: srv, clientKey: clientKey, knownHosts: knownHosts}
}
