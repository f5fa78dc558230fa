package tunnel_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/lab"
)

// The captive-portal lab: the probe's host resolves (through the café's
// DNS, as DHCP says) to an address out in the world, where a check server
// gives NetworkManager's answer; until the user "signs in", the café router
// DNATs every HTTP connection from the laptop to its own portal server,
// which answers everything with a 302 to its sign-in page.
const (
	checkHost  = "check.portal.test"
	checkIP    = "203.0.113.80"
	portalPort = 8080
	portalPage = "http://" + lab.CafeLaptopIP + ":8080/portal"
	interceptT = "roamtun_test_portal"
)

type portalCafe struct {
	dnsQueries  atomic.Int32
	portalHits  atomic.Int32 // answered with the redirect
	portalPages atomic.Int32 // the sign-in page itself (the probe must never fetch it)
	checkHits   atomic.Int32
}

// serveIn listens on addr inside ns and serves h until the test ends.
func serveIn(t *testing.T, ns *lab.Namespace, addr string, h http.Handler) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// dnsIn answers every A query on addr (UDP, inside ns) with ip.
func dnsIn(t *testing.T, ns *lab.Namespace, addr, ip string, count *atomic.Int32) {
	t.Helper()
	var c net.PacketConn
	if err := ns.Do(func() (err error) { c, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := [4]byte(net.ParseIP(ip).To4())
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			count.Add(1)
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
				continue
			}
			m.Header.Response, m.Header.RecursionAvailable = true, true
			if m.Questions[0].Type == dnsmessage.TypeA {
				m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name,
					Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5}, Body: &dnsmessage.AResource{A: a}}}
			}
			out, _ := m.Pack()
			c.WriteTo(out, from)
		}
	}()
}

func startPortalCafe(t *testing.T, d *daemonLab) *portalCafe {
	t.Helper()
	pc := &portalCafe{}
	// The world's check server, behind home.
	for _, c := range []struct {
		ns   *lab.Namespace
		argv []string
	}{
		{d.tri.Home, []string{"ip", "addr", "add", checkIP + "/32", "dev", "lo"}},
		{d.tri.Cafe, []string{"ip", "route", "add", checkIP + "/32", "via", lab.HomeIP}},
	} {
		if out, err := c.ns.Run(c.argv...); err != nil {
			t.Fatalf("%v: %v %s", c.argv, err, out)
		}
	}
	serveIn(t, d.tri.Home, checkIP+":80", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pc.checkHits.Add(1)
		w.Write([]byte("NetworkManager is online\n"))
	}))
	// The café: its DNS and its portal.
	dnsIn(t, d.tri.Cafe, lab.CafeLaptopIP+":53", checkIP, &pc.dnsQueries)
	serveIn(t, d.tri.Cafe, lab.CafeLaptopIP+":"+strconv.Itoa(portalPort), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/portal" {
			pc.portalPages.Add(1)
			w.Write([]byte("<html><form>Accept the terms</form></html>"))
			return
		}
		pc.portalHits.Add(1)
		http.Redirect(w, r, portalPage, http.StatusFound)
	}))
	script := filepath.Join(t.TempDir(), "intercept.nft")
	os.WriteFile(script, fmt.Appendf(nil, "table ip %s {\n  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n"+
		"    iifname \"lan0\" tcp dport 80 dnat to %s:%d\n  }\n}\n", interceptT, lab.CafeLaptopIP, portalPort), 0o644)
	if out, err := d.tri.Cafe.Run("nft", "-f", script); err != nil {
		t.Fatalf("café interception: %v %s", err, out)
	}
	return pc
}

// TestPortalWithoutNetworkManager: no NetworkManager; the daemon's own
// portal probe (sources netlink, dhcp, portal) finds the café's captive
// portal through the standby firewall: state portal with the portal's
// address for "Sign in"; once the café stops intercepting (the user signed
// in) a re-probe gets the real answer, the state leaves portal and the
// tunnel comes up over ssh. The café's capture shows, before the portal's
// first answer and again once ssh starts, nothing from the laptop but
// DHCP, ARP/ND, the probe's DNS query and HTTP, and ssh to the server —
// although something on the laptop pings the café all along (in the
// portal window in between, direct traffic is allowed, by design).
func TestPortalWithoutNetworkManager(t *testing.T) {
	lab.RequireCommand(t, "dnsmasq")
	lab.RequireCommand(t, "nft")
	d := startDaemonLab(t)
	cfg, _ := os.ReadFile(d.cfg)
	cfg = []byte(strings.Replace(string(cfg), "[daemon]\n", fmt.Sprintf("[daemon]\nsources = [\"netlink\", \"dhcp\", \"portal\"]\n"+
		"portal_probe = \"http://%s/check_network_status.txt\"\n", checkHost), 1))
	if err := os.WriteFile(d.cfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	pc := startPortalCafe(t, d)
	d.start(t)
	mac := macOf(t, d.tri.Laptop, "wan0")
	stop := capture(t, d.tri.Cafe, "lan0")
	pinger, err := d.tri.Laptop.StartProc(nil, "sh", "-c", "while :; do ping -c1 -W1 "+lab.CafeLaptopIP+" >/dev/null 2>&1; sleep 0.05; done")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.tri.Laptop.AcquireLease("wan0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s, took := d.waitState(t, daemon.StatePortal, "a café that intercepts HTTP")
	t.Logf("lease → state portal in %s: %s", took.Round(time.Millisecond), s.Reason)
	if s.Network == nil || s.Network.Connectivity != "portal" || s.Network.PortalURL != portalPage {
		t.Errorf("status in the portal: %+v", s.Network)
	}
	human, _ := d.tri.Laptop.Run(roamtun(t), "status", "--config", d.cfg)
	if !strings.Contains(human, "sign in:  "+portalPage) {
		t.Errorf("roamtun status does not say where to sign in:\n%s", human)
	}

	// The user signs in: the café stops intercepting.
	if out, err := d.tri.Cafe.Run("nft", "delete", "table", "ip", interceptT); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	s, took = d.waitState(t, daemon.StateUp, "signed in")
	t.Logf("interception removed → tunnel up in %s (the re-probe backs off from 2 s)", took.Round(time.Millisecond))
	if s.Network.Connectivity != "full" || s.Network.PortalURL != "" || s.Tunnel == nil || s.Tunnel.Local != "10.9.0.2" {
		t.Errorf("status when up: %+v %+v", s.Network, s.Tunnel)
	}
	// Let the pinger try through the lockdown for a while.
	time.Sleep(time.Second)
	syscall.Kill(-pinger.Cmd.Process.Pid, syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	pcap := stop()

	if pc.dnsQueries.Load() == 0 || pc.portalHits.Load() == 0 || pc.checkHits.Load() == 0 {
		t.Errorf("café DNS queries %d, portal redirects %d, real check answers %d: want each ≥ 1",
			pc.dnsQueries.Load(), pc.portalHits.Load(), pc.checkHits.Load())
	}
	if n := pc.portalPages.Load(); n != 0 {
		t.Errorf("the sign-in page was fetched %d times: the probe follows redirects", n)
	}
	checkPortalCapture(t, pcap, mac)
}

// checkPortalCapture reads the café's capture in three phases: up to the
// portal's first answer to the probe, and from the first ssh packet on,
// the laptop sends nothing but what is allowed; in between (the sign-in
// window) the pings get out.
func checkPortalCapture(t *testing.T, pcap, mac string) {
	t.Helper()
	const ok = "arp or (udp and (port 67 or port 68)) or (udp and dst host " + lab.CafeLaptopIP + " and dst port 53)" +
		" or (tcp and host " + checkIP + " and port 80) or (tcp and host " + lab.HomeIP + " and port 2222)" +
		" or (icmp6 and ip6[40] >= 133 and ip6[40] <= 136) or ip6 dst ff02::16"
	type frame struct {
		at   float64
		line string
	}
	read := func(filter string) []frame {
		out, err := exec.Command("tcpdump", "-r", pcap, "-nn", "-e", "-tt", filter).Output()
		if err != nil {
			t.Fatalf("tcpdump -r %s %q: %v", pcap, filter, err)
		}
		var fs []frame
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l == "" {
				continue
			}
			at, err := strconv.ParseFloat(strings.Fields(l)[0], 64)
			if err != nil {
				t.Fatalf("tcpdump line %q: %v", l, err)
			}
			fs = append(fs, frame{at, l})
		}
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].at < fs[j].at })
		return fs
	}
	// The portal's first answer to the probe (data from the "world"
	// address on port 80), and the first packet of ssh to the server.
	answers := read("src host " + checkIP + " and tcp src port 80 and (tcp[tcpflags] & tcp-push != 0)")
	sshs := read("ether src " + mac + " and tcp and dst host " + lab.HomeIP + " and dst port 2222")
	if len(answers) == 0 || len(sshs) == 0 {
		t.Fatalf("capture: %d probe answers, %d ssh packets", len(answers), len(sshs))
	}
	opened, closed := answers[0].at, sshs[0].at
	allowed := read("ether src " + mac + " and (" + ok + ")")
	var bad []string
	inWindow := 0
	for _, f := range read("ether src " + mac + " and not (" + ok + ")") {
		switch {
		case f.at < opened:
			bad = append(bad, "before the verdict: "+f.line)
		case f.at > closed:
			bad = append(bad, "after ssh started: "+f.line)
		default:
			inWindow++
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d frames left the laptop outside the probe, DHCP, ARP/ND and ssh:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	if inWindow == 0 {
		t.Errorf("no ping got out during the sign-in window: the capture or the pinger is not working")
	}
	t.Logf("café capture: %d allowed frames (DHCP, ARP/ND, probe DNS/HTTP, ssh), %d direct frames in the sign-in window only, %d leaked",
		len(allowed), inWindow, len(bad))
}
