package tunnel_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// TestUplinkAddressChange: the laptop's uplink gets a new address under an
// open tunnel (a new lease). The ssh connection under the link is dead at
// that moment; connect notices it from rtnetlink, not from unanswered
// echoes (keepalive is 5 s here: three missed echoes would take 15 s), and
// redials at once. An inner TCP stream runs across the change and arrives
// byte for byte: the far end gives the same inner address.
func TestUplinkAddressChange(t *testing.T) {
	for _, c := range []struct {
		name  string
		serve []string
	}{
		{"default server interface", nil},
		// Servers whose firewall rules name the interface: the new session
		// must not fail because the stale one still holds the name.
		{"fixed server interface", []string{"--interface", "rtfixed0"}},
	} {
		t.Run(c.name, func(t *testing.T) { uplinkAddressChange(t, c.serve) })
	}
}

func uplinkAddressChange(t *testing.T, serveArgs []string) {
	s := startSSHLabServe(t, "", serveArgs...)
	ns := s.tri.Laptop
	if out, err := ns.Run("sysctl", "-qw", "net.ipv4.conf.wan0.promote_secondaries=1"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	conn := s.connect(t, "home")
	if _, err := conn.WaitOutput(`up: roamtun0 10\.9\.0\.2 -> 10\.9\.0\.1`, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, conn.Stderr())
	}
	const total = 16 << 20
	var once sync.Once
	var changed time.Time
	backAt := make(chan time.Time, 1)
	d, err := lab.TransferPaced(ns, s.tri.Home, "10.9.0.1:5003", total, func(sent int64) {
		time.Sleep(2 * time.Millisecond) // about 4 s for the whole stream
		if sent < total/4 {
			return
		}
		once.Do(func() {
			changed = time.Now()
			go func() {
				if _, err := conn.WaitOutput(`(?s)up: .*up: roamtun0`, 60*time.Second); err == nil {
					backAt <- time.Now()
				}
			}()
			for _, argv := range [][]string{
				{"ip", "addr", "add", "10.200.1.50/24", "dev", "wan0"},
				{"ip", "addr", "del", lab.LaptopIP + "/24", "dev", "wan0"},
			} {
				if out, err := ns.Run(argv...); err != nil {
					t.Errorf("%v: %v %s", argv, err, out)
				}
			}
		})
	})
	if err != nil {
		t.Fatalf("inner TCP stream across the address change: %v\n%s", err, conn.Stderr())
	}
	var back time.Time
	select {
	case back = <-backAt:
	case <-time.After(60 * time.Second):
		t.Fatalf("no second session:\n%s", conn.Stderr())
	}
	if e := conn.Stderr(); !strings.Contains(e, "the uplink changed under the tunnel") || strings.Contains(e, "no answer to LCP echo") {
		t.Errorf("the redial was not caused by the address change:\n%s", e)
	}
	// One redial, and it worked: the new session did not trip over the
	// stale one (its interface name, its peer address).
	if e := conn.Stderr(); strings.Count(e, `msg="link down"`) != 1 || strings.Contains(e, "busy") {
		t.Errorf("the first redial did not bring the link back:\n%s", e)
	}
	t.Logf("uplink address changed under the tunnel: back %v later; a 16 MiB inner stream across it byte-exact (%v)",
		back.Sub(changed).Round(time.Millisecond), d.Round(time.Millisecond))
}
