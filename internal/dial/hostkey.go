package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// errGotKey ends a handshake once the host key has been read.
var errGotKey = errors.New("host key read")

// ReadHostKey runs an SSH handshake with addr (host:port) only as far as
// the server's host key, and hangs up before any authentication. ed25519
// is asked for first, as OpenSSH's client does, so that the key shown is
// the one ssh will be offered once it is pinned.
func ReadHostKey(ctx context.Context, addr string, timeout time.Duration) (ssh.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var got ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: "roamtun-init",
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384,
			ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got = key
			return errGotKey
		},
		Timeout: timeout,
	}
	c, _, _, err := ssh.NewClientConn(conn, addr, cfg)
	if c != nil {
		c.Close()
	}
	if got != nil {
		return got, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
	}
	return nil, fmt.Errorf("ssh handshake with %s: %w", addr, err)
}
