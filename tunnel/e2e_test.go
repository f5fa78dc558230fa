package tunnel_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// pair is roamtun connect in a laptop namespace dialing roamtun serve in a
// home namespace through `ip netns exec` (a dial command, as pppd's pty).
type pair struct {
	lab          *lab.Lab
	laptop, home *lab.Namespace
	connect      *lab.Proc
	up           string
}

func startPair(t testing.TB) *pair {
	t.Helper()
	return startPairMTU(t, 1200)
}

// startPairMTU is startPair with both ends at mtu.
func startPairMTU(t testing.TB, mtu int) *pair {
	t.Helper()
	l := lab.NewT(t)
	bin := roamtun(t)
	p := &pair{lab: l}
	var err error
	if p.laptop, err = l.Namespace("laptop"); err != nil {
		t.Fatal(err)
	}
	if p.home, err = l.Namespace("home"); err != nil {
		t.Fatal(err)
	}
	secrets := writeFile(t, l.Dir(), "chap-secrets", goodSecrets, 0o600)
	dial := p.home.Exec(bin, "serve", "--local", "10.9.0.1", "--peer", "10.9.0.2", "--dns", "10.9.0.53",
		"--require-chap", "--secrets", secrets, "--interface", "rtsrv0", "--mtu", fmt.Sprint(mtu))
	cfg := writeFile(t, l.Dir(), "roamtun.toml", fmt.Sprintf(`[profile.home]
dial_command = %s
secrets = %q
interface = "roamtun0"
mtu = %d
`, tomlList(dial...), secrets, mtu), 0o644)
	if p.connect, err = p.laptop.StartProc(nil, bin, "connect", "--config", cfg, "home"); err != nil {
		t.Fatal(err)
	}
	if p.up, err = p.connect.WaitOutput(`up: roamtun0 10\.9\.0\.2 -> 10\.9\.0\.1 dns 10\.9\.0\.53 mtu `+fmt.Sprint(mtu)+` in \S+`, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// stop sends SIGTERM to connect and checks that both ends cleaned up.
func (p *pair) stop(t testing.TB) {
	t.Helper()
	p.connect.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := p.connect.Wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("connect exit %d (%v) after SIGTERM; stderr:\n%s", code, err, p.connect.Stderr())
	}
	if e := p.connect.Stderr(); !strings.Contains(e, "link ended") || !strings.Contains(e, "the far end terminated the link") {
		t.Errorf("serve did not see a clean terminate; stderr:\n%s", p.connect.Stderr())
	}
	for _, c := range []struct {
		ns  *lab.Namespace
		dev string
	}{{p.laptop, "roamtun0"}, {p.home, "rtsrv0"}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _ := c.ns.Run("ip", "link", "show", c.dev)
			if strings.Contains(out, "does not exist") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s still present: %s", c.dev, out)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestRoamtunToRoamtun(t *testing.T) {
	p := startPair(t)
	t.Logf("%s", p.up)
	if out, err := p.laptop.Run("ping", "-c", "3", "-i", "0.2", "-W", "3", "10.9.0.1"); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	if out, err := p.home.Run("ping", "-c", "3", "-i", "0.2", "-W", "3", "10.9.0.2"); err != nil {
		t.Fatalf("ping back: %v\n%s", err, out)
	}
	const n = 64 << 20
	d, err := lab.Transfer(p.laptop, p.home, "10.9.0.1:5001", n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("64 MiB through the link, byte-exact, in %s (%.0f Mbit/s)", d.Round(time.Millisecond), float64(n)*8/d.Seconds()/1e6)
	p.stop(t)
}
