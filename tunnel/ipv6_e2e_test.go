package tunnel_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// The far end's IPv6: the prefix serve hands the laptop, and a network
// beyond the server with a host in it.
const (
	v6Prefix = "2001:db8:77::/64"
	v6Far    = "2001:db8:beef::1"
	v6DNS    = "2001:db8:beef::53"
)

// countFrames counts the frames in pcap that match filter.
func countFrames(t *testing.T, pcap, filter string) (int, string) {
	t.Helper()
	out, err := exec.Command("tcpdump", "-r", pcap, "-nn", "-e", filter).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s %q: %v", pcap, filter, err)
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return 0, ""
	}
	return strings.Count(s, "\n") + 1, s
}

// TestIPv6ThroughTunnel: with `serve --prefix6`, the laptop (ipv6 =
// "tunnel") gets an address in the prefix from the far end's router
// advertisement and DNS from its RDNSS, and reaches an IPv6 network beyond
// the server — ping and a TCP transfer, from an address in the prefix —
// while no IPv6 but neighbour discovery leaves on the café link, although
// the café offers working IPv6 of its own. SIGTERM restores everything.
func TestIPv6ThroughTunnel(t *testing.T) {
	t.Parallel()
	s := startSSHLabServe(t, "ipv6 = \"tunnel\"\nmtu = 1280", " --mtu 1280 --prefix6 "+v6Prefix+" --dns6 "+v6DNS)
	addIPv6(t, s)
	// Beyond the server: a network the server forwards to, whose host
	// routes back through it.
	beyond, err := s.lab.Namespace("beyond")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.lab.Veth(s.tri.Home, "v6out", "2001:db8:beef::2/64", beyond, "v6in", v6Far+"/64"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns   *lab.Namespace
		argv []string
	}{
		{s.tri.Home, []string{"sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"}},
		{beyond, []string{"ip", "-6", "route", "add", "default", "via", "2001:db8:beef::2"}},
	} {
		if out, err := c.ns.Run(c.argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	before := snapshot(t, s)
	mac := macOf(t, s.tri.Laptop, "wan0")
	stopCafe := capture(t, s.tri.Cafe, "lan0")
	stopFar := capture(t, beyond, "v6in")

	conn := s.connect(t, "home")
	up, err := conn.WaitOutput(`up: roamtun0 .* ipv6 (2001:db8:77:\S+) dns6 `+v6DNS, 60*time.Second)
	if err != nil {
		b, _ := os.ReadFile(s.sshd.Log)
		t.Fatalf("%v\nconnect stderr:\n%s\nsshd log:\n%s", err, conn.Stderr(), b)
	}
	t.Logf("%s", up)
	if got := s.tri.Laptop.RouteGet(v6Far); !strings.Contains(got, "dev roamtun0") || !strings.Contains(got, "src 2001:db8:77:") {
		t.Errorf("route to %s: %s, want dev roamtun0 from the prefix", v6Far, got)
	}
	if got := s.tri.Laptop.RouteGet("2001:db8:1::1"); !strings.Contains(got, "dev roamtun0") {
		t.Errorf("the café's own IPv6: %s, want through the tunnel too", got)
	}
	resolv, _ := os.ReadFile(s.tri.Laptop.ResolvConf())
	if !strings.Contains(string(resolv), "nameserver "+v6DNS) || !strings.Contains(string(resolv), "nameserver 10.9.0.53") {
		t.Errorf("resolv.conf while up, want both the IPCP and the RDNSS server:\n%s", resolv)
	}
	if out, err := s.tri.Laptop.Run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "5", v6Far); err != nil {
		t.Fatalf("ping -6 %s through the tunnel: %v\n%s", v6Far, err, out)
	}
	d, err := lab.Transfer(s.tri.Laptop, beyond, "["+v6Far+"]:5001", 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("8 MiB over IPv6 through the tunnel, byte-exact, %.0f Mbit/s", 8*8*1.048576/d.Seconds())
	time.Sleep(500 * time.Millisecond) // let the last frames reach the captures

	far := stopFar()
	if n, _ := countFrames(t, far, "ip6 and src net "+v6Prefix+" and dst host "+v6Far); n == 0 {
		t.Error("the far host saw nothing from the prefix")
	}
	if n, l := countFrames(t, far, "ip6 and dst host "+v6Far+" and not src net "+v6Prefix+" and not src net 2001:db8:beef::/64 and not src net fe80::/10"); n > 0 {
		t.Errorf("%d packets reached the far host from outside the prefix:\n%s", n, l)
	}
	cafe := stopCafe()
	allowed, bad := leaks(t, cafe, mac)
	if len(bad) > 0 {
		t.Errorf("%d frames left the laptop on the café link outside the tunnel:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	if n, l := countFrames(t, cafe, "ip6 and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 136) and not dst ff02::16"); n > 0 {
		t.Errorf("%d IPv6 frames (not neighbour discovery) on the café link:\n%s", n, l)
	}
	if n, l := countFrames(t, cafe, "ip6 and (net "+v6Prefix+" or net 2001:db8:beef::/64)"); n > 0 {
		t.Errorf("%d frames of the tunnel's IPv6 on the café link:\n%s", n, l)
	}
	t.Logf("café link while up: %d allowed frames (ssh, ARP/ND), %d others", allowed, len(bad))

	conn.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := conn.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("connect exit %d (%v); stderr:\n%s", code, err, conn.Stderr())
	}
	if d := before.diff(snapshot(t, s)); d != "" {
		t.Fatalf("not restored after SIGTERM:\n%s", d)
	}
}
