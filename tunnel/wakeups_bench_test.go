package tunnel_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// Wake-ups of idle processes (issue #12): voluntary context switches of
// every thread of the processes measured, summed, over a fixed window. An
// idle process that sleeps in the kernel until something happens has ~0;
// each timer, ticker or poll shows up as a few switches each time it
// fires.
//
// Run it with: go test -run=NONE -bench=Wakeups -benchtime=1x ./tunnel
// The window defaults to 20 s; ROAMTUN_WAKEUP_WINDOW (a Go duration, e.g.
// "3s") changes it. It prints, per second:
//
//	daemon-wakeups/s         idle `roamtun daemon`, no network (only lo)
//	connect-wakeups/s        `roamtun connect` with an idle tunnel
//	connect+ssh-wakeups/s    the same plus its ssh client
//	serve-wakeups/s          the far end's `roamtun serve` of that session
//	serve+sshd-wakeups/s     the same plus sshd's processes for the session
//
// The figures are for comparing side by side on one machine; nothing here
// asserts a rate (a shared machine is noisy).

func wakeupWindow(tb testing.TB) time.Duration {
	s := os.Getenv("ROAMTUN_WAKEUP_WINDOW")
	if s == "" {
		return 20 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		tb.Fatalf("ROAMTUN_WAKEUP_WINDOW=%q: want a positive duration such as 10s", s)
	}
	return d
}

// taskSwitches returns voluntary_ctxt_switches of every thread of pid, by
// thread id. A process that is gone gives an empty map.
func taskSwitches(pid int) map[int]uint64 {
	out := map[int]uint64{}
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
					out[tid] = n
				}
			}
		}
	}
	return out
}

// switchesOf sums taskSwitches over pids, keyed by pid/tid.
func switchesOf(pids []int) map[[2]int]uint64 {
	out := map[[2]int]uint64{}
	for _, pid := range pids {
		for tid, n := range taskSwitches(pid) {
			out[[2]int{pid, tid}] = n
		}
	}
	return out
}

// perSecond is the switches between two snapshots per second of d. A
// thread born in between counts from zero; one that died is left out.
func perSecond(before, after map[[2]int]uint64, d time.Duration) float64 {
	var sum uint64
	for k, n := range after {
		if n >= before[k] {
			sum += n - before[k]
		}
	}
	return float64(sum) / d.Seconds()
}

// procInfo is what /proc says about one process.
type procInfo struct {
	pid, ppid int
	cmdline   string
}

func processes() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, procInfo{pid: pid, ppid: ppid, cmdline: strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")})
	}
	return out
}

// descendants returns root's descendants (not root itself).
func descendants(root int) []int {
	ps := processes()
	var out []int
	frontier := []int{root}
	for len(frontier) > 0 {
		var next []int
		for _, p := range ps {
			for _, f := range frontier {
				if p.ppid == f {
					out = append(out, p.pid)
					next = append(next, p.pid)
				}
			}
		}
		frontier = next
	}
	return out
}

func findProc(match func(procInfo) bool) (procInfo, bool) {
	for _, p := range processes() {
		if match(p) {
			return p, true
		}
	}
	return procInfo{}, false
}

// measureWakeups waits settle, then reports, for each named set of
// processes, its voluntary context switches per second over window.
func measureWakeups(b *testing.B, settle, window time.Duration, sets map[string][]int) map[string]float64 {
	b.Helper()
	// Said at once, for whoever wants to strace them meanwhile.
	for name, pids := range sets {
		fmt.Fprintf(os.Stderr, "wakeups: measuring %s: pids %v, %s from now for %s\n", name, pids, settle, window)
	}
	time.Sleep(settle)
	before := map[string]map[[2]int]uint64{}
	for name, pids := range sets {
		before[name] = switchesOf(pids)
	}
	t0 := time.Now()
	time.Sleep(window)
	d := time.Since(t0)
	out := map[string]float64{}
	for name, pids := range sets {
		out[name] = perSecond(before[name], switchesOf(pids), d)
	}
	return out
}

// BenchmarkWakeups measures idle wake-ups of the daemon with no network,
// and of both ends of an idle tunnel over OpenSSH (see the top of this
// file).
func BenchmarkWakeups(b *testing.B) {
	lab.RequirePrivileged(b)
	window := wakeupWindow(b)
	const settle = 2 * time.Second
	for range b.N {
		daemonRate := idleDaemonWakeups(b, settle, window)
		b.ReportMetric(daemonRate, "daemon-wakeups/s")
		r := idleTunnelWakeups(b, settle, window)
		for _, k := range []string{"connect", "connect+ssh", "serve", "serve+sshd"} {
			b.ReportMetric(r[k], k+"-wakeups/s")
		}
	}
}

// idleDaemonWakeups runs `roamtun daemon` in a namespace with only lo: it
// sees no network and has nothing to do.
func idleDaemonWakeups(b *testing.B, settle, window time.Duration) float64 {
	l := lab.NewT(b)
	defer l.Close()
	ns, err := l.Namespace("idle")
	if err != nil {
		b.Fatal(err)
	}
	dir := l.Dir()
	policyDir := filepath.Join(dir, "networks.d")
	os.MkdirAll(policyDir, 0o755)
	writeFile(b, policyDir, "90-default.toml", "[default]\naction = \"tunnel\"\nprofile = \"home\"\n", 0o644)
	sock := filepath.Join(dir, "roamtun.sock")
	cfg := writeFile(b, dir, "roamtun.toml", fmt.Sprintf(`[daemon]
state_dir = %q
policy_dir = %q
socket = %q
socket_group = "root"

[profile.home]
dial_command = ["false"]
secrets = %q
interface = "roamtun0"
`, filepath.Join(dir, "state"), policyDir, sock, writeFile(b, dir, "chap-secrets", goodSecrets, 0o600)), 0o644)
	p, err := ns.StartProc(nil, roamtun(b), "daemon", "--config", cfg)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := ns.Run(roamtun(b), "status", "--json", "--config", cfg)
		if err == nil && strings.Contains(out, `"idle"`) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("daemon not idle: %v %s\nstderr:\n%s", err, out, p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := measureWakeups(b, settle, window, map[string][]int{"daemon": {p.Cmd.Process.Pid}})
	b.Logf("idle daemon, no network: %.1f wake-ups/s over %s", r["daemon"], window)
	return r["daemon"]
}

// idleTunnelWakeups brings a tunnel up over OpenSSH (roamtun serve as the
// forced command, the lab's keepalive) and measures both ends while no
// packet is sent through it.
func idleTunnelWakeups(b *testing.B, settle, window time.Duration) map[string]float64 {
	s := startSSHLab(b, "")
	defer s.lab.Close()
	conn := s.connect(b, "home")
	if _, err := conn.WaitOutput(`up: roamtun0 `, 60*time.Second); err != nil {
		b.Fatal(err)
	}
	connPID := conn.Cmd.Process.Pid
	// roamtun serve itself, not the shell sshd may run it with.
	isServe := func(p procInfo) bool {
		return strings.Contains(p.cmdline, " serve --local 10.9.0.1") && strings.Contains(p.cmdline, s.dir)
	}
	serve, ok := findProc(func(p procInfo) bool {
		return isServe(p) && !strings.HasPrefix(p.cmdline, "sh ") && !strings.HasPrefix(p.cmdline, "/bin/sh ")
	})
	if !ok {
		b.Fatal("roamtun serve not found")
	}
	// sshd's processes for the session: everything under the listener
	// (started with -D), which is an ancestor of serve.
	listener := serve.pid
	for {
		p, ok := findProc(func(p procInfo) bool { return p.pid == listener })
		if !ok || p.pid <= 1 {
			b.Fatal("sshd listener not found above roamtun serve")
		}
		if strings.Contains(p.cmdline, "sshd -D") {
			break
		}
		listener = p.ppid
	}
	sets := map[string][]int{
		"connect":     {connPID},
		"connect+ssh": append([]int{connPID}, descendants(connPID)...),
		"serve":       {serve.pid},
		"serve+sshd":  descendants(listener),
	}
	r := measureWakeups(b, settle, window, sets)
	for _, k := range []string{"connect", "connect+ssh", "serve", "serve+sshd"} {
		b.Logf("idle tunnel, %s (pids %v): %.1f wake-ups/s over %s", k, sets[k], r[k], window)
	}
	return r
}
