// Package control is the daemon's control socket: a line-oriented JSON
// protocol on a Unix socket (0660 root:socket_group, peer credentials
// checked), its server (status, watch, up, down, reload, trust, untrust) and
// the client functions the CLI and the notify agent use.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/policy"
	"github.com/roamtun/roamtun/watcher"
)

// The control protocol: one JSON request per line, one JSON response per
// line ("watch" answers with one status per line until the client hangs up).
// A bad request gets {"ok":false,"error":…} naming the field; the daemon
// carries on.

// Request is a control request.
type Request struct {
	Cmd     string `json:"cmd"` // status | watch | up | down | reload | trust | untrust | network | seen
	Profile string `json:"profile,omitempty"`
	// trust / untrust of the current network:
	PinBSSID   bool     `json:"pin_bssid,omitempty"`
	PinGateway bool     `json:"pin_gateway,omitempty"`
	Security   []string `json:"security,omitempty"`
	Verify     string   `json:"verify,omitempty"`
}

// Response is a control response.
type Response struct {
	OK      bool                 `json:"ok"`
	Error   string               `json:"error,omitempty"`
	Status  *daemon.Status       `json:"status,omitempty"`
	Message string               `json:"message,omitempty"`
	Network *watcher.Network     `json:"network,omitempty"`
	Seen    []daemon.SeenNetwork `json:"seen,omitempty"`
}

// Limits that keep one client (or a socket_group member running many) from
// silencing the socket for everyone else.
const (
	// maxRequest bounds one request line, and what a watch client may send.
	maxRequest = 64 << 10
	// maxConns bounds the clients served at once; maxConnsPerUID bounds
	// those of one user. Root is counted in neither: a member of
	// socket_group cannot lock root out.
	maxConns       = 64
	maxConnsPerUID = 8
	// defaultIdleTimeout closes a client that sends no complete request for
	// this long (a watch client is exempt: it waits by design).
	defaultIdleTimeout = 30 * time.Second
	// writeTimeout drops a client that does not take its answer.
	writeTimeout = 5 * time.Second
	// acceptBackoffMax caps the pause after a failed accept (EMFILE, ENFILE,
	// ENOBUFS): the socket recovers when the pressure is gone.
	acceptBackoffMax = time.Second
)

// unixListener is the part of *net.UnixListener that Serve uses (tests
// inject accept errors through it).
type unixListener interface {
	AcceptUnix() (*net.UnixConn, error)
	Close() error
}

// Backend is what the socket drives: the daemon's state machine
// (*daemon.Daemon).
type Backend interface {
	Status() daemon.Status
	Subscribe() (<-chan daemon.Status, func())
	Network(ctx context.Context) (watcher.Network, error)
	Up(ctx context.Context, profile string) error
	Down(ctx context.Context) error
	Reload(ctx context.Context) error
	Seen() []daemon.SeenNetwork
}

// Server serves the control socket.
type Server struct {
	Daemon    Backend
	PolicyDir string
	Profiles  policy.Profiles
	Log       *slog.Logger
	// Group (by name) whose members may use the socket besides root.
	Group string
	// IdleTimeout closes a client that sends no complete request for this
	// long; zero means 30 s.
	IdleTimeout time.Duration
	// Reload re-reads the policy (the reload request, and after trust or
	// untrust); nil: Daemon.Reload. The daemon's command sets one that also tells
	// systemd.
	Reload func(ctx context.Context) error

	ln  unixListener
	gid int
	wg  sync.WaitGroup

	mu     sync.Mutex
	conns  int         // clients being served, root's not counted
	perUID map[int]int // the same, per uid
}

// Listen creates the socket at path, mode 0660, owned by root:Group. A stale
// socket from a dead daemon is replaced; a live one is an error.
func (c *Server) Listen(path string) error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.gid = -1
	if c.Group != "" {
		g, err := user.LookupGroup(c.Group)
		if err != nil {
			c.Log.Warn("socket_group not found: only root may use the control socket", "group", c.Group, "err", err)
		} else if c.gid, err = strconv.Atoi(g.Gid); err != nil {
			c.gid = -1
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if conn, err := net.Dial("unix", path); err == nil {
		conn.Close()
		return fmt.Errorf("%s: another daemon is listening", path)
	}
	os.Remove(path)
	// Create the socket with no access for others from the first moment.
	old := unix.Umask(0o117)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(true)
	if c.gid >= 0 {
		if err := os.Chown(path, 0, c.gid); err != nil {
			c.Log.Warn("control socket: chown", "err", err)
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return err
	}
	c.ln = ln
	return nil
}

// Serve accepts clients until ctx is done, and returns only then (nil) or
// when the listener is gone. A failed accept (out of descriptors, say) is
// logged and retried after a pause: it must not end the socket for good.
func (c *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.ln.Close() })
	defer stop()
	defer c.wg.Wait()
	backoff := 5 * time.Millisecond
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("control socket: %w", err)
			}
			c.Log.Warn("control: accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, acceptBackoffMax)
			continue
		}
		backoff = 5 * time.Millisecond
		cred, err := peerCred(conn)
		if err != nil {
			c.Log.Warn("control: peer credentials", "err", err)
			conn.Close()
			continue
		}
		if !c.acquire(int(cred.Uid)) {
			c.Log.Warn("control: too many clients; refused", "uid", cred.Uid, "pid", cred.Pid)
			refuse(conn, "busy: too many control clients, try again later")
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer c.release(int(cred.Uid))
			defer conn.Close()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stopConn := context.AfterFunc(cctx, func() { conn.Close() })
			defer stopConn()
			c.serveConn(cctx, conn, cred)
		}()
	}
}

// acquire counts a client in, unless its uid or all clients are at their
// limit. Root always gets in.
func (c *Server) acquire(uid int) bool {
	if uid == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perUID == nil {
		c.perUID = map[int]int{}
	}
	if c.conns >= maxConns || c.perUID[uid] >= maxConnsPerUID {
		return false
	}
	c.conns++
	c.perUID[uid]++
	return true
}

func (c *Server) release(uid int) {
	if uid == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns--
	if c.perUID[uid]--; c.perUID[uid] == 0 {
		delete(c.perUID, uid)
	}
}

// refuse sends a client one error line, without waiting for it, and hangs up.
func refuse(conn *net.UnixConn, msg string) {
	conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	json.NewEncoder(conn).Encode(Response{Error: msg})
	conn.Close()
}

// peerCred reads the connecting process's credentials (SO_PEERCRED).
func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return nil, err
	}
	return cred, cerr
}

// admitted checks the peer's credentials: root, our own uid, or a member
// (primary or supplementary, as the kernel sees the process) of Group.
func (c *Server) admitted(cred *unix.Ucred) (string, error) {
	who := fmt.Sprintf("uid %d pid %d", cred.Uid, cred.Pid)
	if cred.Uid == 0 || int(cred.Uid) == os.Geteuid() {
		return who, nil
	}
	if c.gid >= 0 && (int(cred.Gid) == c.gid || slices.Contains(procGroups(int(cred.Pid)), c.gid)) {
		return who, nil
	}
	return who, fmt.Errorf("%s is neither root nor in group %q", who, c.Group)
}

// procGroups reads a process's supplementary groups.
func procGroups(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			var gs []int
			for _, f := range strings.Fields(rest) {
				if g, err := strconv.Atoi(f); err == nil {
					gs = append(gs, g)
				}
			}
			return gs
		}
	}
	return nil
}

func (c *Server) serveConn(ctx context.Context, conn *net.UnixConn, cred *unix.Ucred) {
	who, err := c.admitted(cred)
	if err != nil {
		c.Log.Warn("control: refused", "err", err)
		refuse(conn, "permission denied: "+err.Error())
		return
	}
	idle := c.IdleTimeout
	if idle <= 0 {
		idle = defaultIdleTimeout
	}
	send := func(r Response) error {
		conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		return json.NewEncoder(conn).Encode(r)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxRequest)
	for line := 1; ; line++ {
		conn.SetReadDeadline(time.Now().Add(idle))
		if !sc.Scan() {
			break
		}
		var req Request
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			if send(Response{Error: fmt.Sprintf("request line %d: %v", line, err)}) != nil {
				return
			}
			continue
		}
		if req.Cmd == "watch" {
			conn.SetReadDeadline(time.Time{})
			c.watch(ctx, conn, send)
			return
		}
		resp := c.handle(ctx, req)
		if !resp.OK {
			c.Log.Info("control: request failed", "from", who, "cmd", req.Cmd, "err", resp.Error)
		}
		if err := send(resp); err != nil {
			return
		}
	}
	switch err := sc.Err(); {
	case err == nil, errors.Is(err, net.ErrClosed):
	case errors.Is(err, os.ErrDeadlineExceeded):
		send(Response{Error: fmt.Sprintf("no request for %s: closing", idle)})
	default:
		send(Response{Error: "request: " + err.Error()})
	}
}

// watch streams status changes until the client hangs up, which is noticed
// at once: a goroutine reads (and drops) what the client sends, and its end
// ends the stream, so a client gone away holds no descriptor until the next
// change of state.
func (c *Server) watch(ctx context.Context, conn *net.UnixConn, send func(Response) error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hungUp := make(chan struct{})
	go func() {
		defer close(hungUp)
		defer cancel()
		io.Copy(io.Discard, io.LimitReader(conn, maxRequest))
	}()
	defer func() { conn.Close(); <-hungUp }()
	ch, unsubscribe := c.Daemon.Subscribe()
	defer unsubscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-ch:
			live := c.Daemon.Status() // with byte counters
			if live.State == s.State {
				s = live
			}
			if err := send(Response{OK: true, Status: &s}); err != nil {
				return
			}
		}
	}
}

func (c *Server) handle(ctx context.Context, req Request) Response {
	fail := func(err error) Response { return Response{Error: err.Error()} }
	switch req.Cmd {
	case "status":
		s := c.Daemon.Status()
		return Response{OK: true, Status: &s}
	case "seen":
		return Response{OK: true, Seen: c.Daemon.Seen()}
	case "network":
		n, err := c.Daemon.Network(ctx)
		if err != nil {
			return fail(err)
		}
		return Response{OK: true, Network: &n}
	case "up":
		if err := c.Daemon.Up(ctx, req.Profile); err != nil {
			return fail(err)
		}
		return Response{OK: true, Message: "tunnel forced on until the network changes"}
	case "down":
		if err := c.Daemon.Down(ctx); err != nil {
			return fail(err)
		}
		return Response{OK: true, Message: "tunnel off: the network is used directly until it changes"}
	case "reload":
		if err := c.reload(ctx); err != nil {
			return fail(fmt.Errorf("policy not reloaded, the last good one stays: %w", err))
		}
		return Response{OK: true, Message: "policy reloaded"}
	case "trust", "untrust":
		n, err := c.Daemon.Network(ctx)
		if err != nil {
			return fail(err)
		}
		if n.IsZero() {
			return fail(errors.New("no current network"))
		}
		wired := n.Kind != watcher.KindWifi
		where := n.DisplaySSID()
		if wired {
			if n.GatewayMAC == "" {
				return fail(fmt.Errorf("the wired network on %s: its gateway's MAC is not known yet (try again in a moment)", n.Interface))
			}
			where = "the wired network of gateway " + n.GatewayMAC
		}
		var msg string
		if req.Cmd == "trust" {
			spec := policy.TrustSpec{SSID: n.SSID, Security: req.Security, Verify: req.Verify, Profile: req.Profile}
			switch {
			case wired:
				spec.Interface, spec.SSID, spec.GatewayMAC = "ethernet", "", []string{n.GatewayMAC}
			default:
				if req.PinBSSID && n.BSSID != "" {
					spec.BSSID = []string{n.BSSID}
				}
				if req.PinGateway {
					if n.GatewayMAC == "" {
						return fail(errors.New("the gateway's MAC is not known yet"))
					}
					spec.GatewayMAC = []string{n.GatewayMAC}
				}
			}
			if err := policy.Trust(c.PolicyDir, spec, c.Profiles); err != nil {
				return fail(err)
			}
			msg = "trusting " + where
		} else {
			var removed bool
			if wired {
				removed, err = policy.UntrustWired(c.PolicyDir, n.GatewayMAC, c.Profiles)
			} else {
				removed, err = policy.Untrust(c.PolicyDir, n.SSID, c.Profiles)
			}
			if err != nil {
				return fail(err)
			}
			msg = "no rule of roamtun's trusted " + where
			if removed {
				msg = "no longer trusting " + where
			}
		}
		if err := c.reload(ctx); err != nil {
			return fail(err)
		}
		return Response{OK: true, Message: msg}
	case "":
		return fail(errors.New(`request: "cmd" is required`))
	}
	return fail(fmt.Errorf("request: unknown cmd %q", req.Cmd))
}

// ErrNotRunning is wrapped by the errors of Call and Watch when nothing
// listens on the control socket: it does not exist or refuses connections.
// (A socket the caller may not open is another error: the daemon runs.)
var ErrNotRunning = errors.New("roamtun daemon is not running")

func (c *Server) reload(ctx context.Context) error {
	if c.Reload != nil {
		return c.Reload(ctx)
	}
	return c.Daemon.Reload(ctx)
}

// Call sends one request to the daemon's socket and returns its response.
func Call(ctx context.Context, socket string, req Request) (Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%w (nothing listens on %s): %w", ErrNotRunning, socket, err)
		}
		return Response{}, fmt.Errorf("cannot reach the daemon at %s: %w", socket, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// A refused client may find the connection closed under its request:
	// the refusal it was sent is still there to read.
	werr := json.NewEncoder(conn).Encode(req)
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if werr != nil {
			return Response{}, werr
		}
		return Response{}, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// Watch streams status changes from the daemon to fn until ctx is done or
// the daemon goes away.
func Watch(ctx context.Context, socket string, fn func(daemon.Status) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("%w (nothing listens on %s): %w", ErrNotRunning, socket, err)
		}
		return fmt.Errorf("cannot reach the daemon at %s: %w", socket, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	werr := json.NewEncoder(conn).Encode(Request{Cmd: "watch"}) // a refusal is still read below
	dec := json.NewDecoder(conn)
	for {
		var resp Response
		if err := dec.Decode(&resp); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("daemon stream: %w", errors.Join(werr, err))
		}
		if !resp.OK || resp.Status == nil {
			return errors.New(resp.Error)
		}
		if err := fn(*resp.Status); err != nil {
			return err
		}
	}
}
