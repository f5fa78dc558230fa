package policy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/roamtun/roamtun/watcher"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serveSSH runs a real x/crypto/ssh server on 127.0.0.1 until the test
// ends; it serves handshakes only (every auth fails). mute: accept TCP and
// never say anything.
func serveSSH(t *testing.T, key ssh.Signer, mute bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) {
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(key)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if mute {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _, _, _ = ssh.NewServerConn(c, cfg)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func knownHostsFor(t *testing.T, addr string, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSSHVerifier(t *testing.T) {
	good, bad := newSigner(t), newSigner(t)
	addr := serveSSH(t, good, false)
	muteAddr := serveSSH(t, good, true)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name   string
		addr   string
		pinned ssh.PublicKey
		action Action
		reason string
	}{
		{"right key", addr, good.PublicKey(), ActionTrust, "host key ok"},
		{"wrong key", addr, bad.PublicKey(), ActionTunnel, "verify " + addr + " failed"},
		{"closed port", closedAddr, good.PublicKey(), ActionTunnel, "dialing"},
		{"never answers", muteAddr, good.PublicKey(), ActionTunnel, "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kh := knownHostsFor(t, tt.addr, tt.pinned)
			src := fmt.Sprintf("[[rule]]\nname = \"home\"\nssid = \"Home\"\nverify = %q\naction = \"trust\"\nprofile = \"home\"\n", tt.addr)
			p, err := Parse([]File{{Path: "v.toml", Data: []byte(src)}}, Profiles{"home": kh})
			if err != nil {
				t.Fatal(err)
			}
			n := watcher.Network{Interface: "w", Kind: watcher.KindWifi, SSID: "Home", Security: "wpa2"}
			start := time.Now()
			d := p.Decide(context.Background(), n, SSHVerifier{Timeout: 2 * time.Second})
			if d.Action != tt.action || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("got %+v", d)
			}
			// Generous bound (shared machine): the probe must give up on its own.
			if el := time.Since(start); el > 20*time.Second {
				t.Fatalf("took %v", el)
			}
		})
	}
}

func TestSSHVerifierNoPin(t *testing.T) {
	addr := serveSSH(t, newSigner(t), false)
	kh := knownHostsFor(t, "other.example:22", newSigner(t).PublicKey())
	err := SSHVerifier{}.Verify(context.Background(), addr, kh)
	if err == nil || !strings.Contains(err.Error(), "no host key pinned") {
		t.Fatalf("err = %v", err)
	}
}

type countingVerifier struct {
	calls int
	err   error
}

func (c *countingVerifier) Verify(ctx context.Context, addr, kh string) error {
	c.calls++
	return c.err
}

func TestVerifyCache(t *testing.T) {
	cv := &countingVerifier{}
	c := NewVerifyCache(cv, time.Minute)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	a := watcher.Network{Interface: "w", SSID: "Home", BSSID: "aa:aa:aa:aa:aa:aa"}
	b := a
	b.BSSID = "bb:bb:bb:bb:bb:bb"
	ctx := context.Background()
	for range 3 {
		_ = c.For(a).Verify(ctx, "h:22", "kh")
	}
	if cv.calls != 1 {
		t.Fatalf("calls = %d, want 1", cv.calls)
	}
	_ = c.For(b).Verify(ctx, "h:22", "kh")
	if cv.calls != 2 {
		t.Fatalf("another BSSID must probe again: calls = %d", cv.calls)
	}
	now = now.Add(2 * time.Minute)
	_ = c.For(a).Verify(ctx, "h:22", "kh")
	if cv.calls != 3 {
		t.Fatalf("expired entry must probe again: calls = %d", cv.calls)
	}
	for i := range maxCache + 10 {
		_ = c.For(a).Verify(ctx, fmt.Sprintf("h:%d", i+1), "kh")
	}
	if len(c.m) > maxCache {
		t.Fatalf("cache grew to %d", len(c.m))
	}
}
