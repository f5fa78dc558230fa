package daemon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/internal/route"
	"github.com/roamtun/roamtun/lab"
)

// wifiLab is roamtun daemon running inside a user-mode-linux guest with
// simulated 802.11 (mac80211_hwsim): real hostapd access points bridged
// into one LAN per network (dnsmasq behind them), a real wpa_supplicant
// station (wlan0, the laptop), and the home server (OpenSSH + roamtun
// serve) in a server namespace of the guest that every LAN routes to.
type wifiLab struct {
	t      *testing.T
	g      *lab.WifiGuest
	bin    string // the roamtun binary, guest path
	helper string // wifihelper, guest path
	cfg    string // guest path
	scan   []int
}

const wifiDaemonLog = "/run/roamtun-daemon.log"

func (w *wifiLab) run(timeout time.Duration, script string) string {
	w.t.Helper()
	out, err := w.g.Run(timeout, script)
	if err != nil {
		w.t.Fatalf("%s: %v", firstLineOf(script), err)
	}
	return out
}

func firstLineOf(s string) string { s, _, _ = strings.Cut(s, "\n"); return s }

func (w *wifiLab) status() (daemon.Status, error) {
	out, err := w.g.Run(20*time.Second, w.bin+" status --json --config "+w.cfg)
	if err != nil {
		return daemon.Status{}, err
	}
	var s daemon.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("status --json: %v: %q", err, out)
	}
	return s, nil
}

func (w *wifiLab) daemonLog() string {
	out, _ := w.g.Run(10*time.Second, "cat "+wifiDaemonLog)
	return out
}

// waitState polls the daemon's status until ok accepts it.
func (w *wifiLab) waitState(what string, ok func(daemon.Status) bool) (daemon.Status, time.Duration) {
	w.t.Helper()
	start := time.Now()
	for {
		s, err := w.status()
		if err == nil && ok(s) {
			return s, time.Since(start)
		}
		if time.Since(start) > 60*time.Second {
			b, _ := json.Marshal(s)
			w.t.Fatalf("%s: status %s (%v)\ndaemon log:\n%s", what, b, err, tailOf(w.daemonLog(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func state(want daemon.State) func(daemon.Status) bool {
	return func(s daemon.Status) bool { return s.State == want }
}

func tailOf(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// standbyTableRE matches the daemon's standby firewall, which lives as long
// as the daemon does.
var standbyTableRE = regexp.MustCompile(`(?ms)^table inet ` + route.StandbyTable + ` \{.*?^\}\n`)

// netState is the laptop's routes, rules and firewall (the standby table
// left out), in the guest's initial namespace.
func (w *wifiLab) netState() string {
	w.t.Helper()
	out := w.run(20*time.Second, `for c in "ip -4 route show table all" "ip -6 route show table all" "ip -4 rule" "ip -6 rule" "nft list ruleset"; do
echo "\$ $c"; $c; done; echo "\$ resolv.conf"; cat /etc/resolv.conf`)
	return kernelRouteRE.ReplaceAllString(standbyTableRE.ReplaceAllString(out, ""), "")
}

// kernelRouteRE matches the kernel's own routes of the Wi-Fi link (IPv6
// multicast and link-local), which come with its first carrier and stay.
var kernelRouteRE = regexp.MustCompile(`(?m)^.* dev ` + lab.StationIface + ` .*proto kernel.*\n`)

// join associates with ap, takes a DHCP lease and returns the wpa_supplicant
// status.
func (w *wifiLab) join(ap *lab.AccessPoint, pin string) map[string]string {
	w.t.Helper()
	st, err := w.g.Associate(ap, pin, w.scan, 30*time.Second)
	if err != nil {
		w.t.Fatal(err)
	}
	out := w.run(40*time.Second, w.helper+" dhcp "+lab.StationIface)
	w.t.Logf("joined %q at %s (%s): %s", ap.SSID, st["bssid"], ap.Security, strings.TrimSpace(out))
	return st
}

// leave drops the address and disassociates (as NetworkManager does on a
// disconnect), waits for idle and checks everything is as before.
func (w *wifiLab) leave(before string) {
	w.t.Helper()
	w.run(20*time.Second, "ip addr flush dev "+lab.StationIface+"; wpa_cli -p /run/wpa_supplicant -i "+lab.StationIface+" disconnect >/dev/null")
	_, took := w.waitState("left the network", state(daemon.StateIdle))
	if d := lab.Restored(before, w.netState, "roamtun0", 15*time.Second); d != "" {
		w.t.Errorf("left the network: %s", d)
	} else {
		w.t.Logf("left: idle in %s; routes, rules, nftables and resolv.conf identical to before", took.Round(time.Millisecond))
	}
}

// roam roams to ap and returns how long wpa_supplicant took, by its own
// log: from trying to authenticate with the new access point to the
// connection completed.
func (w *wifiLab) roam(to *lab.AccessPoint) time.Duration {
	w.t.Helper()
	mark := w.run(10*time.Second, "wc -l < /run/wpa_supplicant.log")
	if _, err := w.g.WPACli("roam", to.BSSID); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.g.WaitWPA(20*time.Second, func(st map[string]string) bool {
		return st["wpa_state"] == "COMPLETED" && st["bssid"] == to.BSSID
	}); err != nil {
		w.t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(mark))
	log := w.run(10*time.Second, fmt.Sprintf("tail -n +%d /run/wpa_supplicant.log", n+1))
	var from, to2 float64
	for _, l := range strings.Split(log, "\n") {
		ts, rest, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		switch {
		case from == 0 && strings.Contains(rest, "authenticate with "+to.BSSID):
			from = v
		case strings.Contains(rest, "CTRL-EVENT-CONNECTED") && strings.Contains(rest, to.BSSID):
			to2 = v
		}
	}
	if from == 0 || to2 == 0 {
		w.t.Logf("wpa_supplicant's log of the roam:\n%s", log)
		return 0
	}
	return time.Duration((to2 - from) * float64(time.Second))
}

// watchLines returns the states `roamtun status --watch` printed from line
// from on, and how many lines there are.
func (w *wifiLab) watchLines(from int) ([]daemon.Status, int) {
	w.t.Helper()
	out := w.run(10*time.Second, "cat /run/status-watch.out")
	var ss []daemon.Status
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[min(from, len(lines)):] {
		var s daemon.Status
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			w.t.Fatalf("status --watch line %q: %v", l, err)
		}
		ss = append(ss, s)
	}
	return ss, len(lines)
}

func statesOf(ss []daemon.Status) string {
	var out []string
	for _, s := range ss {
		if len(out) == 0 || out[len(out)-1] != string(s.State) {
			out = append(out, string(s.State))
		}
	}
	return strings.Join(out, " ")
}

// TestDaemonRealWifi: roamtun daemon against real 802.11 in a guest. Home
// (WPA2, SSID "home", two access points, pinned by BSSID) → direct, and a
// roam between its access points keeps it direct; a café (open, two access
// points) → tunnel up, and a roam between them with an inner TCP stream
// flowing keeps the same tunnel (no redial) and the stream byte-exact; an
// evil twin (SSID "home", open, another BSSID) → tunnel. Leaving each
// network → idle with routes, rules, firewall and resolv.conf as before.
func TestDaemonRealWifi(t *testing.T) {
	lab.RequireWifi(t)
	for _, c := range []string{"dnsmasq", "sshd", "nft"} {
		lab.RequireCommand(t, c)
	}
	l := lab.NewT(t)
	t0 := time.Now()
	host, err := lab.BuildStatic(l.Dir(), "github.com/roamtun/roamtun/cmd/roamtun")
	if err != nil {
		t.Fatal(err)
	}
	helper, err := lab.BuildWifiHelper(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	tBuild := time.Since(t0)
	const pass = "correct horse battery"
	var (
		homeA = &lab.AccessPoint{Name: "home-a", SSID: []byte("home"), Channel: 1, Security: lab.WifiWPA2, Passphrase: pass}
		homeB = &lab.AccessPoint{Name: "home-b", SSID: []byte("home"), Channel: 6, Security: lab.WifiWPA2, Passphrase: pass}
		cafeA = &lab.AccessPoint{Name: "cafe-a", SSID: []byte("cafe"), Channel: 11, Security: lab.WifiOpen}
		cafeB = &lab.AccessPoint{Name: "cafe-b", SSID: []byte("cafe"), Channel: 1, Security: lab.WifiOpen}
		twin  = &lab.AccessPoint{Name: "twin", SSID: []byte("home"), Channel: 6, Security: lab.WifiOpen}
	)
	t1 := time.Now()
	g, err := l.StartWifiGuest("wifi", 6)
	if err != nil {
		t.Fatal(err)
	}
	w := &wifiLab{t: t, g: g, bin: g.GuestPath(host), helper: g.GuestPath(helper), scan: []int{2412, 2437, 2462}}
	defer func() {
		if t.Failed() {
			out, _ := g.Run(10*time.Second, "tail -n 30 /run/wpa_supplicant.log; tail -n 20 /run/wifi-sshd.log; iw dev; ip addr; ip route")
			t.Logf("guest state:\n%s\ndaemon log:\n%s", out, tailOf(w.daemonLog(), 60))
		}
	}()
	var lans []*lab.WifiLAN
	for i, n := range []struct {
		name string
		aps  []*lab.AccessPoint
	}{{"home", []*lab.AccessPoint{homeA, homeB}}, {"cafe", []*lab.AccessPoint{cafeA, cafeB}}, {"twin", []*lab.AccessPoint{twin}}} {
		lan, err := g.StartWifiLAN(n.name, i+1, n.aps...)
		if err != nil {
			t.Fatal(err)
		}
		lans = append(lans, lan)
		for _, ap := range n.aps {
			t.Logf("LAN %-4s gateway %s: AP %-6s %s ch %2d %-4s ssid %q", lan.Name, lan.Gateway, ap.Name, ap.BSSID, ap.Channel, ap.Security, ap.SSID)
		}
	}
	tLab := time.Since(t1)

	// The far end: sshd in the guest's server namespace, roamtun serve as
	// the forced command.
	const secrets = "client server \"laptop-proves-this\" *\nserver client \"server-proves-this\" *\n"
	dir := l.Dir()
	for _, f := range []string{"server-chap-secrets", "chap-secrets"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(secrets), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sshd, err := l.StartWifiSSHD(g, 2222, fmt.Sprintf("%s serve --local 10.9.0.1 --peer 10.9.0.2 --dns 10.9.0.53 --require-chap --secrets %s",
		w.bin, g.GuestPath(filepath.Join(dir, "server-chap-secrets"))))
	if err != nil {
		t.Fatal(err)
	}
	policyDir := filepath.Join(dir, "networks.d")
	if err := os.MkdirAll(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policyDir, "10-home.toml"), []byte(fmt.Sprintf(`[[rule]]
name     = "home"
interface = "wifi"
ssid     = "home"
bssid    = [%q, %q]
security = ["wpa2"]
action   = "trust"

[default]
action  = "tunnel"
profile = "home"
`, homeA.BSSID, homeB.BSSID)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "roamtun.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`[daemon]
policy_dir   = %q
state_dir    = "/run/roamtun-state"
socket       = "/run/roamtun.sock"
socket_group = "root"
dns          = "file"
sources      = ["nl80211", "netlink", "dhcp"]

[profile.home]
host          = %q
port          = 2222
user          = "root"
identity_file = %q
known_hosts   = %q
secrets       = %q
interface     = "roamtun0"
keepalive     = "5s"
`, g.GuestPath(policyDir), lab.WifiServerIP, g.GuestPath(sshd.ClientKey), g.GuestPath(sshd.KnownHosts),
		g.GuestPath(filepath.Join(dir, "chap-secrets")))), 0o644); err != nil {
		t.Fatal(err)
	}
	w.cfg = g.GuestPath(cfg)
	if out, err := g.Run(20*time.Second, w.bin+" check --config "+w.cfg); err != nil {
		t.Fatalf("roamtun check: %v\n%s", err, out)
	}
	// The guest's / is the host's, read-only: resolv.conf gets a private,
	// writable copy (the daemon's file backend rewrites it in place).
	w.run(10*time.Second, "cp /etc/resolv.conf /run/resolv.conf.lab && mount --bind /run/resolv.conf.lab /etc/resolv.conf")
	if err := g.StartStation(); err != nil {
		t.Fatal(err)
	}
	bare := w.netState()
	w.run(10*time.Second, fmt.Sprintf("%s daemon --config %s > %s 2>&1 &", w.bin, w.cfg, wifiDaemonLog))
	w.waitState("daemon start", state(daemon.StateIdle))
	w.run(10*time.Second, fmt.Sprintf("%s status --json --watch --config %s > /run/status-watch.out 2>&1 &", w.bin, w.cfg))
	t.Logf("built in %s; guest booted, %d access points and %d LANs up in %s", tBuild.Round(time.Millisecond), 5, len(lans), tLab.Round(time.Millisecond))

	t.Run("home", func(t *testing.T) {
		w.t = t
		st := w.join(homeA, "")
		s, took := w.waitState("home", state(daemon.StateDirect))
		t.Logf("home → %s in %s after the lease (rule %q): %s", s.State, took.Round(time.Millisecond), s.Network.Rule, s.Reason)
		if s.Network == nil || s.Network.SSID != "home" || s.Network.BSSID != st["bssid"] || s.Network.Action != "trust" || s.Tunnel != nil {
			b, _ := json.Marshal(s)
			t.Errorf("at home: %s", b)
		}
		// A roam between the home access points stays direct: no tunnel
		// is dialled for the moment between the two associations.
		to := homeB
		if st["bssid"] == homeB.BSSID {
			to = homeA
		}
		_, mark := w.watchLines(0)
		dialsBefore := strings.Count(w.daemonLog(), "msg=dialing")
		took = w.roam(to)
		s, _ = w.waitState("home roam", func(s daemon.Status) bool {
			return s.State == daemon.StateDirect && s.Network != nil && s.Network.BSSID == to.BSSID
		})
		time.Sleep(500 * time.Millisecond) // anything the roam set off has happened
		ss, _ := w.watchLines(mark)
		dials := strings.Count(w.daemonLog(), "msg=dialing") - dialsBefore
		t.Logf("home roam → %s in %s (wpa_supplicant's view); daemon states since: %s; dials %d", to.BSSID, took.Round(time.Millisecond), statesOf(ss), dials)
		if got := statesOf(ss); got != "direct" || dials != 0 {
			t.Errorf("roaming at home: states %q, %d dials; want direct throughout", got, dials)
		}
		w.leave(bare)
	})
	t.Run("cafe-roam", func(t *testing.T) {
		w.t = t
		st := w.join(cafeA, "")
		s, took := w.waitState("cafe", state(daemon.StateUp))
		t.Logf("café → %s in %s after the lease: tunnel %+v", s.State, took.Round(time.Millisecond), *s.Tunnel)
		if s.Network == nil || s.Network.SSID != "cafe" || s.Network.Action != "tunnel" || s.Tunnel == nil || s.Tunnel.Local != "10.9.0.2" {
			b, _ := json.Marshal(s)
			t.Fatalf("at the café: %s", b)
		}
		if got := w.run(10*time.Second, "ip route get 10.99.0.7"); !strings.Contains(got, "dev roamtun0") {
			t.Errorf("the world is not through the tunnel: %s", got)
		}
		// An inner TCP stream through the tunnel, to the server's end of it.
		w.run(10*time.Second, "rm -f /run/stop-stream; ip netns exec "+lab.WifiServerNS+" "+w.helper+" recv 10.9.0.1:5001 > /run/recv.out 2>&1 &")
		if _, err := g.Poll(20*time.Second, 100*time.Millisecond, "grep -q listening /run/recv.out"); err != nil {
			t.Fatal(err)
		}
		w.run(10*time.Second, w.helper+" send 10.9.0.1:5001 200000 /run/stop-stream > /run/send.out 2>&1 &")
		if _, err := g.Poll(20*time.Second, 100*time.Millisecond, "grep -q '^sent' /run/send.out"); err != nil {
			out, _ := g.Run(5*time.Second, "cat /run/send.out /run/recv.out")
			t.Fatalf("stream: %v\n%s", err, out)
		}
		to := cafeB
		if st["bssid"] == cafeB.BSSID {
			to = cafeA
		}
		_, mark := w.watchLines(0)
		dialsBefore := strings.Count(w.daemonLog(), "msg=dialing")
		roamTook := w.roam(to)
		s, _ = w.waitState("café roam", func(s daemon.Status) bool {
			return s.Network != nil && s.Network.BSSID == to.BSSID
		})
		// The stream keeps flowing for a while on the new access point.
		sent := func() int {
			out := w.run(10*time.Second, "grep '^sent' /run/send.out | tail -n 1")
			n, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(out), "sent "))
			return n
		}
		n0 := sent()
		if _, err := g.Poll(20*time.Second, 200*time.Millisecond, fmt.Sprintf("[ \"$(grep '^sent' /run/send.out | tail -n 1 | cut -d' ' -f2)\" -gt %d ]", n0+200000)); err != nil {
			t.Errorf("the stream stalled after the roam: %v", err)
		}
		w.run(10*time.Second, "touch /run/stop-stream")
		out, err := g.Poll(60*time.Second, 200*time.Millisecond, "grep '^done' /run/send.out && grep '^done' /run/recv.out")
		if err != nil {
			all, _ := g.Run(5*time.Second, "cat /run/send.out /run/recv.out")
			t.Fatalf("stream did not end: %v\n%s", err, all)
		}
		f := strings.Split(strings.TrimSpace(out), "\n")
		exact := len(f) == 2 && f[0] == f[1]
		if !exact {
			t.Errorf("the inner stream differs: sent %q, received %q", f[0], f[len(f)-1])
		}
		s, _ = w.status()
		ss, _ := w.watchLines(mark)
		dials := strings.Count(w.daemonLog(), "msg=dialing") - dialsBefore
		t.Logf("café roam %s → %s; daemon states since: %s; dials %d; stream %s", st["bssid"], to.BSSID, statesOf(ss), dials, f[0])
		if s.State != daemon.StateUp || s.Tunnel == nil || s.Tunnel.Reconnects != 0 || dials != 0 || statesOf(ss) != "up" {
			b, _ := json.Marshal(s)
			t.Errorf("after the roam: %s; states %q; %d dials", b, statesOf(ss), dials)
		} else if exact {
			t.Logf("roam → tunnel still up, 0 redials, inner stream byte-exact, roam took %s (wpa_supplicant's view)", roamTook.Round(time.Millisecond))
		}
		w.leave(bare)
	})
	t.Run("evil-twin", func(t *testing.T) {
		w.t = t
		w.join(twin, twin.BSSID)
		s, took := w.waitState("evil twin", state(daemon.StateUp))
		t.Logf("evil twin → %s in %s after the lease (rule %q): %s", s.State, took.Round(time.Millisecond), s.Network.Rule, s.Reason)
		if s.Network == nil || s.Network.SSID != "home" || s.Network.BSSID != twin.BSSID || s.Network.Security != "open" || s.Network.Action != "tunnel" {
			b, _ := json.Marshal(s)
			t.Errorf("on the evil twin: %s", b)
		}
		w.leave(bare)
	})
	w.t = t
	if log := w.daemonLog(); strings.Contains(log, "level=ERROR") {
		t.Errorf("daemon errors:\n%s", log)
	}
	t.Logf("whole test %s (guest %s)", time.Since(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
}
