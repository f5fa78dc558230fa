package tunnel_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// TestCoexistence: on a laptop that also runs tailscale (its rules
// 5210–5270 and table 52) and a wg-quick full tunnel (rules 32764/32765,
// table 51820), roamtun's tunnel takes the default route without taking the
// tailnet: tailnet addresses still go to tailscale's interface, tailscale's
// own (marked) packets still leave through main, everything else goes
// through roamtun; and once roamtun stops, wg-quick's default route is back.
func TestCoexistence(t *testing.T) {
	l := lab.NewT(t)
	bin := roamtun(t)
	tri, err := l.Triangle()
	if err != nil {
		t.Fatal(err)
	}
	ns := tri.Laptop
	for _, argv := range [][]string{
		// Stand-ins for tailscale0 and wg0 (veth pairs: no such kernels here).
		{"ip", "link", "add", "ts0", "type", "veth", "peer", "name", "ts0p"},
		{"ip", "link", "add", "wg0", "type", "veth", "peer", "name", "wg0p"},
		{"ip", "addr", "add", "100.101.1.1/32", "dev", "ts0"},
		{"ip", "addr", "add", "10.66.0.2/32", "dev", "wg0"},
		{"ip", "link", "set", "ts0", "up"}, {"ip", "link", "set", "ts0p", "up"},
		{"ip", "link", "set", "wg0", "up"}, {"ip", "link", "set", "wg0p", "up"},
		// tailscale's rules and table, as tailscaled installs them.
		{"ip", "rule", "add", "pref", "5210", "fwmark", "0x80000/0xff0000", "lookup", "main"},
		{"ip", "rule", "add", "pref", "5230", "fwmark", "0x80000/0xff0000", "lookup", "default"},
		{"ip", "rule", "add", "pref", "5250", "fwmark", "0x80000/0xff0000", "unreachable"},
		{"ip", "rule", "add", "pref", "5270", "lookup", "52"},
		{"ip", "route", "add", "100.64.0.0/10", "dev", "ts0", "table", "52"},
		{"ip", "route", "add", "100.100.100.100", "dev", "ts0", "table", "52"},
		// wg-quick's full tunnel.
		{"ip", "rule", "add", "pref", "32764", "lookup", "main", "suppress_prefixlength", "0"},
		{"ip", "rule", "add", "pref", "32765", "not", "fwmark", "0xca6c", "lookup", "51820"},
		{"ip", "route", "add", "default", "dev", "wg0", "table", "51820"},
	} {
		if out, err := ns.Run(argv...); err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
	}
	route := func(args ...string) string {
		t.Helper()
		out, err := ns.Run(append([]string{"ip", "-o", "route", "get"}, args...)...)
		if err != nil {
			t.Fatalf("ip route get %v: %v %s", args, err, out)
		}
		return out
	}
	wantDev := func(what, got, dev string) {
		t.Helper()
		if !strings.Contains(got, " dev "+dev+" ") {
			t.Errorf("%s: %s, want dev %s", what, strings.TrimSpace(got), dev)
		}
	}
	wantDev("before roamtun, the world", route("192.0.2.1"), "wg0")

	secrets := writeFile(t, l.Dir(), "chap-secrets", goodSecrets, 0o600)
	dial := tri.Home.Exec(bin, "serve", "--local", "10.9.0.1", "--peer", "10.9.0.2", "--dns", "10.9.0.53",
		"--require-chap", "--secrets", secrets, "--interface", "rtco0")
	cfg := writeFile(t, l.Dir(), "roamtun.toml", fmt.Sprintf(`[daemon]
state_dir = %q

[profile.home]
host = %q
dial_command = %s
secrets = %q
interface = "roamtun0"
`, filepath.Join(l.Dir(), "state"), lab.HomeIP, tomlList(dial...), secrets), 0o644)
	conn, err := ns.StartProc(nil, bin, "connect", "--config", cfg, "home")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WaitOutput(`up: roamtun0 10\.9\.0\.2 -> 10\.9\.0\.1`, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, conn.Stderr())
	}
	wantDev("the world", route("192.0.2.1"), "roamtun0")
	wantDev("the tailnet", route("100.101.102.103"), "ts0")
	wantDev("MagicDNS", route("100.100.100.100"), "ts0")
	wantDev("tailscale's own packets", route("192.0.2.1", "mark", "0x80000"), "wan0")
	wantDev("wg-quick's packets (inside roamtun's tunnel)", route("192.0.2.1", "mark", "0xca6c"), "roamtun0")
	wantDev("the server", route(lab.HomeIP), "wan0")

	conn.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := conn.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("connect exit %d (%v)\n%s", code, err, conn.Stderr())
	}
	wantDev("after roamtun, the world", route("192.0.2.1"), "wg0")
	wantDev("after roamtun, the tailnet", route("100.101.102.103"), "ts0")
}
