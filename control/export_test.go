package control

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// flakyListener fails its first n accepts with EMFILE, as a process out of
// descriptors would.
type flakyListener struct {
	unixListener
	fails atomic.Int32
}

func (l *flakyListener) AcceptUnix() (*net.UnixConn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: syscall.EMFILE}
	}
	return l.unixListener.AcceptUnix()
}

// FailAccepts makes the next n accepts of c fail (call before Serve).
func FailAccepts(c *Server, n int) {
	f := &flakyListener{unixListener: c.ln}
	f.fails.Store(int32(n))
	c.ln = f
}

// SetIdleTimeout shortens how long an idle client is kept.
func SetIdleTimeout(c *Server, d time.Duration) { c.IdleTimeout = d }
