package tunnel_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

var upRE = regexp.MustCompile(`up: .* in (\S+)`)

// BenchmarkSSHPaths compares, in one run and the same namespaces, with the
// same cipher (chacha20-poly1305):
//
//   - TCP throughput through roamtun (PPP over an ssh session's stdio),
//     through OpenSSH's own tun forwarding (ssh -w), and the raw ssh stream
//     (bytes into `cat >/dev/null` on the server) — the ceiling;
//   - ping round trips through roamtun and ssh -w, idle and while a bulk
//     TCP upload fills the same tunnel (median of the replies): how much a
//     tunnel queues ahead of the ssh channel shows here;
//   - CPU seconds per GB moved, of every process of the path at both ends
//     (roamtun connect, ssh, sshd, roamtun serve; ssh and sshd for ssh -w),
//     read from /proc before and after the throughput transfer;
//   - time from `roamtun connect` to the first ping reply through the link,
//     against `ssh host true`.
//
// Run it with: go test -run=NONE -bench=SSHPaths -benchtime=1x ./tunnel
// Compare the figures only with each other: the machine is shared.
func BenchmarkSSHPaths(b *testing.B) {
	s := startSSHLab(b, "")
	laptop, home := s.tri.Laptop, s.tri.Home
	const n = 64 << 20
	mbit := func(d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }
	cipher := []string{"-c", "chacha20-poly1305@openssh.com"}

	// ssh host true: the handshake alone (median of 5).
	trueKey, err := s.sshd.AddKey("true", `restrict,command="true"`)
	if err != nil {
		b.Fatal(err)
	}
	var hs []time.Duration
	for range 5 {
		t0 := time.Now()
		if out, err := laptop.Run(append(s.sshd.SSHArgs(trueKey), "true")...); err != nil {
			b.Fatalf("ssh true: %v %s", err, out)
		}
		hs = append(hs, time.Since(t0))
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	handshake := hs[2]

	// ssh -w runs between persistent tun5 devices, made once.
	wKey, err := s.sshd.AddKey("tunnel", `command="sleep 3600",no-pty,no-agent-forwarding,no-X11-forwarding`)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		ns          *lab.Namespace
		user        []string
		local, peer string
	}{{home, []string{"user", lab.LabUser}, "10.8.0.1", "10.8.0.2"}, {laptop, nil, "10.8.0.2", "10.8.0.1"}} {
		for _, argv := range [][]string{
			append([]string{"ip", "tuntap", "add", "dev", "tun5", "mode", "tun"}, c.user...),
			{"ip", "addr", "add", c.local, "peer", c.peer, "dev", "tun5"},
			{"ip", "link", "set", "tun5", "mtu", "1200", "up"},
		} {
			if out, err := c.ns.Run(argv...); err != nil {
				b.Fatalf("%v %s", err, out)
			}
		}
	}
	rawKey, err := s.sshd.AddKey("raw", `restrict,command="cat >/dev/null"`)
	if err != nil {
		b.Fatal(err)
	}

	// Each round measures the three paths one after the other, so that
	// with -benchtime=Nx the load of a shared machine spreads over all
	// three alike. roamtun's lockdown would drop ssh -w's packets, so the
	// two tunnels are never up together.
	var roamtunD, sshwD, rawD, upToPing time.Duration
	var roamtunCPU, sshwCPU, upMS float64
	var roamtunIdle, roamtunLoaded, sshwIdle, sshwLoaded []float64
	for i := range b.N {
		// roamtun: connect → first ping reply, then throughput.
		t0 := time.Now()
		conn := s.connect(b, "home")
		for {
			// Before the link is up ping fails at once (no route); once it is
			// up, the reply takes a round trip. Short timeouts keep the
			// polling from adding to what is measured.
			if _, err := laptop.Run("ping", "-c", "1", "-W", "0.2", "10.9.0.1"); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
			if time.Since(t0) > time.Minute {
				b.Fatalf("no ping through roamtun; stderr:\n%s", conn.Stderr())
			}
		}
		if i == 0 {
			upToPing = time.Since(t0)
			if m := upRE.FindStringSubmatch(conn.Stdout()); m != nil {
				if d, err := time.ParseDuration(m[1]); err == nil {
					upMS = float64(d.Milliseconds())
				}
			}
		}
		d, cpu, err := transferCPU(b, laptop, home, "10.9.0.1:5001", n)
		if err != nil {
			b.Fatal(err)
		}
		roamtunD += d
		roamtunCPU += cpu
		idle, loaded := pingUnderLoad(b, laptop, home, "10.9.0.1", 5003)
		roamtunIdle, roamtunLoaded = append(roamtunIdle, idle...), append(roamtunLoaded, loaded...)
		conn.Cmd.Process.Signal(syscall.SIGTERM)
		if _, err := conn.Wait(30 * time.Second); err != nil {
			b.Fatal(err)
		}

		// ssh -w: OpenSSH's tun forwarding.
		args := append(s.sshd.SSHArgs(wKey), "-w", "5:5", "-o", "Tunnel=point-to-point")
		sshw, err := laptop.StartProc(nil, append(args[:1:1], append(cipher, args[1:]...)...)...)
		if err != nil {
			b.Fatal(err)
		}
		for t0 := time.Now(); ; {
			if _, err := laptop.Run("ping", "-c", "1", "-W", "1", "10.8.0.1"); err == nil {
				break
			}
			if time.Since(t0) > 30*time.Second {
				b.Fatalf("ssh -w never carried a ping; stderr:\n%s", sshw.Stderr())
			}
		}
		d, cpu, err = transferCPU(b, laptop, home, "10.8.0.1:5002", n)
		if err != nil {
			b.Fatal(err)
		}
		sshwD += d
		sshwCPU += cpu
		idle, loaded = pingUnderLoad(b, laptop, home, "10.8.0.1", 5004)
		sshwIdle, sshwLoaded = append(sshwIdle, idle...), append(sshwLoaded, loaded...)
		sshw.Cmd.Process.Kill()
		sshw.Wait(30 * time.Second)
		// The far end's tun5 is free again once its sshd has gone.
		for t0 := time.Now(); time.Since(t0) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
			if out, _ := home.Run("pgrep", "-u", lab.LabUser, "-f", "sleep 3600"); strings.TrimSpace(out) == "" {
				break
			}
		}

		// The raw stream: the ceiling of anything carried over this ssh session.
		rawArgs := s.sshd.SSHArgs(rawKey)
		rawArgs = append(rawArgs[:1:1], append(cipher, rawArgs[1:]...)...)
		cmd := exec.Command("ip", append([]string{"netns", "exec", laptop.Name()}, rawArgs...)...)
		cmd.Stdin = strings.NewReader(strings.Repeat("\x00", n))
		t0 = time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("raw ssh stream: %v %s", err, out)
		}
		rawD += time.Since(t0)
	}
	b.StopTimer()
	per := func(d time.Duration) time.Duration { return d / time.Duration(b.N) }
	r, w, raw := mbit(per(roamtunD)), mbit(per(sshwD)), mbit(per(rawD))
	b.ReportMetric(r, "roamtun-Mbit/s")
	b.ReportMetric(w, "ssh-w-Mbit/s")
	b.ReportMetric(raw, "raw-Mbit/s")
	b.ReportMetric(r/w, "roamtun/ssh-w")
	b.ReportMetric(r/raw, "roamtun/raw")
	gb := float64(n) * float64(b.N) / 1e9
	b.ReportMetric(roamtunCPU/gb, "roamtun-cpu-s/GB")
	b.ReportMetric(sshwCPU/gb, "ssh-w-cpu-s/GB")
	b.ReportMetric(median(roamtunIdle), "roamtun-idle-ping-ms")
	b.ReportMetric(median(roamtunLoaded), "roamtun-loaded-ping-ms")
	b.ReportMetric(median(sshwIdle), "ssh-w-idle-ping-ms")
	b.ReportMetric(median(sshwLoaded), "ssh-w-loaded-ping-ms")
	b.ReportMetric(float64(upToPing.Milliseconds()), "connect-to-ping-ms")
	b.ReportMetric(upMS, "dial-to-up-ms")
	b.ReportMetric(float64(handshake.Milliseconds()), "ssh-true-ms")
}

// transferCPU is lab.Transfer that also returns the CPU seconds (user and
// system) that every process in the two namespaces spent meanwhile: the
// tunnel at both ends, ssh and sshd included. The TCP endpoints run in this
// test process, which is not counted. /proc is read rather than getrusage:
// the far end's processes are sshd's children, not ours.
func transferCPU(b *testing.B, from, to *lab.Namespace, addr string, n int64) (time.Duration, float64, error) {
	before := nsCPU(from, to)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	d, err := lab.Transfer(from, to, addr, n)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	after := nsCPU(from, to)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	b.Logf("%s: %v; the TCP endpoints (this process): user %.2fs sys %.2fs", addr, d,
		tv(ru1.Utime)-tv(ru0.Utime), tv(ru1.Stime)-tv(ru0.Stime))
	var cpu float64
	byName := map[string]float64{}
	for pid, t := range after {
		c := t.cpu - before[pid].cpu // a process started meanwhile counts from 0
		cpu += c
		byName[t.ns+"/"+t.comm] += c
	}
	b.Logf("%s: CPU seconds by process: %v", addr, byName)
	return d, cpu, err
}

type procCPU struct {
	ns, comm string
	cpu      float64 // seconds
}

// nsCPU returns the CPU seconds so far of each process in the namespaces.
func nsCPU(nss ...*lab.Namespace) map[int]procCPU {
	m := map[int]procCPU{}
	for _, ns := range nss {
		out, _ := exec.Command("ip", "netns", "pids", ns.Name()).Output()
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == os.Getpid() {
				continue
			}
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			// Fields after the command name "(...)": state is the 3rd field
			// of stat, utime and stime the 14th and 15th.
			rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if len(rest) < 13 {
				continue
			}
			ut, _ := strconv.ParseFloat(rest[11], 64)
			st, _ := strconv.ParseFloat(rest[12], 64)
			comm := string(stat[bytes.IndexByte(stat, '(')+1 : bytes.LastIndexByte(stat, ')')])
			m[pid] = procCPU{ns: ns.Name()[strings.LastIndexByte(ns.Name(), '-')+1:], comm: comm, cpu: (ut + st) / clockTicks}
		}
	}
	return m
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on Linux.
const clockTicks = 100

// pingUnderLoad returns ping round trips to peer in ms, first with the
// tunnel idle, then while a bulk TCP upload from laptop to home (to
// peer:port) keeps the tunnel full.
func pingUnderLoad(b *testing.B, laptop, home *lab.Namespace, peer string, port int) (idle, loaded []float64) {
	b.Helper()
	idle = pings(laptop, peer, 20)
	var ln net.Listener
	if err := home.Do(func() (err error) { ln, err = net.Listen("tcp", net.JoinHostPort(peer, strconv.Itoa(port))); return }); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	var conn net.Conn
	if err := laptop.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		return
	}); err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // past slow start: the queues are full
	loaded = pings(laptop, peer, 20)
	close(stop)
	// Reset rather than close: the megabytes still queued in the socket
	// would otherwise go on through the tunnel into the next measurement.
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
	<-sent
	return idle, loaded
}

var pingTimeRE = regexp.MustCompile(`time=([0-9.]+) ms`)

// pings pings peer count times, 100 ms apart, and returns the round trips
// in ms (a lost reply counts as 2 s, the wait for it).
func pings(ns *lab.Namespace, peer string, count int) []float64 {
	out, _ := ns.Run("ping", "-n", "-c", strconv.Itoa(count), "-i", "0.1", "-W", "2", peer)
	var rtts []float64
	for _, m := range pingTimeRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, v)
	}
	for len(rtts) < count {
		rtts = append(rtts, 2000)
	}
	return rtts
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
