package tunnel_test

import (
	"os/exec"
	"regexp"
	"sort"
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
	upToPing := time.Since(t0)
	var upMS float64
	if m := upRE.FindStringSubmatch(conn.Stdout()); m != nil {
		if d, err := time.ParseDuration(m[1]); err == nil {
			upMS = float64(d.Milliseconds())
		}
	}
	var roamtunD, sshwD, rawD time.Duration
	for range b.N {
		d, err := lab.Transfer(laptop, home, "10.9.0.1:5001", n)
		if err != nil {
			b.Fatal(err)
		}
		roamtunD += d
	}
	conn.Cmd.Process.Signal(syscall.SIGTERM)
	conn.Wait(30 * time.Second)

	// ssh -w: OpenSSH tun forwarding between persistent tun5 devices.
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
	for range b.N {
		d, err := lab.Transfer(laptop, home, "10.8.0.1:5002", n)
		if err != nil {
			b.Fatal(err)
		}
		sshwD += d
	}
	sshw.Cmd.Process.Kill()

	// The raw stream: the ceiling of anything carried over this ssh session.
	rawKey, err := s.sshd.AddKey("raw", `restrict,command="cat >/dev/null"`)
	if err != nil {
		b.Fatal(err)
	}
	rawArgs := s.sshd.SSHArgs(rawKey)
	rawArgs = append(rawArgs[:1:1], append(cipher, rawArgs[1:]...)...)
	for range b.N {
		cmd := exec.Command("ip", append([]string{"netns", "exec", laptop.Name()}, rawArgs...)...)
		cmd.Stdin = strings.NewReader(strings.Repeat("\x00", n))
		t0 := time.Now()
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
	b.ReportMetric(float64(upToPing.Milliseconds()), "connect-to-ping-ms")
	b.ReportMetric(upMS, "dial-to-up-ms")
	b.ReportMetric(float64(handshake.Milliseconds()), "ssh-true-ms")
}
