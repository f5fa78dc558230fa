package tunnel_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/lab"
)

// daemonLab is the whole product for real: the café runs a DHCP server, the
// laptop gets a lease, roamtun daemon (real watcher, policy, tunnel over
// OpenSSH to roamtun serve, routes, DNS) does the rest.
type daemonLab struct {
	*sshLab
	policyDir string
	sock      string
	daemon    *lab.Proc
}

func startDaemonLab(t *testing.T) *daemonLab {
	t.Helper()
	s := startSSHLab(t, "")
	d := &daemonLab{sshLab: s, policyDir: filepath.Join(s.dir, "networks.d"), sock: filepath.Join(s.dir, "roamtun.sock")}
	os.MkdirAll(d.policyDir, 0o755)
	os.WriteFile(filepath.Join(d.policyDir, "90-default.toml"), []byte("[default]\naction = \"tunnel\"\nprofile = \"home\"\n"), 0o644)
	cfg, _ := os.ReadFile(s.cfg)
	cfg = []byte(strings.Replace(string(cfg), "[daemon]\n", fmt.Sprintf("[daemon]\npolicy_dir = %q\nsocket = %q\nsocket_group = \"root\"\n", d.policyDir, d.sock), 1))
	os.WriteFile(s.cfg, cfg, 0o644)
	// The laptop's link starts unconfigured: its address comes from DHCP.
	for _, c := range [][]string{{"ip", "route", "flush", "table", "main"}, {"ip", "addr", "flush", "dev", "wan0"}} {
		if out, err := s.tri.Laptop.Run(c...); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	if _, err := s.tri.Cafe.StartDHCPServer("lan0", "10.200.1.100", "10.200.1.150", lab.CafeLaptopIP); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *daemonLab) start(t *testing.T) {
	t.Helper()
	p, err := d.tri.Laptop.StartProc(nil, roamtun(t), "daemon", "--config", d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.daemon = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := d.status(t); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not answering; stderr:\n%s", p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemonLab) status(t *testing.T) (daemon.Status, error) {
	t.Helper()
	out, err := d.tri.Laptop.Run(roamtun(t), "status", "--json", "--config", d.cfg)
	if err != nil {
		return daemon.Status{}, err
	}
	var s daemon.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return s, nil
}

func (d *daemonLab) waitState(t *testing.T, want daemon.State, what string) (daemon.Status, time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		s, err := d.status(t)
		if err == nil && s.State == want {
			return s, time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s (%s), want %s; daemon stderr:\n%s", what, s.State, s.Reason, want, tailLines(d.daemon.Stderr(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestDaemonEndToEnd: a DHCP lease on an untrusted network → up; trusting
// it (a policy file pinning the café router's MAC) → direct with routes
// and DNS back; untrusting → up; the network gone → everything restored;
// SIGKILL + restart recovers without duplicate rules; SIGTERM restores.
func TestDaemonEndToEnd(t *testing.T) {
	lab.RequireCommand(t, "dnsmasq")
	d := startDaemonLab(t)
	bare := snapshot(t, d.sshLab)
	d.start(t)
	if s, _ := d.status(t); s.State != daemon.StateIdle {
		t.Errorf("before a lease: %s", s.State)
	}
	// A second client follows every change, as `roamtun notify` does.
	watch, err := d.tri.Laptop.StartProc(nil, roamtun(t), "status", "--json", "--watch", "--config", d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// From the lease on, something on the laptop keeps trying the café
	// directly: the standby firewall must stop it before the daemon has
	// even judged the network.
	mac := macOf(t, d.tri.Laptop, "wan0")
	stop := capture(t, d.tri.Cafe, "lan0")
	pinger, err := d.tri.Laptop.StartProc(nil, "sh", "-c", "while :; do ping -c1 -W1 "+lab.CafeLaptopIP+" >/dev/null 2>&1; sleep 0.01; done")
	if err != nil {
		t.Fatal(err)
	}
	leaseAt := time.Now()
	lease, err := d.tri.Laptop.AcquireLease("wan0", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := d.waitState(t, daemon.StateUp, "lease on an untrusted network")
	syscall.Kill(-pinger.Cmd.Process.Pid, syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	pcap := stop()
	allowed, bad := leaks(t, pcap, mac)
	if len(bad) > 0 {
		t.Errorf("%d frames left the laptop directly between the lease and the tunnel:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	t.Logf("lease → tunnel, pinging the café all along: %d allowed frames (DHCP, ssh, ARP/ND), %d leaked", allowed, len(bad))
	t.Logf("DHCP lease %s → tunnel up in %s (includes the DHCP exchange and the ssh handshake)", lease.Addr, time.Since(leaseAt).Round(time.Millisecond))
	if s.Network == nil || s.Network.Interface != "wan0" || s.Network.Gateway != lab.CafeLaptopIP || s.Network.Action != "tunnel" ||
		s.Tunnel == nil || s.Tunnel.Local != "10.9.0.2" || s.Tunnel.Remote != "10.9.0.1" || len(s.Tunnel.DNS) != 1 {
		b, _ := json.Marshal(s)
		t.Errorf("status while up: %s", b)
	}
	if got := d.tri.Laptop.RouteGet("10.200.2.1"); !strings.Contains(got, "dev roamtun0") {
		t.Errorf("while up: %s", got)
	}
	human, _ := d.tri.Laptop.Run(roamtun(t), "status", "--config", d.cfg)
	if !strings.Contains(human, "state:    up") || !strings.Contains(human, "10.9.0.2 → 10.9.0.1") {
		t.Errorf("status for people:\n%s", human)
	}
	t.Logf("roamtun status:\n%s", human)
	// roamtun networks: the rules, and the network the daemon just judged.
	nets, err := d.tri.Laptop.Run(roamtun(t), "networks", "--config", d.cfg)
	if err != nil || !strings.Contains(nets, "RECENTLY SEEN") || !strings.Contains(nets, "wan0") || !strings.Contains(nets, "tunnel") {
		t.Errorf("roamtun networks: %v\n%s", err, nets)
	}

	// Trust it, then change our mind: roamtun trust / untrust of the
	// current network (wired: pinned by the café router's MAC).
	cafeMAC, _ := d.tri.Cafe.Run("cat", "/sys/class/net/lan0/address")
	cafeMAC = strings.TrimSpace(cafeMAC)
	out, err := d.tri.Laptop.Run(roamtun(t), "trust", "--config", d.cfg)
	if err != nil || !strings.Contains(out, "trusting the wired network of gateway "+cafeMAC) {
		t.Fatalf("roamtun trust: %v\n%s", err, out)
	}
	s, took := d.waitState(t, daemon.StateDirect, "trusted by gateway MAC")
	t.Logf("roamtun trust → direct in %s", took.Round(time.Millisecond))
	if !strings.Contains(s.Network.Rule, cafeMAC) {
		t.Errorf("rule %q", s.Network.Rule)
	}
	if b, _ := os.ReadFile(filepath.Join(d.policyDir, "50-roamtun-cli.toml")); !strings.Contains(string(b), cafeMAC) {
		t.Errorf("managed policy file:\n%s", b)
	}
	if got := d.tri.Laptop.RouteGet("10.200.2.1"); !strings.Contains(got, "via "+lab.CafeLaptopIP+" dev wan0") {
		t.Errorf("direct: %s", got)
	}
	if rules, _ := d.tri.Laptop.Run("ip", "rule"); strings.Contains(rules, "5250") {
		t.Errorf("direct: our rules still there:\n%s", rules)
	}
	if out, err := d.tri.Laptop.Run(roamtun(t), "untrust", "--config", d.cfg); err != nil || !strings.Contains(out, "no longer trusting") {
		t.Fatalf("roamtun untrust: %v\n%s", err, out)
	}
	d.waitState(t, daemon.StateUp, "untrusted again")

	// The watcher saw the story, one JSON object per line.
	var states []string
	for _, line := range strings.Split(strings.TrimSpace(watch.Stdout()), "\n") {
		var st daemon.Status
		if err := json.Unmarshal([]byte(line), &st); err != nil {
			t.Fatalf("status --watch line %q: %v", line, err)
		}
		if len(states) == 0 || states[len(states)-1] != string(st.State) {
			states = append(states, string(st.State))
		}
	}
	if got := strings.Join(states, " "); !strings.Contains(got, "idle connecting up direct") || !strings.HasSuffix(got, "up") {
		t.Errorf("status --watch saw: %s", got)
	}

	// The network goes away.
	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	d.waitState(t, daemon.StateIdle, "lease released")
	if diff := lab.Restored(bare.String(), func() string { return snapshot(t, d.sshLab).whileDaemonRuns().String() }, "roamtun0", 15*time.Second); diff != "" {
		t.Fatalf("network gone: %s", diff)
	}

	// SIGKILL while up, then a new daemon: it undoes the old one's changes
	// and sets up afresh, without duplicates.
	if lease, err = d.tri.Laptop.AcquireLease("wan0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d.waitState(t, daemon.StateUp, "second lease")
	d.daemon.Cmd.Process.Signal(syscall.SIGKILL)
	d.daemon.Wait(10 * time.Second)
	d.start(t)
	d.waitState(t, daemon.StateUp, "restarted after SIGKILL")
	if !strings.Contains(d.daemon.Stderr(), "undid what an earlier run left behind") {
		t.Errorf("the restarted daemon did not report undoing the killed one's changes:\n%s", tailLines(d.daemon.Stderr(), 30))
	}
	for _, fam := range []string{"-4", "-6"} {
		rules, _ := d.tri.Laptop.Run("ip", fam, "rule")
		if strings.Count(rules, "lookup 5250") != 1 {
			t.Errorf("ip %s rule after restart:\n%s", fam, rules)
		}
	}
	// The killed daemon's session lives on at home until its serve sees
	// the ssh session end; until then the home side has two links to the
	// same peer address. Wait for the server side to settle.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := d.tri.Laptop.Run("ping", "-c", "1", "-W", "1", "10.9.0.1")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping through the tunnel after restart: %v\n%s", err, out)
		}
	}

	// SIGTERM: everything back as it was with the lease.
	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	d.waitState(t, daemon.StateIdle, "released again")
	d.daemon.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := d.daemon.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("daemon exit %d %v\n%s", code, err, tailLines(d.daemon.Stderr(), 30))
	}
	if diff := bare.diff(snapshot(t, d.sshLab)); diff != "" {
		t.Fatalf("after stop: not restored:\n%s", diff)
	}
}

// TestNotifyDisconnect: the whole loop through the desktop — roamtun notify
// follows the real daemon, dunst (a real notification server) shows the
// "Tunnel up" bubble, the user picks "Disconnect" in it, and the daemon
// goes direct until the network changes.
func TestNotifyDisconnect(t *testing.T) {
	lab.RequireCommand(t, "dnsmasq")
	d := startDaemonLab(t)
	d.start(t)
	if _, err := d.tri.Laptop.AcquireLease("wan0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d.waitState(t, daemon.StateUp, "lease on an untrusted network")
	desk := lab.StartDesktop(t)
	n := exec.Command(roamtun(t), "notify", "--config", d.cfg)
	n.Env = desk.Env
	var logs lab.SyncBuffer
	n.Stderr = &logs
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	d.lab.Track(n.Process)
	lab.WaitUntil(t, "the Tunnel up bubble", func() bool { return desk.Dunstctl(t, "count", "displayed") == "1" })
	desk.WantMenuEntry("Disconnect")
	desk.Dunstctl(t, "action", "0")
	s, took := d.waitState(t, daemon.StateDirect, "Disconnect clicked")
	if s.Override != "down" {
		t.Errorf("override %q, want down", s.Override)
	}
	t.Logf("Disconnect clicked in dunst → daemon direct in %s; %d Notify calls on the bus", took.Round(time.Millisecond), desk.NotifyCalls())
}
