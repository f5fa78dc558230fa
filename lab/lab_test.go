package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCloseRemovesEverything(t *testing.T) {
	RequirePrivileged(t)
	l, err := New("rtt")
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Namespace("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Namespace("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(a, "va", "10.66.0.1/24", b, "vb", "10.66.0.2/24"); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Run("ping", "-c", "1", "-W", "3", "10.66.0.2"); err != nil {
		t.Fatalf("ping over veth: %v\n%s", err, out)
	}
	// One process we started, and one that escaped into the namespace.
	p, err := a.StartProc(nil, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	stray := exec.Command("ip", "netns", "exec", b.Name(), "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!")
	out, err := stray.Output()
	if err != nil {
		t.Fatal(err)
	}
	var strayPID int
	for _, c := range strings.TrimSpace(string(out)) {
		strayPID = strayPID*10 + int(c-'0')
	}
	dir := l.Dir()
	l.Close()
	if a.Exists() || b.Exists() {
		t.Error("namespaces left behind")
	}
	if _, err := p.Wait(5 * time.Second); err != nil {
		t.Error("started process still running")
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(strayPID, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if syscall.Kill(strayPID, 0) == nil {
		t.Errorf("process %d left in the namespace still runs", strayPID)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab dir %s left behind", dir)
	}
	l.Close() // twice is fine
}

// TestDemo runs `roamtun demo` as a user would (make demo).
func TestDemo(t *testing.T) {
	RequirePrivileged(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "roamtun")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/roamtun/roamtun/cmd/roamtun").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	before := hostState(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "demo")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("roamtun demo:\n%s", out.String())
	if err != nil || !strings.Contains(out.String(), "\nPASS: ") {
		t.Fatalf("demo failed: %v", err)
	}
	if after := hostState(t); after != before {
		t.Errorf("the demo left the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// hostState is what the demo could leave behind on the host: its account,
// namespaces, files, and the host's own rules, firewall and resolv.conf.
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	sh := func(script string) {
		out, _ := exec.Command("sh", "-c", script).CombinedOutput()
		fmt.Fprintf(&b, "$ %s\n%s", script, out)
	}
	sh("getent passwd " + DemoUser + " || echo no " + DemoUser)
	sh("ip netns list | grep rtdemo || true")
	sh("ls -d /etc/netns/rtdemo* /tmp/roamtun-rtdemo-* 2>/dev/null || true")
	sh("ls -ld /run/sshd 2>/dev/null || echo no /run/sshd")
	sh("ip rule; ip -6 rule")
	sh("nft list ruleset")
	sh("cat /etc/resolv.conf")
	sh("ls -d /var/lib/roamtun /run/roamtun 2>/dev/null || true")
	return b.String()
}
