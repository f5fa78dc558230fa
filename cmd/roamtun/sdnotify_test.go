package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/internal/route"

	"github.com/roamtun/roamtun/lab"
)

// patience bounds each wait for the daemon, so that a broken daemon fails
// the test instead of hanging it; it asserts nothing about speed.
const patience = 2 * time.Minute

// systemdSocket is the notification socket systemd would listen on; it
// keeps every message in order.
type systemdSocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
	more chan struct{} // signalled on each message
}

func listenNotify(t *testing.T, dir string) *systemdSocket {
	t.Helper()
	s := &systemdSocket{path: filepath.Join(dir, "notify.sock"), more: make(chan struct{}, 1)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s.conn = conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
			select {
			case s.more <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return s
}

// await returns the index of the first message from index from on that
// matches re.
func (s *systemdSocket) await(t *testing.T, from int, re string) int {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(patience)
	for {
		s.mu.Lock()
		for i := from; i < len(s.msgs); i++ {
			if rx.MatchString(s.msgs[i]) {
				s.mu.Unlock()
				return i
			}
		}
		all := strings.Join(s.msgs, " | ")
		s.mu.Unlock()
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("no message matching %q from #%d on; got: %s", re, from, all)
		}
	}
}

func (s *systemdSocket) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func buildRoamtun(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "roamtun")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/roamtun/roamtun/cmd/roamtun").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const (
	policyTunnel = "[default]\naction = \"tunnel\"\nprofile = \"home\"\n"
	policyBlock  = "[default]\naction = \"block\"\nprofile = \"home\"\n"
)

// TestDaemonTellsSystemd runs `roamtun daemon` as systemd would (Type=notify,
// WatchdogSec=, stderr on the journal) in a network namespace of its own,
// with a lockdown profile whose dial fails, and reads what it tells systemd.
func TestDaemonTellsSystemd(t *testing.T) {
	lab.RequirePrivileged(t)
	for _, c := range []string{"unshare", "nsenter", "ip", "nft"} {
		lab.RequireCommand(t, c)
	}
	dir := t.TempDir()
	bin := buildRoamtun(t, dir)
	pol := filepath.Join(dir, "networks.d")
	os.Mkdir(pol, 0o755)
	writePolicy := func(p string) {
		if err := os.WriteFile(filepath.Join(pol, "10-default.toml"), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(policyTunnel)
	cfg := filepath.Join(dir, "roamtun.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[daemon]
policy_dir = %q
state_dir = %q
socket = %q
dns = "file"
sources = ["netlink"]

[profile.home]
host = "192.0.2.1"
dial_command = ["false"]
secrets = %q
require_chap = false
lockdown = true
hooks_dir = %q
`, pol, filepath.Join(dir, "state"), filepath.Join(dir, "roamtun.sock"), filepath.Join(dir, "none"), filepath.Join(dir, "hooks.d"))), 0o644)

	sd := listenNotify(t, dir)
	stderr, err := os.Create(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command("unshare", "--net", bin, "daemon", "--config", cfg)
	cmd.Stderr = stderr
	cmd.Env = append(environWithout("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "ROAMTUN_CONFIG"),
		"NOTIFY_SOCKET="+sd.path, "WATCHDOG_USEC=200000", "JOURNAL_STREAM="+streamOf(t, stderr))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	pid := fmt.Sprint(cmd.Process.Pid) // unshare execs the daemon: the same process
	inNS := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"-t", pid, "-n"}, args...)...).CombinedOutput()
		return string(out), err
	}

	// READY=1 only once the standby firewall closes the namespace's networks.
	ready := sd.await(t, 0, `^READY=1$`)
	if out, err := inNS("nft", "list", "table", "inet", route.StandbyTable); err != nil {
		t.Errorf("READY=1 before the standby firewall: %v\n%s", err, out)
	}
	sd.await(t, ready, `^WATCHDOG=1$`)

	// A network appears: connecting, and (dial fails) connecting again.
	if out, err := inNS("sh", "-c", "ip link add v0 type veth peer name v1 && ip addr add 10.77.0.2/24 dev v0 && "+
		"ip link set v1 up && ip link set v0 up && ip route add default via 10.77.0.1"); err != nil {
		t.Fatalf("network: %v\n%s", err, out)
	}
	i := sd.await(t, ready, `^STATUS=connecting: no rule matched; default \(.*10-default.toml:1\)$`)

	// roamtun reload: the policy now blocks; RELOADING=1 first, READY=1
	// last, as for SIGHUP.
	writePolicy(policyBlock)
	from0 := sd.count()
	out, err := exec.Command(bin, "reload", "--config", cfg).CombinedOutput()
	if err != nil || string(out) != "policy reloaded\n" {
		t.Errorf("roamtun reload: %v, %q", err, out)
	}
	r0 := sd.await(t, from0, `^RELOADING=1\nMONOTONIC_USEC=[0-9]+$`)
	sd.await(t, r0, `^READY=1\nSTATUS=blocked: `)
	i = sd.await(t, i, `^STATUS=blocked: `)

	// SIGHUP: the policy tunnels again; RELOADING=1 first, READY=1 last.
	writePolicy(policyTunnel)
	from := sd.count()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r := sd.await(t, from, `^RELOADING=1\nMONOTONIC_USEC=[0-9]+$`)
	sd.await(t, r, `^READY=1\nSTATUS=connecting: `)

	// The network goes: idle.
	if out, err := inNS("ip", "link", "del", "v0"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sd.await(t, i, `^STATUS=idle: no network: everything put back$`)

	from = sd.count()
	cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	if err := <-exited; err != nil {
		t.Errorf("daemon: %v", err)
	}
	sd.await(t, from, `^STOPPING=1$`)

	// The daemon's stderr, as journald would read it.
	log, _ := os.ReadFile(stderr.Name())
	for _, want := range []string{
		"<6>level=INFO msg=\"roamtun daemon running\"",
		"<6>level=INFO msg=\"policy reloaded\" by=SIGHUP\n",
		"<6>level=INFO msg=state state=blocked ",
		"<4>level=WARN msg=\"tunnel down\" reason=\"dial command exited: exit status 1\"\n",
	} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("journal: no %q in\n%s", want, log)
		}
	}
	if bytes.Contains(log, []byte("time=")) {
		t.Errorf("journal lines carry timestamps:\n%s", log)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if !regexp.MustCompile(`^<[3467]>level=`).MatchString(l) {
			t.Errorf("journal line without a priority: %q", l)
		}
	}
}

// environWithout is the environment minus the named variables.
func environWithout(names ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return env
}
