package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Demo runs the PPP link end to end in network namespaces and writes a
// timeline to w: a laptop namespace runs `bin connect`, whose dial command
// starts `bin serve` in a home namespace; then ping, a byte-exact bulk
// transfer, a clean stop, and a check that nothing is left behind. It
// ends with a PASS or FAIL line and returns an error on FAIL.
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
	laptop, err := l.Namespace("laptop")
	if err != nil {
		return err
	}
	home, err := l.Namespace("home")
	if err != nil {
		return err
	}
	step("namespaces %s and %s", laptop.Name(), home.Name())
	secrets := filepath.Join(l.Dir(), "chap-secrets")
	if err := os.WriteFile(secrets, []byte("# client server secret\nclient server \"demo-laptop-secret\" *\nserver client \"demo-server-secret\" *\n"), 0o600); err != nil {
		return err
	}
	dial := home.Exec(bin, "serve", "--local", "10.9.0.1", "--peer", "10.9.0.2", "--dns", "10.9.0.53",
		"--require-chap", "--secrets", secrets, "--interface", "rtserve0")
	quoted := make([]string, len(dial))
	for i, a := range dial {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	cfg := filepath.Join(l.Dir(), "roamtun.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[profile.home]\ndial_command = [%s]\nsecrets = %q\n",
		strings.Join(quoted, ", "), secrets)), 0o644); err != nil {
		return err
	}
	step("laptop: roamtun connect home   (dial command: roamtun serve in %s; CHAP both ways)", home.Name())
	conn, err := laptop.StartProc(nil, bin, "connect", "--config", cfg, "home")
	if err != nil {
		return err
	}
	up, err := conn.WaitOutput(`up: .*`, 60*time.Second)
	if err != nil {
		return err
	}
	step("%s", up)
	out, err := laptop.Run("ping", "-c", "3", "-i", "0.2", "-W", "3", "10.9.0.1")
	if err != nil {
		return fmt.Errorf("ping through the link: %w", err)
	}
	step("ping 10.9.0.1 through the link: %s", pingSummary(out))
	const n = 32 << 20
	d, err := Transfer(laptop, home, "10.9.0.1:5001", n)
	if err != nil {
		return err
	}
	step("32 MiB over TCP through the link, byte-exact, %.0f Mbit/s", float64(n)*8/d.Seconds()/1e6)
	conn.Cmd.Process.Signal(syscall.SIGTERM)
	code, err := conn.Wait(30 * time.Second)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("connect exited %d after SIGTERM: %s", code, conn.Stderr())
	}
	step("SIGTERM: LCP Terminate sent and acknowledged, connect exited 0")
	for _, c := range []struct {
		ns  *Namespace
		dev string
	}{{laptop, "roamtun0"}, {home, "rtserve0"}} {
		if !waitGone(c.ns, c.dev, 10*time.Second) {
			return fmt.Errorf("%s still exists in %s", c.dev, c.ns.Name())
		}
	}
	step("both TUN devices removed")
	fmt.Fprintf(w, "PASS: PPP link up in %s, traffic through it, clean teardown\n", upTime(up))
	return nil
}

var pingRE = regexp.MustCompile(`(\d+) received.*\n.*= [\d.]+/([\d.]+)/`)

func pingSummary(out string) string {
	if m := pingRE.FindStringSubmatch(out); m != nil {
		return fmt.Sprintf("%s/3 replies, avg %s ms", m[1], m[2])
	}
	return strings.TrimSpace(out)
}

func upTime(up string) string {
	if i := strings.LastIndex(up, " in "); i >= 0 {
		return up[i+4:]
	}
	return "?"
}

// waitGone waits for a network device to disappear from a namespace.
func waitGone(ns *Namespace, dev string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if out, _ := ns.Run("ip", "link", "show", dev); strings.Contains(out, "does not exist") {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
