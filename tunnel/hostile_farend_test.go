package tunnel_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// TestConnectRefusesHostileFarEnd: a far end that assigns the laptop the ssh
// server's address (the route to the server would become local and the
// tunnel collapse), or claims the café gateway as its own end (a /32 to the
// gateway through the TUN), is refused: `roamtun connect` ends naming the
// address and why, and the laptop's routes are as before.
func TestConnectRefusesHostileFarEnd(t *testing.T) {
	l := lab.NewT(t)
	bin := roamtun(t)
	tri, err := l.Triangle()
	if err != nil {
		t.Fatal(err)
	}
	secrets := writeFile(t, l.Dir(), "chap-secrets", goodSecrets, 0o600)
	before, _ := tri.Laptop.Run("ip", "route", "show", "table", "all")
	for i, c := range []struct{ local, peer, dns, want string }{
		{"10.9.0.1", lab.HomeIP, "10.9.0.53", "refusing our address " + lab.HomeIP + " from the far end: the ssh server's address"},
		{lab.CafeLaptopIP, "10.9.0.2", "10.9.0.53", "refusing its address " + lab.CafeLaptopIP + " from the far end: inside the uplink's subnet 10.200.1.0/24"},
		{"10.9.0.1", "10.9.0.2", "127.0.0.53", "refusing DNS server 127.0.0.53 from the far end: a loopback address"},
	} {
		dial := tri.Home.Exec(bin, "serve", "--local", c.local, "--peer", c.peer, "--dns", c.dns,
			"--require-chap", "--secrets", secrets, "--interface", fmt.Sprintf("rtevil%d", i))
		cfg := writeFile(t, l.Dir(), fmt.Sprintf("roamtun-%d.toml", i), fmt.Sprintf(`[daemon]
state_dir = %q

[profile.home]
host = %q
dial_command = %s
secrets = %q
interface = "roamtun0"
`, filepath.Join(l.Dir(), "state"), lab.HomeIP, tomlList(dial...), secrets), 0o644)
		conn, err := tri.Laptop.StartProc(nil, bin, "connect", "--once", "--config", cfg, "home")
		if err != nil {
			t.Fatal(err)
		}
		code, err := conn.Wait(60 * time.Second)
		if err != nil || code != 1 {
			t.Errorf("%s: exit %d (%v), want 1", c.want, code, err)
		}
		if e := conn.Stderr(); !strings.Contains(e, c.want) {
			t.Errorf("stderr does not refuse with %q:\n%s", c.want, e)
		}
		if strings.Contains(conn.Stdout(), "up: ") {
			t.Errorf("connect reported the link up:\n%s", conn.Stdout())
		}
		if after, _ := tri.Laptop.Run("ip", "route", "show", "table", "all"); after != before {
			t.Errorf("routes changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}
}
