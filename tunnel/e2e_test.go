package tunnel_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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
		"--require-chap", "--secrets", secrets, "--interface", "rtsrv0")
	cfg := writeFile(t, l.Dir(), "roamtun.toml", fmt.Sprintf(`[profile.home]
dial_command = %s
secrets = %q
interface = "roamtun0"
`, tomlList(dial...), secrets), 0o644)
	if p.connect, err = p.laptop.StartProc(nil, bin, "connect", "--config", cfg, "home"); err != nil {
		t.Fatal(err)
	}
	if p.up, err = p.connect.WaitOutput(`up: roamtun0 10\.9\.0\.2 -> 10\.9\.0\.1 dns 10\.9\.0\.53 mtu 1200 in \S+`, 60*time.Second); err != nil {
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

// transfer sends n pseudo-random bytes over TCP from the laptop to the home
// end through the tunnel and returns the sender's and receiver's SHA-256.
func (p *pair) transfer(t testing.TB, addr string, n int64) (sent, got [32]byte, d time.Duration) {
	t.Helper()
	var ln net.Listener
	if err := p.home.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	recv := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recv <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		recv <- [32]byte(h.Sum(nil))
	}()
	var conn net.Conn
	if err := p.laptop.Do(func() (err error) { conn, err = net.DialTimeout("tcp", addr, 10*time.Second); return }); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), n), h)
	start := time.Now()
	if _, err := io.Copy(conn, src); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	select {
	case got = <-recv:
	case <-time.After(120 * time.Second):
		t.Fatal("receiver did not finish")
	}
	conn.Close()
	return [32]byte(h.Sum(nil)), got, time.Since(start)
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
	sent, got, d := p.transfer(t, "10.9.0.1:5001", n)
	if sent != got {
		t.Fatalf("64 MiB transfer corrupted: sent %x, received %x", sent[:8], got[:8])
	}
	t.Logf("64 MiB through the link, byte-exact, in %s (%.0f Mbit/s)", d.Round(time.Millisecond), float64(n)*8/d.Seconds()/1e6)
	p.stop(t)
}
