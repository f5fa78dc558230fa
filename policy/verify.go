package policy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/roamtun/roamtun/watcher"
)

// SSHVerifier is the real host-key probe: it runs an SSH handshake with addr
// far enough to see the server's host key, checks it against known_hosts and
// hangs up before any authentication.
type SSHVerifier struct {
	// Timeout bounds the whole probe (dial + handshake); 0 means 2 s, short
	// because a roam waits for the verdict.
	Timeout time.Duration
}

// errKeyOK aborts the handshake once the host key has been checked.
var errKeyOK = errors.New("host key verified")

// Verify implements Verifier.
func (s SSHVerifier) Verify(ctx context.Context, addr, knownHosts string) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	check, err := knownhosts.New(knownHosts)
	if err != nil {
		return fmt.Errorf("reading known_hosts: %w", err)
	}
	algos, err := pinnedAlgorithms(check, addr)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	// Closing the conn on cancel unblocks the handshake early.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var verified bool
	cfg := &ssh.ClientConfig{
		User:              "roamtun-verify",
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if err := check(host, remote, key); err != nil {
				return err
			}
			verified = true
			return errKeyOK
		},
		Timeout: timeout,
	}
	c, _, _, err := ssh.NewClientConn(conn, addr, cfg)
	if c != nil {
		c.Close()
	}
	if verified {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
	}
	return fmt.Errorf("ssh handshake with %s: %w", addr, err)
}

// pinnedAlgorithms asks known_hosts which key types it pins for addr, so the
// server is asked for exactly those (else it may offer another type and the
// check would fail on a key we never pinned).
func pinnedAlgorithms(check ssh.HostKeyCallback, addr string) ([]string, error) {
	err := check(addr, &net.TCPAddr{}, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil, fmt.Errorf("no host key pinned for %s in known_hosts", addr)
	}
	var out []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			out = append(out, t)
		}
	}
	return out, nil
}

// probeKey is a key no known_hosts line can hold, used to list pinned keys.
type probeKey struct{}

func (probeKey) Type() string                        { return "roamtun-probe" }
func (probeKey) Marshal() []byte                     { return []byte("roamtun-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// VerifyCache remembers probe results per (network, addr) for a bounded time
// so that re-deciding on every watcher hint does not re-dial the server.
// Safe for concurrent use.
type VerifyCache struct {
	v   Verifier
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[cacheKey]cacheEntry
}

type cacheKey struct{ network, addr, knownHosts string }

type cacheEntry struct {
	err     error
	expires time.Time
}

// maxCache bounds the cache; past it, expired entries go, then everything.
const maxCache = 256

// NewVerifyCache wraps v, keeping results for ttl.
func NewVerifyCache(v Verifier, ttl time.Duration) *VerifyCache {
	return &VerifyCache{v: v, ttl: ttl, now: time.Now, m: map[cacheKey]cacheEntry{}}
}

// For returns a Verifier whose results are cached under n's identity
// (interface, SSID, BSSID, gateway and its MAC): a different access point or
// gateway is probed afresh.
func (c *VerifyCache) For(n watcher.Network) Verifier {
	id := fmt.Sprintf("%s\x00%q\x00%s\x00%s\x00%s", n.Interface, n.SSID, n.BSSID, n.Gateway, n.GatewayMAC)
	return boundCache{c, id}
}

type boundCache struct {
	c  *VerifyCache
	id string
}

func (b boundCache) Verify(ctx context.Context, addr, knownHosts string) error {
	return b.c.verify(ctx, cacheKey{b.id, addr, knownHosts})
}

func (c *VerifyCache) verify(ctx context.Context, k cacheKey) error {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		return e.err
	}
	err := c.v.Verify(ctx, k.addr, k.knownHosts)
	if ctx.Err() != nil {
		return err // our caller gave up: not the server's answer
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCache {
		now := c.now()
		for key, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= maxCache {
			clear(c.m)
		}
	}
	c.m[k] = cacheEntry{err: err, expires: c.now().Add(c.ttl)}
	return err
}
