package tunnel_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/lab"
)

// twoUplinks is the ssh lab with a second uplink: the laptop's eth1 to a
// dock (10.201.1.1), which also routes to the home server. wan0 (the café)
// is the primary (metric 100), eth1 the second (metric 200). The daemon
// watches rtnetlink only (static addresses, no DHCP) and locks down.
func twoUplinks(t *testing.T, policy string) (*daemonLab, *lab.Namespace) {
	t.Helper()
	s := startSSHLab(t, "")
	dock, err := s.lab.Namespace("dock")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.lab.Veth(s.tri.Laptop, "eth1", "10.201.1.2/24", dock, "lan1", "10.201.1.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := s.lab.Veth(dock, "up1", "10.200.3.1/24", s.tri.Home, "eth1", "10.200.3.2/24"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns   *lab.Namespace
		argv []string
	}{
		{s.tri.Laptop, []string{"ip", "route", "replace", "default", "via", lab.CafeLaptopIP, "metric", "100"}},
		{s.tri.Laptop, []string{"ip", "route", "add", "default", "via", "10.201.1.1", "metric", "200"}},
		{dock, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{dock, []string{"ip", "route", "add", "10.200.2.0/24", "via", "10.200.3.2"}},
		{s.tri.Home, []string{"ip", "route", "add", "10.201.1.0/24", "via", "10.200.3.1"}},
		// The neighbours the watcher reads gateway MACs from.
		{s.tri.Laptop, []string{"ping", "-c1", "-W2", lab.CafeLaptopIP}},
		{s.tri.Laptop, []string{"ping", "-c1", "-W2", "10.201.1.1"}},
	} {
		if out, err := c.ns.Run(c.argv...); err != nil {
			t.Fatalf("%v: %v %s", c.argv, err, out)
		}
	}
	d := &daemonLab{sshLab: s, policyDir: filepath.Join(s.dir, "networks.d"), sock: filepath.Join(s.dir, "roamtun.sock")}
	os.MkdirAll(d.policyDir, 0o755)
	policy = strings.ReplaceAll(policy, "%DOCK%", macOf(t, dock, "lan1"))
	os.WriteFile(filepath.Join(d.policyDir, "10-rules.toml"), []byte(policy), 0o644)
	cfg, _ := os.ReadFile(s.cfg)
	cfg = []byte(strings.Replace(string(cfg), "[daemon]\n", fmt.Sprintf("[daemon]\npolicy_dir = %q\nsocket = %q\nsocket_group = \"root\"\nsources = [\"netlink\"]\n",
		d.policyDir, d.sock), 1))
	os.WriteFile(s.cfg, cfg, 0o644)
	d.start(t)
	t.Cleanup(func() { d.daemon.Cmd.Process.Signal(os.Interrupt); d.daemon.Wait(30 * time.Second) })
	return d, dock
}

// uplinkOf returns the status entry of ifname among the uplinks.
func uplinkOf(s daemon.Status, ifname string) *daemon.NetworkStatus {
	for i := range s.Uplinks {
		if s.Uplinks[i].Interface == ifname {
			return &s.Uplinks[i]
		}
	}
	return nil
}

// TestTwoUplinks: every uplink is judged on its own. The café's Wi-Fi
// (primary, untrusted) carries the tunnel, locked down; the office dock's
// Ethernet beside it (trusted by its gateway's MAC) is let out; status
// lists both. With both untrusted, the dock stays closed until the café
// goes away, and then the tunnel moves to it — with nothing leaving the
// dock's link meanwhile but what lockdown allows.
func TestTwoUplinks(t *testing.T) {
	t.Run("one trusted, one not", func(t *testing.T) {
		d, _ := twoUplinks(t, `[[rule]]
name = "office"
interface = "ethernet"
gateway_mac = ["%DOCK%"]
action = "trust"

[default]
action = "tunnel"
profile = "home"
`)
		s, _ := d.waitState(t, daemon.StateUp, "the café is untrusted")
		if s.Network.Interface != "wan0" {
			t.Errorf("the tunnel runs over %s, want the primary wan0", s.Network.Interface)
		}
		if w, e := uplinkOf(s, "wan0"), uplinkOf(s, "eth1"); w == nil || e == nil || w.Action != "tunnel" || e.Action != "trust" {
			t.Errorf("uplinks in status: %+v", s.Uplinks)
		}
		// The trusted dock is open beside the tunnel; the café is not.
		if out, err := d.tri.Laptop.Run("ping", "-c1", "-W3", "-I", "eth1", "10.201.1.1"); err != nil {
			t.Errorf("the trusted uplink is not let out: %v\n%s", err, out)
		}
		if out, err := d.tri.Laptop.Run("ping", "-c1", "-W1", "-I", "wan0", lab.CafeLaptopIP); err == nil {
			t.Errorf("the café got a ping past the lockdown:\n%s", out)
		}
	})

	t.Run("both untrusted: the tunnel moves when the primary goes", func(t *testing.T) {
		d, dock := twoUplinks(t, "[default]\naction = \"tunnel\"\nprofile = \"home\"\n")
		d.waitState(t, daemon.StateUp, "the café is untrusted")
		mac := macOf(t, d.tri.Laptop, "eth1")
		stop := capture(t, dock, "lan1")
		pinger, err := d.tri.Laptop.StartProc(nil, "sh", "-c", "while :; do ping -c1 -W1 -I eth1 10.201.1.1 >/dev/null 2>&1; sleep 0.05; done")
		if err != nil {
			t.Fatal(err)
		}
		// The café goes: wan0 loses its address and default route.
		if out, err := d.tri.Laptop.Run("ip", "addr", "flush", "dev", "wan0"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			s, err := d.status(t)
			if err == nil && s.State == daemon.StateUp && s.Network != nil && s.Network.Interface == "eth1" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the tunnel did not move to eth1: %+v\n%s", s, tailLines(d.daemon.Stderr(), 40))
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The far end hands the new session the peer address once it has
		// evicted the stale one (the café's, whose laptop side vanished).
		if out, err := d.tri.Laptop.Run("ping", "-c1", "-w15", "10.9.0.1"); err != nil {
			t.Errorf("ping through the moved tunnel: %v\n%s", err, out)
		}
		pinger.Cmd.Process.Kill()
		allowed, bad := leaks(t, stop(), mac)
		if len(bad) > 0 {
			t.Errorf("%d frames left the dock's link outside the tunnel:\n%s", len(bad), strings.Join(bad, "\n"))
		}
		if allowed == 0 {
			t.Error("no ssh over the dock's link: the tunnel did not move there")
		}
		t.Logf("the primary went: tunnel over the second uplink, %d allowed frames, 0 leaked", allowed)
	})
}
