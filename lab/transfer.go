package lab

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// Transfer sends n pseudo-random bytes over one TCP connection from a
// namespace to a listener at addr in another, and checks that what arrived
// is byte for byte what was sent (SHA-256 of both ends). It returns how
// long the transfer took.
func Transfer(from, to *Namespace, addr string, n int64) (time.Duration, error) {
	return TransferPaced(from, to, addr, n, nil)
}

// pacedReader calls pace after every chunk it hands out.
type pacedReader struct {
	r    io.Reader
	sent int64
	pace func(sent int64)
}

func (p *pacedReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b[:min(len(b), 32<<10)])
	p.sent += int64(n)
	if n > 0 {
		p.pace(p.sent)
	}
	return n, err
}

// TransferPaced is Transfer calling pace(bytes sent so far) after every
// 32 KiB: to slow the stream down, and to change the network under it.
func TransferPaced(from, to *Namespace, addr string, n int64, pace func(sent int64)) (time.Duration, error) {
	var ln net.Listener
	if err := to.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		return 0, fmt.Errorf("listening on %s in %s: %w", addr, to.name, err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		err error
	}
	recv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recv <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		_, err = io.Copy(h, c)
		recv <- result{sum: [32]byte(h.Sum(nil)), err: err}
	}()
	var conn net.Conn
	if err := from.Do(func() (err error) { conn, err = net.DialTimeout("tcp", addr, 10*time.Second); return }); err != nil {
		return 0, fmt.Errorf("connecting to %s from %s: %w", addr, from.name, err)
	}
	defer conn.Close()
	h := sha256.New()
	var src io.Reader = io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), n), h)
	if pace != nil {
		src = &pacedReader{r: src, pace: pace}
	}
	start := time.Now()
	if _, err := io.Copy(conn, src); err != nil {
		return 0, fmt.Errorf("sending: %w", err)
	}
	conn.(*net.TCPConn).CloseWrite()
	var r result
	select {
	case r = <-recv:
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("receiver did not finish within 2m")
	}
	d := time.Since(start)
	if r.err != nil {
		return d, fmt.Errorf("receiving: %w", r.err)
	}
	if r.sum != [32]byte(h.Sum(nil)) {
		return d, fmt.Errorf("%d bytes arrived corrupted (SHA-256 differs)", n)
	}
	return d, nil
}
