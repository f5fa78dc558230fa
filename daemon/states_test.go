package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/internal/fakeclock"
	"github.com/roamtun/roamtun/policy"
	"github.com/roamtun/roamtun/tunnel"
	"github.com/roamtun/roamtun/watcher"
)

// The state machine against fakes (no root, no kernel, virtual time): each
// scenario is a list of steps — a network snapshot, tunnel events, the
// clock, a request — each followed by the state it must lead to and the
// calls it must make on the host, in order.

const statesPolicy = `[[rule]]
name = "home"
interface = "wifi"
ssid = "Home"
bssid = ["aa:aa:aa:aa:aa:01", "aa:aa:aa:aa:aa:02"]
security = ["wpa2"]
action = "trust"

[[rule]]
name = "office"
interface = "wifi"
ssid = "Office"
security = ["wpa2"]
verify = "192.0.2.22:22"
action = "trust"

[[rule]]
name = "hostile"
ssid = "Evil"
action = "block"

[default]
action = "tunnel"
profile = "home"
`

// fakeVerifier answers host-key probes: ok says whether the pinned key
// answered.
type fakeVerifier struct{ ok bool }

func (v *fakeVerifier) Verify(context.Context, string, string) error {
	if v.ok {
		return nil
	}
	return errors.New("host key verification failed")
}

type harness struct {
	t      *testing.T
	d      *daemon.Daemon
	tr     *transcript
	links  *fakeLinks
	clock  *fakeclock.Clock
	nets   chan watcher.Network
	verify *fakeVerifier
	run    *fakeRun

	mu      sync.Mutex
	uplinks []watcher.Network // what the watcher would list beside the primary
}

func newHarness(t *testing.T, opts ...func(*daemon.Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	pol := filepath.Join(dir, "networks.d")
	os.Mkdir(pol, 0o755)
	os.WriteFile(filepath.Join(pol, "10-rules.toml"), []byte(statesPolicy), 0o644)
	secrets := filepath.Join(dir, "chap-secrets")
	os.WriteFile(secrets, []byte("client server a\nserver client b\n"), 0o600)
	cfg, err := config.Parse(filepath.Join(dir, "roamtun.toml"), fmt.Appendf(nil, `[daemon]
state_dir = %q
policy_dir = %q
portal_window = "2m"

[profile.home]
host = "198.51.100.7"
dial_command = ["fake-dial"]
secrets = %q
interface = "roamtun0"
`, filepath.Join(dir, "state"), pol, secrets))
	if err != nil {
		t.Fatal(err)
	}
	holder, err := policy.NewHolder(pol, policy.Profiles{"home": filepath.Join(dir, "known_hosts")})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, tr: &transcript{}, clock: fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)),
		nets: make(chan watcher.Network), verify: &fakeVerifier{}}
	h.links = newFakeLinks(h.tr)
	o := daemon.Options{Config: cfg, Host: &fakeHost{tr: h.tr}, Policy: holder, Networks: h.nets,
		Standby: true, Supervise: h.links.Supervise, Clock: h.clock,
		Uplinks: func() []watcher.Network {
			h.mu.Lock()
			defer h.mu.Unlock()
			return slices.Clone(h.uplinks)
		},
		WatchNetwork: func(ctx context.Context, _ chan<- struct{}, _ string, _ time.Duration, _ *slog.Logger) {
			<-ctx.Done()
		},
		Verify: policy.NewVerifyCache(h.verify, time.Minute)}
	for _, f := range opts {
		f(&o)
	}
	h.d = daemon.New(o)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		checkGoroutines(t, base)
	})
	start := "standby start roamtun0"
	if o.PortalCheck.Port != 0 {
		start += fmt.Sprintf(" portal probe :%d", o.PortalCheck.Port)
	}
	h.expect(daemon.StateIdle, start, "standby probes [192.0.2.22:22]")
	return h
}

// network sends a snapshot and waits until the daemon has acted on it.
func (h *harness) network(n watcher.Network) {
	h.nets <- n
	h.flush()
}

// networks sends a primary network with other uplinks beside it.
func (h *harness) networks(primary watcher.Network, others ...watcher.Network) {
	h.mu.Lock()
	h.uplinks = append([]watcher.Network{primary}, others...)
	h.mu.Unlock()
	h.network(primary)
}

// flush waits for the daemon's goroutine to finish what it was doing.
func (h *harness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.d.Ping(ctx); err != nil {
		h.t.Fatalf("the daemon does not answer: %v", err)
	}
}

// link takes the tunnel run the daemon started and plays events on it.
func (h *harness) link(evs ...tunnel.Event) {
	h.t.Helper()
	if h.run == nil {
		h.run = h.links.next(h.t)
	}
	h.run.play(evs...)
}

// expect waits for state, then compares the calls made since the last
// expect.
func (h *harness) expect(state daemon.State, calls ...string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.d.Status().State != state {
		if time.Now().After(deadline) {
			h.t.Fatalf("state %s (%s), want %s", h.d.Status().State, h.d.Status().Reason, state)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	h.flush()
	if diff := cmp.Diff(calls, h.tr.take(), cmpNil); diff != "" {
		h.t.Fatalf("in state %s, calls (-want +got):\n%s", state, diff)
	}
}

var cmpNil = cmp.Transformer("nil", func(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
})

var (
	home1 = watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "Home", BSSID: "aa:aa:aa:aa:aa:01",
		Security: watcher.SecurityWPA2, Gateway: netip.MustParseAddr("192.168.1.1")}
	home2    = with(home1, func(n *watcher.Network) { n.BSSID = "aa:aa:aa:aa:aa:02" })
	evilTwin = with(home1, func(n *watcher.Network) { n.BSSID = "66:66:66:66:66:66" })
	cafe     = watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "Cafe", BSSID: "cc:cc:cc:cc:cc:01", Security: watcher.SecurityOpen,
		Gateway: netip.MustParseAddr("10.200.1.1")}
	homeOnWlan1 = with(home1, func(n *watcher.Network) { n.Interface = "wlan1" })
	cafeOnWlan1 = with(cafe, func(n *watcher.Network) { n.Interface = "wlan1" })
	cafeAP2     = with(cafe, func(n *watcher.Network) { n.BSSID = "cc:cc:cc:cc:cc:02" })
	portal      = with(cafe, func(n *watcher.Network) { n.Connectivity = watcher.ConnectivityPortal })
	signedIn    = with(cafe, func(n *watcher.Network) { n.Connectivity = watcher.ConnectivityFull })
	office      = watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "Office", BSSID: "0f:0f:0f:0f:0f:01", Security: watcher.SecurityWPA2}
	hostile     = watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "Evil", BSSID: "ee:ee:ee:ee:ee:01", Security: watcher.SecurityOpen}
	noNetwork   = watcher.Network{}
)

func with(n watcher.Network, f func(*watcher.Network)) watcher.Network { f(&n); return n }

// tunnelUp is what bringing the tunnel up on wlan0 costs: protection, the
// uplink let out of the standby firewall, one dial, the link up.
func (h *harness) tunnelUp() {
	h.t.Helper()
	h.expect(daemon.StateConnecting, "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
	h.link(dialing(1))
	h.link(up())
	h.expect(daemon.StateUp, "guard refresh", "guard server 198.51.100.7", "dial fake-dial <nil>",
		"guard up roamtun0 10.9.0.2 dns [10.9.0.53]")
}

func TestStates(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(h *harness)
	}{
		{"trusted home is used directly", func(h *harness) {
			h.network(home1)
			h.expect(daemon.StateDirect, "standby open wlan0")
		}},
		{"an evil twin of home (other BSSID) is tunnelled", func(h *harness) {
			h.network(evilTwin)
			h.tunnelUp()
			if r := h.d.Status().Reason; !strings.Contains(r, "66:66:66:66:66:66") {
				t.Errorf("the reason does not name the unpinned BSSID: %s", r)
			}
		}},
		{"a roam within the café keeps the tunnel", func(h *harness) {
			h.network(cafe)
			h.tunnelUp()
			h.network(cafeAP2)
			h.expect(daemon.StateUp, "guard refresh")
		}},
		{"a roam between home's access points stays direct", func(h *harness) {
			h.network(home1)
			h.expect(daemon.StateDirect, "standby open wlan0")
			h.network(home2)
			h.expect(daemon.StateDirect)
		}},
		{"the link drops and comes back", func(h *harness) {
			h.network(cafe)
			h.tunnelUp()
			h.link(down("echo timeout"))
			h.expect(daemon.StateReconnecting, "guard down")
			h.link(dialing(1), up())
			h.expect(daemon.StateUp, "guard refresh", "guard server 198.51.100.7", "dial fake-dial <nil>",
				"guard up roamtun0 10.9.0.2 dns [10.9.0.53]")
			if n := h.d.Status().Tunnel.Reconnects; n != 1 {
				t.Errorf("reconnects %d, want 1", n)
			}
		}},
		{"a flap: gone, then back", func(h *harness) {
			h.network(cafe)
			h.tunnelUp()
			h.network(noNetwork)
			h.expect(daemon.StateIdle, "guard close", "standby close wlan0")
			h.network(cafe)
			h.run = nil
			h.tunnelUp()
		}},
		{"untrusted to trusted puts everything back", func(h *harness) {
			h.network(cafe)
			h.tunnelUp()
			h.network(home1) // wlan0 stays open: from held by the guard to trusted
			h.expect(daemon.StateDirect, "guard close")
		}},
		{"a block rule locks down without dialing", func(h *harness) {
			h.network(hostile)
			h.expect(daemon.StateBlocked, "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
		}},
		{"verify: the pinned key answers, trusted", func(h *harness) {
			h.verify.ok = true
			h.network(office)
			h.expect(daemon.StateDirect, "standby open wlan0")
		}},
		{"verify: no answer, tunnelled", func(h *harness) {
			h.network(office)
			h.tunnelUp()
		}},
		{"override down, then the network changes", func(h *harness) {
			h.network(cafe)
			h.tunnelUp()
			if err := h.d.Down(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.expect(daemon.StateDirect, "guard close")
			h.network(hostile) // another network: the override ends
			h.expect(daemon.StateBlocked, "standby close wlan0", "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
		}},
		{"override up on a trusted network", func(h *harness) {
			h.network(home1)
			h.expect(daemon.StateDirect, "standby open wlan0")
			if err := h.d.Up(context.Background(), ""); err != nil {
				t.Fatal(err)
			}
			h.expect(daemon.StateConnecting, "standby close wlan0", "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
		}},
		{"a captive portal: sign-in window, then the tunnel", func(h *harness) {
			h.network(portal)
			h.expect(daemon.StatePortal, "standby open wlan0")
			h.clock.Advance(time.Minute)
			h.flush()
			h.expect(daemon.StatePortal)
			h.clock.Advance(time.Minute) // the window closes: tunnel anyway
			h.expect(daemon.StateConnecting, "standby close wlan0", "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
		}},
		{"a second uplink, trusted, is let out beside the tunnel", func(h *harness) {
			h.networks(cafe, homeOnWlan1)
			h.expect(daemon.StateConnecting, "standby open wlan1", "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
			if u := h.d.Status().Uplinks; len(u) != 2 || u[0].Interface != "wlan0" || u[0].Action != "tunnel" ||
				u[1].Interface != "wlan1" || u[1].Action != "trust" {
				t.Errorf("uplinks in status: %+v", u)
			}
		}},
		{"a second uplink, untrusted, stays closed beside a trusted primary", func(h *harness) {
			h.networks(home1, cafeOnWlan1)
			h.expect(daemon.StateDirect, "standby open wlan0")
		}},
		{"the primary goes: the tunnel moves to the other uplink", func(h *harness) {
			h.networks(cafe, cafeOnWlan1)
			h.tunnelUp()
			h.networks(cafeOnWlan1) // wlan0 gone: wlan1 is the primary now
			h.expect(daemon.StateConnecting, "guard close", "standby close wlan0",
				"protect home 198.51.100.7 lockdown=true", "standby open wlan1")
		}},
		{"judged networks are remembered, newest first, one entry each", func(h *harness) {
			h.network(home1)
			h.expect(daemon.StateDirect, "standby open wlan0")
			h.network(cafe) // wlan0 was open for home: closed before the guard holds it
			h.expect(daemon.StateConnecting, "standby close wlan0", "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
			h.network(home1)
			h.expect(daemon.StateDirect, "guard close")
			seen := h.d.Seen()
			if len(seen) != 2 || seen[0].SSID != "Home" || seen[0].Action != "trust" ||
				seen[1].SSID != "Cafe" || seen[1].Action != "tunnel" || seen[0].LastSeen == "" {
				t.Errorf("seen: %+v", seen)
			}
		}},
		{"a slow goodbye does not hold the state machine", func(h *harness) {
			h.network(cafe)
			h.tunnelUp()
			h.links.hold = make(chan struct{})
			h.network(noNetwork) // the link is still saying goodbye…
			h.expect(daemon.StateIdle, "guard close", "standby close wlan0")
			h.network(home1) // …and the daemon goes on meanwhile
			h.expect(daemon.StateDirect, "standby open wlan0")
			close(h.links.hold)
		}},
		{"a captive portal: signed in within the window", func(h *harness) {
			h.network(portal)
			h.expect(daemon.StatePortal, "standby open wlan0")
			h.network(signedIn) // the portal's opening is closed before the guard holds wlan0
			h.expect(daemon.StateConnecting, "standby close wlan0", "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			c.run(h)
		})
	}
}

// TestStatesPortalProbe: with the "portal" source (no NetworkManager), a
// new untrusted network stays under the standby firewall, nothing dialed,
// until the probe has judged it — the probe could not get through the
// tunnel's lockdown — and the flow after the verdict is the one above.
func TestStatesPortalProbe(t *testing.T) {
	probing := func(o *daemon.Options) { o.PortalCheck = daemon.PortalCheck{Port: 80, Wait: 10 * time.Second} }
	portalAt := with(portal, func(n *watcher.Network) { n.PortalURL = "http://10.0.0.1/login" })
	for _, c := range []struct {
		name string
		run  func(h *harness)
	}{
		{"a portal: held for the probe, sign-in window, signed in, tunnel", func(h *harness) {
			h.network(cafe) // connectivity not known yet: nothing opened, nothing dialed
			h.expect(daemon.StateConnecting)
			if r := h.d.Status().Reason; !strings.Contains(r, "checking for a captive portal") {
				t.Errorf("reason %q", r)
			}
			h.network(portalAt)
			h.expect(daemon.StatePortal, "standby open wlan0")
			if u := h.d.Status().Network.PortalURL; u != "http://10.0.0.1/login" {
				t.Errorf("portal URL in the status: %q", u)
			}
			h.network(signedIn)
			h.expect(daemon.StateConnecting, "standby close wlan0", "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
			if u := h.d.Status().Network.PortalURL; u != "" {
				t.Errorf("portal URL once signed in: %q", u)
			}
		}},
		{"an open network: the probe says full, the tunnel dials", func(h *harness) {
			h.network(cafe)
			h.expect(daemon.StateConnecting)
			h.network(signedIn)
			h.tunnelUp()
			// A roam: the probe asks again, the tunnel stays meanwhile.
			h.network(with(cafeAP2, func(n *watcher.Network) { n.Connectivity = watcher.ConnectivityUnknown }))
			h.expect(daemon.StateUp, "guard refresh")
		}},
		{"no verdict in time: tunnel anyway", func(h *harness) {
			h.network(cafe)
			h.expect(daemon.StateConnecting)
			h.clock.Advance(10 * time.Second)
			h.expect(daemon.StateConnecting, "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
		}},
		{"limited: the tunnel dials", func(h *harness) {
			h.network(cafe)
			h.expect(daemon.StateConnecting)
			h.network(with(cafe, func(n *watcher.Network) { n.Connectivity = watcher.ConnectivityLimited }))
			h.expect(daemon.StateConnecting, "protect home 198.51.100.7 lockdown=true", "standby open wlan0")
		}},
		{"a trusted network is not held", func(h *harness) {
			h.network(home1)
			h.expect(daemon.StateDirect, "standby open wlan0")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, probing)
			c.run(h)
		})
	}
}

// checkGoroutines waits until no more goroutines run than base (everything
// the daemon started has been joined), or fails with their stacks.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d, want at most %d; stacks:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
