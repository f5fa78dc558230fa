package tunnel_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// docsRecipe returns the stock pppd + radvd recipe of docs/ipv6.md: the
// pppd options and the ipv6-up.d and ipv6-down.d scripts, as written there
// (the test runs what the reader is told to install).
func docsRecipe(t *testing.T) (pppdOpts, up, down string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "ipv6.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	_, doc, ok := strings.Cut(doc, "## Stock pppd as the far end")
	if !ok {
		t.Fatal("docs/ipv6.md: no section \"Stock pppd as the far end\"")
	}
	// block returns the first fenced block after marker.
	block := func(marker string) string {
		t.Helper()
		_, rest, ok := strings.Cut(doc, marker)
		if !ok {
			t.Fatalf("docs/ipv6.md: no %q in the stock pppd section", marker)
		}
		_, rest, ok = strings.Cut(rest, "```")
		if ok {
			_, rest, ok = strings.Cut(rest, "\n") // the fence's info string
		}
		body, _, ok2 := strings.Cut(rest, "```")
		if !ok || !ok2 {
			t.Fatalf("docs/ipv6.md: no code block after %q", marker)
		}
		return body
	}
	return strings.Join(strings.Fields(block("command line):")), " "),
		block("`/etc/ppp/ipv6-up.d/roamtun`"), block("`/etc/ppp/ipv6-down.d/roamtun`")
}

// TestConnectIPv6ToStockPPPDRadvd: the far end is stock pppd with the
// recipe of docs/ipv6.md — +ipv6, mtu/mru 1280, its ipv6-up.d script
// routing the prefix to the ppp interface and starting radvd there — in a
// user-mode-linux guest (the Wi-Fi kernel: PPP and IPv6 built in) behind
// OpenSSH's forced `pppd notty`. `roamtun connect` (builtin engine, ipv6 =
// "tunnel", mtu = 1280) in a lab namespace gets an address in radvd's
// prefix and its RDNSS server, routes ::/0 through roamtun0 and pings the
// server's address beyond the link; ipv6-down.d stops radvd when the link
// goes, and SIGTERM restores the namespace exactly.
func TestConnectIPv6ToStockPPPDRadvd(t *testing.T) {
	l := lab.NewT(t)
	for _, c := range []string{"pppd", "sshd", "radvd", "run-parts", "ethtool", "xz"} {
		lab.RequireCommand(t, c)
	}
	requireWifiKernel(t)
	pppdOpts, up, down := docsRecipe(t)
	for _, w := range []string{"+ipv6", "mtu 1280", "mru 1280"} {
		if !strings.Contains(pppdOpts, w) {
			t.Fatalf("docs/ipv6.md's pppd options %q lack %q", pppdOpts, w)
		}
	}
	if !strings.Contains(up, "PREFIX="+v6Prefix) || !strings.Contains(up, "RDNSS "+v6DNS) {
		t.Fatalf("docs/ipv6.md's ipv6-up script does not use %s and RDNSS %s:\n%s", v6Prefix, v6DNS, up)
	}
	dir := l.Dir()
	laptop, err := l.Namespace("laptop")
	if err != nil {
		t.Fatal(err)
	}
	upPath := writeFile(t, dir, "ipv6-up", up, 0o755)
	downPath := writeFile(t, dir, "ipv6-down", down, 0o755)
	g := new(lab.WifiGuest).GuestPath // the guest does not exist yet; the mapping is fixed
	// The server: forwarding (radvd refuses to run without), an address
	// beyond the link to ping, the recipe's scripts in place of the
	// host's (empty) ipv6-up.d and ipv6-down.d, run by Debian's
	// /etc/ppp/ipv6-up and ipv6-down through run-parts.
	setup := fmt.Sprintf(`sysctl -qw net.ipv6.conf.all.forwarding=1
ip -6 addr add %s/128 dev lo
mkdir -p /run/ipv6-up.d /run/ipv6-down.d
cp %s /run/ipv6-up.d/roamtun
cp %s /run/ipv6-down.d/roamtun
chmod 755 /run/ipv6-up.d/roamtun /run/ipv6-down.d/roamtun
mount --bind /run/ipv6-up.d /etc/ppp/ipv6-up.d
mount --bind /run/ipv6-down.d /etc/ppp/ipv6-down.d`, v6Far, g(upPath), g(downPath))
	srv := startStockPPPDServer(t, l, laptop, "local nolock lcp-echo-interval 1 lcp-echo-failure 3 "+pppdOpts, setup)
	run(t, laptop, "ip", "route", "add", "default", "via", stockServerIP)
	// Let DAD of the tap's link-local address finish: NetState compares
	// address-derived routes.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := laptop.Run("ip", "-6", "addr", "show", "tentative")
		if strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IPv6 addresses still tentative:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := laptop.Run("ping", "-c", "1", "-W", "5", stockServerIP); err != nil {
		o, _ := srv.g.Run(5*time.Second, "cat /run/sshd.log")
		t.Fatalf("server guest unreachable: %v %s\nsshd:\n%s", err, out, o)
	}
	before := laptop.NetState(t)
	resolvBefore, err := os.ReadFile(laptop.ResolvConf())
	if err != nil {
		t.Fatal(err)
	}

	secrets := writeFile(t, dir, "chap-secrets", goodSecrets, 0o600)
	cfg := writeFile(t, dir, "roamtun.toml", fmt.Sprintf(`[daemon]
state_dir = %q

[profile.home]
host = %q
port = 22
user = "root"
identity_file = %q
known_hosts = %q
secrets = %q
interface = "roamtun0"
ipv6 = "tunnel"
mtu = 1280
keepalive = "5s"
`, filepath.Join(dir, "state"), stockServerIP, srv.clientKey, srv.knownHosts, secrets), 0o644)
	start := time.Now()
	conn, err := laptop.StartProc(nil, roamtun(t), "connect", "--config", cfg, "home")
	if err != nil {
		t.Fatal(err)
	}
	guestLog := func() string {
		out, _ := srv.g.Run(10*time.Second, "cat /run/sshd.log; pidof radvd; ip -6 addr; ip -6 route")
		return out
	}
	upLine, err := conn.WaitOutput(`up: roamtun0 10\.9\.0\.2 -> 10\.9\.0\.1 dns 10\.9\.0\.53 mtu 1280 .*ipv6 2001:db8:77:\S+ dns6 `+v6DNS, 60*time.Second)
	if err != nil {
		t.Fatalf("%v\nconnect stderr:\n%s\nserver:\n%s", err, conn.Stderr(), guestLog())
	}
	t.Logf("%s (%s after start)", upLine, time.Since(start).Round(time.Millisecond))
	if out, _ := laptop.Run("ip", "-6", "-o", "addr", "show", "dev", "roamtun0", "scope", "global"); !strings.Contains(out, "inet6 2001:db8:77:") {
		t.Errorf("roamtun0's global IPv6 address: %q, want one in %s", out, v6Prefix)
	}
	for _, dst := range []string{v6Far, "2001:db8:1::1"} {
		if got := laptop.RouteGet(dst); !strings.Contains(got, "dev roamtun0") || !strings.Contains(got, "src 2001:db8:77:") {
			t.Errorf("route to %s: %s, want dev roamtun0 from the prefix", dst, got)
		}
	}
	if out, _ := laptop.Run("ip", "-6", "route", "show", "table", "all", "default"); !strings.Contains(out, "dev roamtun0") {
		t.Errorf("no ::/0 through roamtun0:\n%s", out)
	}
	if resolv, _ := os.ReadFile(laptop.ResolvConf()); !strings.Contains(string(resolv), "nameserver "+v6DNS) {
		t.Errorf("resolv.conf while up lacks radvd's RDNSS server:\n%s", resolv)
	}
	if out, err := laptop.Run("ping", "-6", "-c", "3", "-i", "0.3", "-W", "5", v6Far); err != nil {
		t.Fatalf("ping -6 %s through the tunnel: %v\n%s\nconnect stderr:\n%s", v6Far, err, out, conn.Stderr())
	}
	// The far end's side: radvd runs on ppp0, whose link-local address is
	// pppd's (IPv6CP), and the prefix is routed to ppp0.
	out := guestRun(t, srv.g, 10*time.Second, `echo "radvd $(pidof radvd)"; ip -6 route show 2001:db8:77::/64; ip -6 -o addr show dev ppp0`)
	for _, w := range []string{"2001:db8:77::/64 dev ppp0", "inet6 fe80::"} {
		if !strings.Contains(out, w) {
			t.Errorf("server lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "radvd \n") {
		t.Errorf("radvd is not running on the server:\n%s", out)
	}

	conn.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := conn.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("connect exit %d (%v); stderr:\n%s", code, err, conn.Stderr())
	}
	if after := laptop.NetState(t); after != before {
		t.Errorf("not restored after SIGTERM:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if resolv, _ := os.ReadFile(laptop.ResolvConf()); string(resolv) != string(resolvBefore) {
		t.Errorf("resolv.conf not restored: %q, was %q", resolv, resolvBefore)
	}
	// pppd sees the link go and runs ipv6-down.d: radvd stops.
	if _, err := srv.g.Poll(30*time.Second, 200*time.Millisecond, `! pidof pppd radvd >/dev/null`); err != nil {
		t.Errorf("pppd or radvd still running on the server after the link went: %v\n%s", err, guestLog())
	}
	if t.Failed() {
		t.Logf("connect stderr:\n%s", conn.Stderr())
	}
}
