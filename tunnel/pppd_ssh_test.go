package tunnel_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// TestConnectOverSSHToStockPPPD is the classic setup end to end: the server
// is a user-mode-linux guest (real kernel PPP) on the home network running
// OpenSSH's sshd, whose forced command for the laptop's key is stock
// `pppd notty`; the laptop runs roamtun connect over ssh.
func TestConnectOverSSHToStockPPPD(t *testing.T) {
	l := lab.NewT(t)
	for _, c := range []string{"linux.uml", "pppd", "sshd", "ethtool", "iperf3"} {
		lab.RequireCommand(t, c)
	}
	bin := roamtun(t)
	tri, err := l.Triangle()
	if err != nil {
		t.Fatal(err)
	}
	dir := l.Dir()
	hostKey, clientKey := filepath.Join(dir, "guest_host_key"), filepath.Join(dir, "laptop_key")
	hpub, err := lab.Keygen(hostKey, "guest-host")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := lab.Keygen(clientKey, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	pppd := "/usr/sbin/pppd notty require-chap name server remotename client ms-dns 10.9.0.53 10.9.0.1:10.9.0.2 " +
		"local nolock noipv6 lcp-echo-interval 1 lcp-echo-failure 3 debug logfd 2 ip-up-script /bin/true ip-down-script /bin/true"
	writeFile(t, dir, "authorized_keys", fmt.Sprintf("restrict,command=%q %s\n", pppd, pub), 0o644)
	writeFile(t, dir, "sshd_config", lab.SSHDConfig(22, "10.202.0.2", hostKey, dir+"/authorized_keys",
		"AllowUsers root", "PermitRootLogin forced-commands-only"), 0o644)
	// The guest: network on vec0, root's shell /bin/sh (the host's root has
	// bash, whose rc files would run for every ssh command), its own
	// chap-secrets, then sshd.
	script := fmt.Sprintf(`ip addr add 10.202.0.2/24 dev vec0
ip link set vec0 up
ip route add default via 10.202.0.1
cp /etc/passwd /run/passwd
sed -i 's#^\(root:.*:\)/bin/bash$#\1/bin/sh#' /run/passwd
mount --bind /run/passwd /etc/passwd
printf '%%s' '%s' > /run/chap-secrets
chmod 600 /run/chap-secrets
mount --bind /run/chap-secrets /etc/ppp/chap-secrets
mkdir -p /run/sshd
iperf3 -s -D
/usr/sbin/sshd -D -e -f %s/sshd_config &
echo RT-SSHD-STARTED
while :; do sleep 3600; done
`, goodSecrets, dir)
	tap := l.Prefix() + "tap"
	g, err := l.StartGuestIn(tri.Home, "sshsrv", script, "vec0:transport=tap,ifname="+tap)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := tri.Home.Run("ip", "link", "show", tap); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap %s never appeared; guest:\n%s", tap, g.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range []struct {
		ns   *lab.Namespace
		argv []string
	}{
		{tri.Home, []string{"ip", "addr", "add", "10.202.0.1/24", "dev", tap}},
		{tri.Home, []string{"ip", "link", "set", tap, "up"}},
		// With TSO/GSO on the tap, host→guest TCP crawls (LAB.md §3).
		{tri.Home, []string{"ethtool", "-K", tap, "tso", "off", "gso", "off"}},
		{tri.Home, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{tri.Cafe, []string{"ip", "route", "add", "10.202.0.0/24", "via", lab.HomeIP}},
	} {
		if out, err := c.ns.Run(c.argv...); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	if _, err := g.WaitFor(`RT-SSHD-STARTED`, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	secrets := writeFile(t, dir, "chap-secrets", goodSecrets, 0o600)
	knownHosts := writeFile(t, dir, "known_hosts", "10.202.0.2 "+hpub+"\n", 0o644)
	cfg := writeFile(t, dir, "roamtun.toml", fmt.Sprintf(`[daemon]
state_dir = "`+filepath.Join(dir, "state")+`"

[profile.home]
host = "10.202.0.2"
user = "root"
identity_file = %q
known_hosts = %q
secrets = %q
interface = "roamtun0"
`, clientKey, knownHosts, secrets), 0o644)
	// sshd in the guest may need a moment after it is started.
	var conn *lab.Proc
	for try := 0; ; try++ {
		if conn, err = tri.Laptop.StartProc(nil, bin, "connect", "--config", cfg, "home"); err != nil {
			t.Fatal(err)
		}
		up, err := conn.WaitOutput(`up: roamtun0 10\.9\.0\.2 -> 10\.9\.0\.1 dns 10\.9\.0\.53 mtu 1200 in \S+`, 60*time.Second)
		if err == nil {
			t.Logf("%s", up)
			break
		}
		conn.Cmd.Process.Kill()
		if try == 2 {
			t.Fatalf("%v\nguest:\n%s", err, g.Output())
		}
		time.Sleep(2 * time.Second)
	}
	if out, err := tri.Laptop.Run("ping", "-c", "3", "-i", "0.3", "-W", "3", "10.9.0.1"); err != nil {
		t.Fatalf("ping through PPP over ssh to pppd: %v\n%s", err, out)
	}
	// A bulk transfer through PPP over ssh into the guest's kernel PPP.
	out, err := tri.Laptop.Run("iperf3", "-c", "10.9.0.1", "-t", "3", "-f", "m")
	if err != nil {
		t.Fatalf("iperf3 through the link: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`([\d.]+) Mbits/sec\s+receiver`).FindStringSubmatch(out)
	if m == nil || m[1] == "0.00" {
		t.Fatalf("no data arrived:\n%s", out)
	}
	t.Logf("iperf3 into stock pppd over ssh: %s Mbit/s (user-mode-linux bound)", m[1])
	time.Sleep(3 * time.Second) // pppd's 1 s echo checks keep passing over ssh
	select {
	case <-conn.Done():
		t.Fatalf("connect exited; stderr:\n%s", conn.Stderr())
	default:
	}
	for _, want := range []string{"ssh: rcvd [LCP EchoRep", "ssh: CHAP authentication succeeded",
		"ssh: Protocol-Reject for 'Compression Control Protocol'"} {
		if !strings.Contains(conn.Stderr(), want) {
			t.Errorf("pppd (via ssh stderr) did not log %q", want)
		}
	}
	conn.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := conn.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("connect exit %d (%v); stderr:\n%s", code, err, conn.Stderr())
	}
	if !strings.Contains(conn.Stderr(), "LCP terminated by peer") {
		t.Errorf("pppd did not log the terminate; stderr:\n%s", conn.Stderr())
	}
}
