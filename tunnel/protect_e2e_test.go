package tunnel_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/internal/route"
	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/lab"
)

// capture records every frame on dev in ns until stop is called; stop
// returns the pcap file.
func capture(t *testing.T, ns *lab.Namespace, dev string) (stop func() string) {
	t.Helper()
	lab.RequireCommand(t, "tcpdump")
	pcap := filepath.Join(t.TempDir(), dev+".pcap")
	// --immediate-mode: every frame is handed over as it comes, so none
	// is still in the kernel's buffer block when the capture stops.
	p, err := ns.StartProc(nil, "tcpdump", "-i", dev, "-nn", "-U", "--immediate-mode", "-s", "256", "-w", pcap)
	if err != nil {
		t.Fatal(err)
	}
	// tcpdump says "listening on" once the capture runs.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.Stderr(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() string {
		// No sleep to "let the last frames arrive": a marker frame sent
		// out of dev now reaches the capture after every frame before it,
		// so once the file holds the marker it holds everything.
		sendMarker(t, ns, dev)
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := exec.Command("tcpdump", "-r", pcap, "-nn", "ether proto 0x88b5").Output()
			if len(strings.TrimSpace(string(out))) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the capture on %s never saw the marker frame", dev)
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.Cmd.Process.Signal(syscall.SIGINT)
		p.Wait(10 * time.Second)
		return pcap
	}
}

// sendMarker sends one broadcast frame of the local experimental
// ethertype 0x88b5 out of dev in ns.
func sendMarker(t *testing.T, ns *lab.Namespace, dev string) {
	t.Helper()
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ifi.HardwareAddr...)
		frame = append(frame, 0x88, 0xb5)
		frame = append(frame, make([]byte, 46)...)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6,
			Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	})
	if err != nil {
		t.Fatalf("marker frame on %s: %v", dev, err)
	}
}

// leaks returns the frames in pcap sent by mac that are not allowed on an
// untrusted link: ssh to the server, DHCP, ARP and neighbour discovery (with
// the MLDv2 reports ND relies on).
func leaks(t *testing.T, pcap, mac string) (allowed int, bad []string) {
	t.Helper()
	const ok = "arp or (tcp and host " + lab.HomeIP + " and port 2222) or (udp and (port 67 or port 68 or port 546 or port 547))" +
		" or (icmp6 and ip6[40] >= 133 and ip6[40] <= 136) or ip6 dst ff02::16"
	read := func(filter string) []string {
		out, err := exec.Command("tcpdump", "-r", pcap, "-nn", "-e", filter).Output()
		if err != nil {
			t.Fatalf("tcpdump -r %s %q: %v", pcap, filter, err)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	return len(read("ether src " + mac + " and (" + ok + ")")), read("ether src " + mac + " and not (" + ok + ")")
}

func macOf(t *testing.T, ns *lab.Namespace, dev string) string {
	t.Helper()
	out, err := ns.Run("cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// addIPv6 gives the café link working global IPv6: the laptop could reach
// the café directly over it, so it is exactly what must not be used.
func addIPv6(t *testing.T, s *sshLab) {
	t.Helper()
	for _, c := range []struct {
		ns   *lab.Namespace
		argv []string
	}{
		{s.tri.Laptop, []string{"sysctl", "-qw", "net.ipv6.conf.wan0.accept_dad=0"}},
		{s.tri.Cafe, []string{"sysctl", "-qw", "net.ipv6.conf.lan0.accept_dad=0"}},
		{s.tri.Laptop, []string{"ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "wan0", "nodad"}},
		{s.tri.Cafe, []string{"ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "lan0", "nodad"}},
		{s.tri.Laptop, []string{"ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"}},
	} {
		if out, err := c.ns.Run(c.argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	// Let duplicate address detection of the link-local addresses finish:
	// the snapshots compare address tables.
	for _, c := range []struct {
		ns  *lab.Namespace
		dev string
	}{{s.tri.Laptop, "wan0"}, {s.tri.Cafe, "lan0"}} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, _ := c.ns.Run("ip", "-6", "addr", "show", "dev", c.dev, "tentative")
			if strings.TrimSpace(out) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("IPv6 addresses on %s still tentative:\n%s", c.dev, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if out, err := s.tri.Laptop.Run("ping", "-6", "-c", "1", "-W", "5", "2001:db8:1::1"); err != nil {
		t.Fatalf("IPv6 on the café link does not work to begin with: %v\n%s", err, out)
	}
}

type sysSnapshot struct {
	net     string
	resolv  []byte
	symlink bool
}

func snapshot(t *testing.T, s *sshLab) sysSnapshot {
	t.Helper()
	fi, err := os.Lstat(s.tri.Laptop.ResolvConf())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.tri.Laptop.ResolvConf())
	if err != nil {
		t.Fatal(err)
	}
	return sysSnapshot{net: s.tri.Laptop.NetState(t), resolv: b, symlink: fi.Mode()&os.ModeSymlink != 0}
}

// standbyRE matches the daemon's standby firewall in `nft list ruleset`.
var standbyRE = regexp.MustCompile(`(?ms)^table inet ` + route.StandbyTable + ` \{.*?^\}\n`)

// whileDaemonRuns leaves out the standby firewall, which lives as long as
// the daemon does (it must be gone once the daemon stops).
func (a sysSnapshot) whileDaemonRuns() sysSnapshot {
	a.net = standbyRE.ReplaceAllString(a.net, "")
	return a
}

// String is the snapshot as text, for lab.Restored.
func (a sysSnapshot) String() string {
	return fmt.Sprintf("%s\nresolv.conf (symlink %v):\n%s", a.net, a.symlink, a.resolv)
}

func (a sysSnapshot) diff(b sysSnapshot) string {
	var d []string
	if a.net != b.net {
		d = append(d, "networking:\nbefore:\n"+a.net+"\nafter:\n"+b.net)
	}
	if string(a.resolv) != string(b.resolv) || a.symlink != b.symlink {
		d = append(d, fmt.Sprintf("resolv.conf: before %q (symlink %v), after %q (symlink %v)", a.resolv, a.symlink, b.resolv, b.symlink))
	}
	return strings.Join(d, "\n")
}

// TestConnectProtects: while up, a far address goes through the TUN and the
// server via the café gateway; DNS points at the tunnel; the café link
// carries only ssh to the server (and ARP/ND); option 121 style routes in
// main change nothing; IPv6 does not leave. SIGTERM restores everything
// exactly.
func TestConnectProtects(t *testing.T) {
	t.Parallel()
	s := startSSHLab(t, "")
	addIPv6(t, s)
	before := snapshot(t, s)
	mac := macOf(t, s.tri.Laptop, "wan0")
	stop := capture(t, s.tri.Cafe, "lan0")

	conn := s.connect(t, "home")
	waitUps(t, conn, 1, 60*time.Second)
	route := func(dst string) string { return s.tri.Laptop.RouteGet(dst) }
	if got := route("10.200.2.1"); !strings.Contains(got, "dev roamtun0") {
		t.Errorf("a far address (the café's other side): %s, want through roamtun0", got)
	}
	if got := route(lab.HomeIP); !strings.Contains(got, "via "+lab.CafeLaptopIP+" dev wan0") {
		t.Errorf("the server: %s, want via the café gateway", got)
	}
	resolv, _ := os.ReadFile(s.tri.Laptop.ResolvConf())
	if !strings.Contains(string(resolv), "nameserver 10.9.0.53") || strings.Contains(string(resolv), "nameserver 10.200.1.1") {
		t.Errorf("resolv.conf while up:\n%s", resolv)
	}
	// Traffic of every sort: through the tunnel, to the café's own
	// addresses, IPv6 on the café link.
	if out, err := s.tri.Laptop.Run("ping", "-c", "3", "-i", "0.2", "-W", "3", "10.9.0.1"); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}
	s.tri.Laptop.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", lab.CafeLaptopIP)
	if out, err := s.tri.Laptop.Run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", "2001:db8:1::1"); err == nil {
		t.Errorf("IPv6 to the café answered while up (ipv6 = block):\n%s", out)
	}
	// TunnelVision: the café's DHCP hands out two /1 routes.
	for _, p := range []string{"0.0.0.0/1", "128.0.0.0/1"} {
		if out, err := s.tri.Laptop.Run("ip", "route", "add", p, "via", lab.CafeLaptopIP); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	if got := route("10.200.2.1"); !strings.Contains(got, "dev roamtun0") {
		t.Errorf("with option 121 routes in main: %s, want still through roamtun0", got)
	}
	if out, err := s.tri.Laptop.Run("ping", "-c", "2", "-i", "0.2", "-W", "3", "10.9.0.1"); err != nil {
		t.Errorf("ping through the tunnel with option 121 routes: %v\n%s", err, out)
	}
	for _, p := range []string{"0.0.0.0/1", "128.0.0.0/1"} {
		s.tri.Laptop.Run("ip", "route", "del", p)
	}
	allowed, bad := leaks(t, stop(), mac)
	if len(bad) > 0 {
		t.Errorf("%d frames left the laptop on the café link outside the tunnel:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	if allowed == 0 {
		t.Error("the capture saw no ssh at all: it did not work")
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

// TestKilledThenCleanup: SIGKILL leaves routes, rules, firewall and DNS in
// place (only the TUN dies with the process); roamtun cleanup puts back
// exactly what was there, and a second cleanup has nothing to do.
func TestKilledThenCleanup(t *testing.T) {
	t.Parallel()
	s := startSSHLab(t, `ipv6 = "tunnel"`)
	addIPv6(t, s)
	// resolv.conf as a symlink, as on most desktops.
	os.WriteFile(filepath.Join(s.dir, "real-resolv.conf"), []byte("# managed elsewhere\nnameserver 10.200.1.1\nsearch cafe.example\n"), 0o644)
	os.Remove(s.tri.Laptop.ResolvConf())
	if err := os.Symlink(filepath.Join(s.dir, "real-resolv.conf"), s.tri.Laptop.ResolvConf()); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	conn := s.connect(t, "home")
	waitUps(t, conn, 1, 60*time.Second)
	during := snapshot(t, s)
	if during.diff(before) == "" {
		t.Fatal("nothing changed while up")
	}
	conn.Cmd.Process.Signal(syscall.SIGKILL)
	conn.Wait(10 * time.Second)
	if d := before.diff(snapshot(t, s)); !strings.Contains(d, "table 5250") {
		t.Fatalf("after SIGKILL our routes should still be there:\n%s", d)
	}
	out, err := s.tri.Laptop.Run(roamtun(t), "cleanup", "--config", s.cfg)
	if err != nil || !strings.Contains(out, "undid") {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	t.Logf("cleanup: %s", strings.TrimSpace(lastLine(out)))
	if d := before.diff(snapshot(t, s)); d != "" {
		t.Fatalf("not restored after SIGKILL + cleanup:\n%s", d)
	}
	if out, err := s.tri.Laptop.Run(roamtun(t), "cleanup", "--config", s.cfg); err != nil || !strings.Contains(out, "nothing to undo") {
		t.Fatalf("second cleanup: %v\n%s", err, out)
	}
}

// TestLockdownNoLeak: the far end is unreachable, so the tunnel never comes
// up; for 30 s the laptop tries to reach the café and the world directly,
// over IPv4 and IPv6, with sockets bound to the café interface too: not one
// frame but ssh to the server, DHCP and ARP/ND leaves it.
func TestLockdownNoLeak(t *testing.T) {
	t.Parallel()
	s := startSSHLab(t, "")
	addIPv6(t, s)
	before := snapshot(t, s)
	s.sshd.Stop() // connection refused, redial forever
	mac := macOf(t, s.tri.Laptop, "wan0")
	conn := s.connect(t, "home")
	// Lockdown starts before the first dial.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(conn.Stderr(), "routes set") {
		if time.Now().After(deadline) {
			t.Fatalf("no routes set; stderr:\n%s", conn.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop := capture(t, s.tri.Cafe, "lan0")
	end := time.Now().Add(30 * time.Second)
	tries := 0
	for time.Now().Before(end) {
		for _, argv := range [][]string{
			{"ping", "-c", "1", "-W", "1", lab.CafeLaptopIP},
			{"ping", "-c", "1", "-W", "1", "10.200.2.1"},
			{"ping", "-c", "1", "-W", "1", "-I", "wan0", lab.CafeLaptopIP},
			{"ping", "-6", "-c", "1", "-W", "1", "2001:db8:1::1"},
			{"ping", "-c", "1", "-W", "1", "-p", "ff", "-s", "64", lab.HomeIP}, // the server, but not ssh
		} {
			if out, err := s.tri.Laptop.Run(argv...); err == nil {
				t.Errorf("%s answered under lockdown:\n%s", strings.Join(argv, " "), out)
			}
			tries++
		}
	}
	allowed, bad := leaks(t, stop(), mac)
	if len(bad) > 0 {
		t.Errorf("%d frames leaked under lockdown:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	t.Logf("lockdown 30 s: %d direct attempts, %d allowed frames (ssh SYNs, ARP/ND), %d leaked", tries, allowed, len(bad))
	if allowed == 0 {
		t.Error("no ssh attempts seen: the capture did not work")
	}
	conn.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := conn.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("connect exit %d (%v); stderr:\n%s", code, err, conn.Stderr())
	}
	if d := before.diff(snapshot(t, s)); d != "" {
		t.Fatalf("not restored:\n%s", d)
	}
}
