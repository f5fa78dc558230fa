package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// DemoUser is the server's link account in the demo: created for the run
// and removed after it, unless it was there before.
const DemoUser = "roamtun-demo"

// demoStatus is the part of `roamtun status --json` the demo reads.
type demoStatus struct {
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Network *struct {
		Interface  string `json:"interface"`
		Gateway    string `json:"gateway"`
		GatewayMAC string `json:"gateway_mac"`
		Rule       string `json:"rule"`
		Action     string `json:"action"`
	} `json:"network"`
	Tunnel *struct {
		Local  string   `json:"local"`
		Remote string   `json:"remote"`
		DNS    []string `json:"dns"`
	} `json:"tunnel"`
}

// Demo runs the whole product in network namespaces and writes a timeline
// to w: a laptop gets a DHCP lease on a café network, roamtun daemon judges
// it untrusted, locks it down and brings the tunnel up over real OpenSSH to
// roamtun serve at home; traffic goes through it; the network is then
// trusted (direct, everything put back), and finally goes away (idle,
// everything exactly as before). It ends with a PASS or FAIL line and
// returns an error on FAIL. It needs root and OpenSSH (sshd, ssh).
func Demo(w io.Writer, bin string) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo builds network namespaces: run it as root")
	}
	t0 := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(w, "%8s  %s\n", time.Since(t0).Round(time.Millisecond), fmt.Sprintf(format, args...))
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(w, "FAIL: %v\n", err)
		}
	}()
	l, err := New("rtdemo")
	if err != nil {
		return err
	}
	defer l.Close()
	tri, err := l.Triangle()
	if err != nil {
		return err
	}
	step("lab: laptop ⇄ café router (DHCP server) ⇄ home server (OpenSSH), namespaces %s-*", l.Prefix())

	// Home: the classic server side — a dedicated account whose key may
	// only run `roamtun serve`, CHAP secrets both ways.
	uid, gid, err := l.UseAccount(DemoUser)
	if err != nil {
		return err
	}
	serveBin, err := l.CapBinary(bin)
	if err != nil {
		return err
	}
	secretsText := "# client server secret\nclient server \"demo-laptop-secret\" *\nserver client \"demo-server-secret\" *\n"
	srvSecrets := filepath.Join(l.Dir(), "server-chap-secrets")
	if err := os.WriteFile(srvSecrets, []byte(secretsText), 0o600); err != nil {
		return err
	}
	if err := os.Chown(srvSecrets, uid, gid); err != nil {
		return err
	}
	sshd, err := l.StartSSHD(tri.Home, HomeIP, 2222, fmt.Sprintf("%s serve --local 10.9.0.1 --peer 10.9.0.2 --dns 10.9.0.53 --require-chap --secrets %s",
		serveBin, srvSecrets))
	if err != nil {
		return err
	}
	step("home: sshd on %s, account %s restricted to `roamtun serve` (command=, restrict), host key pinned on the laptop", sshd.Addr, sshd.User)

	// Laptop: config, policy (untrusted by default), an unconfigured link.
	dir := l.Dir()
	policyDir := filepath.Join(dir, "networks.d")
	os.MkdirAll(policyDir, 0o755)
	os.WriteFile(filepath.Join(policyDir, "90-default.toml"), []byte("[default]\naction = \"tunnel\"\nprofile = \"home\"\n"), 0o644)
	secrets := filepath.Join(dir, "chap-secrets")
	os.WriteFile(secrets, []byte(secretsText), 0o600)
	cfg := filepath.Join(dir, "roamtun.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`[daemon]
policy_dir = %q
state_dir = %q
socket = %q
socket_group = "root"
sources = ["netlink"]

[profile.home]
host = %q
port = 2222
user = %q
identity_file = %q
known_hosts = %q
secrets = %q
`, policyDir, filepath.Join(dir, "state"), filepath.Join(dir, "roamtun.sock"), HomeIP, sshd.User, sshd.ClientKey, sshd.KnownHosts, secrets)), 0o644); err != nil {
		return err
	}
	for _, c := range [][]string{{"ip", "route", "flush", "table", "main"}, {"ip", "addr", "flush", "dev", "wan0"}} {
		if _, err := tri.Laptop.Run(c...); err != nil {
			return err
		}
	}
	if _, err := tri.Cafe.StartGoDHCPServer("lan0", net.ParseIP("10.200.1.100"), 50, net.ParseIP(CafeLaptopIP)); err != nil {
		return err
	}
	bare, err := demoSnapshot(tri.Laptop)
	if err != nil {
		return err
	}
	d, err := tri.Laptop.StartProc(nil, bin, "daemon", "--config", cfg)
	if err != nil {
		return err
	}
	status := func() (demoStatus, error) {
		var s demoStatus
		out, err := tri.Laptop.Run(bin, "status", "--json", "--config", cfg)
		if err != nil {
			return s, err
		}
		return s, json.Unmarshal([]byte(out), &s)
	}
	wait := func(state string, timeout time.Duration) (demoStatus, time.Duration, error) {
		start := time.Now()
		for {
			s, err := status()
			if err == nil && s.State == state {
				return s, time.Since(start), nil
			}
			if time.Since(start) > timeout {
				return s, 0, fmt.Errorf("waiting for state %s: %s (%s)\ndaemon log:\n%s", state, s.State, s.Reason, tailText(d.Stderr(), 25))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, _, err := wait("idle", 20*time.Second); err != nil {
		return err
	}
	step("laptop: roamtun daemon running (idle; standby lockdown: nothing but DHCP/ARP/ND leaves a network not yet judged)")

	lease, err := tri.Laptop.AcquireLease("wan0", 20*time.Second)
	if err != nil {
		return err
	}
	leased := time.Now()
	step("laptop joins the café network: DHCP lease %s, gateway %s", lease.Addr, lease.Router)
	s, _, err := wait("up", 30*time.Second)
	if err != nil {
		return err
	}
	upIn := time.Since(leased)
	step("untrusted (rule %s → %s): lockdown on, tunnel up %s after the lease: %s → %s, DNS %s",
		s.Network.Rule, s.Network.Action, upIn.Round(time.Millisecond), s.Tunnel.Local, s.Tunnel.Remote, strings.Join(s.Tunnel.DNS, ","))
	route, _ := tri.Laptop.Run("ip", "route", "get", "10.200.2.1")
	srvRoute, _ := tri.Laptop.Run("ip", "route", "get", HomeIP)
	step("routes: the world %s; the server %s", routeVia(route), routeVia(srvRoute))
	rc, _ := os.ReadFile(tri.Laptop.ResolvConf())
	step("resolv.conf: %s", strings.Join(nameservers(string(rc)), ", "))
	out, err := tri.Laptop.Run("ping", "-c", "3", "-i", "0.2", "-W", "3", "10.9.0.1")
	if err != nil {
		return fmt.Errorf("ping through the tunnel: %w", err)
	}
	step("ping the far end through the tunnel: %s", pingSummary(out))
	const n = 16 << 20
	dt, err := Transfer(tri.Laptop, tri.Home, "10.9.0.1:5001", n)
	if err != nil {
		return err
	}
	step("16 MiB over TCP through PPP over SSH, byte-exact, %.0f Mbit/s", float64(n)*8/dt.Seconds()/1e6)

	mac := strings.TrimSpace(s.Network.GatewayMAC)
	trust := filepath.Join(policyDir, "10-cafe.toml")
	os.WriteFile(trust, []byte(fmt.Sprintf("[[rule]]\nname = \"cafe-router\"\ninterface = \"ethernet\"\ngateway_mac = [%q]\nsecurity = [\"none\"]\naction = \"trust\"\n", mac)), 0o644)
	step("the user trusts this network: a policy rule pinning the router's MAC %s", mac)
	if _, took, err := wait("direct", 20*time.Second); err != nil {
		return err
	} else {
		route, _ = tri.Laptop.Run("ip", "route", "get", "10.200.2.1")
		step("direct in %s: tunnel closed, routes and DNS put back; the world %s", took.Round(time.Millisecond), routeVia(route))
	}
	os.Remove(trust)
	if _, took, err := wait("up", 30*time.Second); err != nil {
		return err
	} else {
		step("trust withdrawn: tunnel up again in %s", took.Round(time.Millisecond))
	}
	if err := lease.Release(); err != nil {
		return err
	}
	if _, took, err := wait("idle", 20*time.Second); err != nil {
		return err
	} else {
		step("the laptop leaves the network (lease released): idle in %s", took.Round(time.Millisecond))
	}
	// While the daemon runs, its standby firewall keeps any network it has
	// not judged yet locked down; everything else is as before. Routes,
	// firewall and DNS go back with the state; the old link says its
	// goodbye in the background, and its TUN goes with it a moment later.
	var after string
	restored := time.Now()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if after, err = demoSnapshot(tri.Laptop); err != nil {
			return err
		}
		if after = standbyRE.ReplaceAllString(after, ""); after == bare {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not restored exactly:\nbefore:\n%s\nafter:\n%s", bare, after)
		}
	}
	step("routes, rules (v4, v6), firewall and resolv.conf: as before (but the daemon's standby lockdown), the tunnel's device gone %s later",
		time.Since(restored).Round(time.Millisecond))
	d.Cmd.Process.Signal(syscall.SIGTERM)
	if code, err := d.Wait(20 * time.Second); err != nil || code != 0 {
		return fmt.Errorf("daemon exit %d (%v)", code, err)
	}
	if after, err = demoSnapshot(tri.Laptop); err != nil {
		return err
	} else if after != bare {
		return fmt.Errorf("not restored exactly after the daemon stopped:\nbefore:\n%s\nafter:\n%s", bare, after)
	}
	step("daemon stopped (SIGTERM), exit 0: identical to before, standby firewall gone")
	fmt.Fprintf(w, "PASS: untrusted network tunnelled %s after its DHCP lease, trusted → direct, gone → restored exactly (%s in all)\n",
		upIn.Round(time.Millisecond), time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// demoSnapshot is what must come back exactly.
func demoSnapshot(ns *Namespace) (string, error) {
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"}, {"nft", "list", "ruleset"},
	} {
		out, err := ns.Run(argv...)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	rc, err := os.ReadFile(ns.ResolvConf())
	if err != nil {
		return "", err
	}
	b.Write(rc)
	return b.String(), nil
}

// standbyRE matches the daemon's standby firewall in `nft list ruleset`.
var standbyRE = regexp.MustCompile(`(?ms)^table inet roamtun_standby \{.*?^\}\n`)

var viaRE = regexp.MustCompile(`(via \S+ )?dev \S+`)

func routeVia(out string) string {
	if m := viaRE.FindString(out); m != "" {
		return m
	}
	return strings.TrimSpace(out)
}

func nameservers(rc string) []string {
	var out []string
	for _, l := range strings.Split(rc, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}

func tailText(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

var pingRE = regexp.MustCompile(`(\d+) received.*\n.*= [\d.]+/([\d.]+)/`)

func pingSummary(out string) string {
	if m := pingRE.FindStringSubmatch(out); m != nil {
		return fmt.Sprintf("%s/3 replies, avg %s ms", m[1], m[2])
	}
	return strings.TrimSpace(out)
}
