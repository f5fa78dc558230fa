package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/lab"
	"github.com/roamtun/roamtun/policy"
	"github.com/roamtun/roamtun/watcher"
)

// The daemon changes the namespace it runs in, and its goroutines run on any
// thread: so the scenario runs in a copy of this test binary started inside
// the laptop namespace (ip netns exec), the parent building the lab.
const childEnv = "ROAMTUN_DAEMON_LAB_CHILD"

func buildRoamtun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "roamtun")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/roamtun/roamtun/cmd/roamtun").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDaemonLab: the state machine on real routes, rules, firewall, DNS
// and tunnels (the far end is roamtun serve in the home namespace), fed
// Network snapshots as the watcher would send them.
func TestDaemonLab(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		daemonScenario(t)
		return
	}
	l := lab.NewT(t)
	lab.RequireCommand(t, "nft")
	tri, err := l.Triangle()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildRoamtun(t)
	p, err := tri.Laptop.StartProc(func(c *exec.Cmd) {
		c.Env = append(os.Environ(), childEnv+"=1", "ROAMTUN_BIN="+bin, "ROAMTUN_HOME_NS="+tri.Home.Name(),
			"ROAMTUN_RESOLV="+tri.Laptop.ResolvConf())
	}, os.Args[0], "-test.run=^TestDaemonLab$", "-test.v", "-test.count=1")
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10 * time.Minute)
	t.Logf("scenario output:\n%s%s", p.Stdout(), tail(p.Stderr(), 60))
	if err != nil || code != 0 {
		t.Fatalf("scenario failed: exit %d %v", code, err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// sysState is what must come back exactly.
func sysState(t *testing.T) string {
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"}, {"ip", "-br", "link"}, {"nft", "list", "ruleset"},
		{"cat", "/etc/resolv.conf"},
	} {
		b.WriteString(strings.Join(argv, " ") + "\n" + run(t, argv...))
	}
	return b.String()
}

// restored checks the system is back to before (lab.Restored: the tunnel
// device may take a moment longer than the rest).
func restored(t *testing.T, before, what string) {
	t.Helper()
	if d := lab.Restored(before, func() string { return sysState(t) }, "roamtun0", 15*time.Second); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func daemonScenario(t *testing.T) {
	dir := t.TempDir()
	bin, home := os.Getenv("ROAMTUN_BIN"), os.Getenv("ROAMTUN_HOME_NS")
	pol := filepath.Join(dir, "networks.d")
	os.MkdirAll(pol, 0o755)
	os.WriteFile(filepath.Join(pol, "10-home.toml"), []byte(`[[rule]]
name = "home"
interface = "wifi"
ssid = "Home"
security = ["wpa2"]
action = "trust"

[[rule]]
name = "quarantine"
ssid = "Evil*"
action = "block"

[default]
action = "tunnel"
profile = "home"
`), 0o644)
	dial := fmt.Sprintf(`["ip", "netns", "exec", %q, %q, "serve", "--local", "10.9.0.1", "--peer", "10.9.0.2", "--dns", "10.9.0.53"]`, home, bin)
	cfgPath := filepath.Join(dir, "roamtun.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`[daemon]
policy_dir = %q
state_dir = %q
socket = %q
dns = "file"
portal_window = "3s"

[profile.home]
host = %q
dial_command = %s
secrets = %q
require_chap = false
keepalive = "1s"
`, pol, filepath.Join(dir, "state"), filepath.Join(dir, "roamtun.sock"), lab.HomeIP, dial, filepath.Join(dir, "none"))), 0o644)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sys, err := daemon.OpenSystem(cfg.Daemon, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	holder, err := policy.NewHolder(pol, policy.Profiles{"home": ""})
	if err != nil {
		t.Fatal(err)
	}
	nets := make(chan watcher.Network)
	d := daemon.New(daemon.Options{Config: cfg, Host: sys, Policy: holder, Networks: nets, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	before := sysState(t)

	states, unsub := d.Subscribe()
	defer unsub()
	waitState := func(want daemon.State, what string) time.Duration {
		t.Helper()
		start := time.Now()
		timeout := time.After(60 * time.Second)
		for {
			if d.Status().State == want {
				return time.Since(start)
			}
			select {
			case <-states:
			case <-timeout:
				t.Fatalf("%s: state %s, want %s (%s)", what, d.Status().State, want, d.Status().Reason)
			}
		}
	}
	gw := netip.MustParseAddr(lab.CafeLaptopIP)
	cafe := watcher.Network{Interface: "wan0", Kind: watcher.KindWifi, SSID: "Cafe", BSSID: "02:00:00:00:00:01",
		Security: watcher.SecurityOpen, Gateway: gw}
	homeNet := watcher.Network{Interface: "wan0", Kind: watcher.KindWifi, SSID: "Home", BSSID: "02:00:00:00:00:09",
		Security: watcher.SecurityWPA2, Gateway: gw}
	evilTwin := homeNet
	evilTwin.Security = watcher.SecurityOpen // the trusted SSID, open: not trusted

	nets <- cafe
	took := waitState(daemon.StateUp, "untrusted network")
	t.Logf("untrusted network → up in %s", took.Round(time.Millisecond))
	if got := run(t, "ip", "route", "get", "10.200.2.1"); !strings.Contains(got, "dev roamtun0") {
		t.Errorf("while up: %s", got)
	}
	if rc := run(t, "cat", "/etc/resolv.conf"); !strings.Contains(rc, "10.9.0.53") {
		t.Errorf("resolv.conf while up:\n%s", rc)
	}
	s := d.Status()
	if s.Tunnel == nil || s.Tunnel.Local != "10.9.0.2" || s.Network.Rule != policy.DefaultRule || s.Network.Action != "tunnel" {
		t.Errorf("status while up: %+v %+v %+v", s, s.Network, s.Tunnel)
	}
	run(t, "ping", "-c", "2", "-i", "0.2", "-W", "3", "10.9.0.1")
	if st := d.Status(); st.Tunnel.RxBytes == 0 || st.Tunnel.TxBytes == 0 {
		t.Errorf("byte counters not moving: %+v", st.Tunnel)
	}

	nets <- homeNet
	waitState(daemon.StateDirect, "trusted network")
	restored(t, before, "trusted")
	nets <- evilTwin
	waitState(daemon.StateUp, "evil twin (open, trusted SSID)")
	nets <- watcher.Network{}
	waitState(daemon.StateIdle, "network gone")
	restored(t, before, "network gone")
	nets <- watcher.Network{Interface: "wan0", Kind: watcher.KindWifi, SSID: "EvilCorp", Security: watcher.SecurityWPA2, Gateway: gw}
	waitState(daemon.StateBlocked, "block rule")
	if out, err := exec.Command("ping", "-c", "1", "-W", "1", lab.CafeLaptopIP).CombinedOutput(); err == nil {
		t.Errorf("blocked network answered a ping:\n%s", out)
	}

	// A captive portal: direct traffic to sign in, then the tunnel once
	// connectivity is full.
	portal := cafe
	portal.SSID, portal.Connectivity = "Airport", watcher.ConnectivityPortal
	nets <- portal
	waitState(daemon.StatePortal, "captive portal")
	if after := sysState(t); after != before {
		t.Errorf("portal: direct traffic should be allowed (nothing changed):\n%s", after)
	}
	full := portal
	full.Connectivity = watcher.ConnectivityFull
	nets <- full
	waitState(daemon.StateUp, "signed in")
	// The window closes without a sign-in: tunnel (in lockdown) anyway.
	portal.SSID = "Station"
	nets <- portal
	waitState(daemon.StatePortal, "another portal")
	took = waitState(daemon.StateUp, "portal window over")
	t.Logf("portal window (3 s) over → up after %s", took.Round(100*time.Millisecond))

	// Overrides: down on an untrusted network, until it changes.
	nets <- cafe
	waitState(daemon.StateUp, "untrusted again")
	if err := d.Down(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(daemon.StateDirect, "roamtun down")
	if err := d.Up(ctx, ""); err != nil {
		t.Fatal(err)
	}
	waitState(daemon.StateUp, "roamtun up")

	// Roams keep the tunnel; flaps put everything back each time. Nothing
	// may grow.
	runtime.GC()
	time.Sleep(200 * time.Millisecond)
	g0, f0 := runtime.NumGoroutine(), openFDs()
	ups := d.Status().Tunnel.Reconnects
	for i := range 200 {
		n := cafe
		n.BSSID = fmt.Sprintf("02:00:00:00:01:%02x", i%256)
		nets <- n
	}
	if st := d.Status(); st.State != daemon.StateUp || st.Tunnel.Reconnects != ups {
		t.Errorf("200 roams: %s, reconnects %d → %d: the tunnel should have stayed", st.State, ups, st.Tunnel.Reconnects)
	}
	for i := range 200 {
		nets <- cafe
		if i%20 == 0 {
			waitState(daemon.StateUp, "flap")
		} else {
			waitState(daemon.StateConnecting, "flap")
		}
		nets <- watcher.Network{}
		waitState(daemon.StateIdle, "flap gone")
	}
	restored(t, before, "after 200 flaps")
	nets <- cafe
	waitState(daemon.StateUp, "after the flaps")
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	g1, f1 := runtime.NumGoroutine(), openFDs()
	t.Logf("200 roams + 200 flaps: goroutines %d → %d, fds %d → %d", g0, g1, f0, f1)
	if g1 > g0+5 || f1 > f0+3 {
		t.Errorf("growth: goroutines %d → %d, fds %d → %d", g0, g1, f0, f1)
	}
	if rules := run(t, "ip", "rule"); strings.Count(rules, "lookup 5250") != 1 {
		t.Errorf("duplicate rules:\n%s", rules)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d.Status().State != daemon.StateStopped {
		t.Errorf("state after stop: %s", d.Status().State)
	}
	restored(t, before, "stopped")
}
