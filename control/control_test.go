package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/control"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/lab"
)

const (
	controlChildEnv     = "ROAMTUN_CONTROL_CHILD_SOCKET"
	controlChildHoldEnv = "ROAMTUN_CONTROL_CHILD_HOLD"
)

// TestControlChild is the other user's side of TestControlSocket: it only
// runs when that test starts it under another uid.
func TestControlChild(t *testing.T) {
	sock := os.Getenv(controlChildEnv)
	if sock == "" {
		return // only as TestControlSocket's helper process
	}
	if os.Getenv(controlChildHoldEnv) != "" {
		holdConnections(sock)
		return
	}
	_, err := control.Call(context.Background(), sock, control.Request{Cmd: "status"})
	if err == nil {
		os.Stdout.WriteString("RESULT admitted\n")
		return
	}
	os.Stdout.WriteString("RESULT refused: " + err.Error() + "\n")
}

// holdConnections is the greedy group member of TestControlLimits: it opens
// 12 connections, asks for the status on each, reports how many were served
// and how many refused as busy, then waits for the daemon to close the
// served ones as idle.
func holdConnections(sock string) {
	var served []*bufio.Reader
	busy := 0
	for range 12 {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Printf("RESULT dial: %v\n", err)
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		conn.Write([]byte(`{"cmd":"status"}` + "\n"))
		r := bufio.NewReader(conn)
		var resp control.Response
		if err := json.NewDecoder(r).Decode(&resp); err != nil {
			fmt.Printf("RESULT read: %v\n", err)
			return
		}
		switch {
		case resp.OK:
			served = append(served, r)
		case strings.Contains(resp.Error, "busy"):
			busy++
		default:
			fmt.Printf("RESULT unexpected: %+v\n", resp)
			return
		}
	}
	fmt.Printf("HOLDING served=%d busy=%d\n", len(served), busy)
	closed := 0
	for _, r := range served {
		// The idle timeout's notice, then end of file.
		r.ReadBytes('\n')
		if _, err := r.ReadByte(); err != nil {
			closed++
		}
	}
	fmt.Printf("RESULT served=%d busy=%d idle-closed=%d\n", len(served), busy, closed)
}

func startControl(t *testing.T, dir, group string, tweak ...func(*control.Server)) (*control.Server, string) {
	t.Helper()
	cfg := &config.Config{Profiles: map[string]*config.Profile{}}
	d := daemon.New(daemon.Options{Config: cfg})
	c := &control.Server{Daemon: d, PolicyDir: filepath.Join(dir, "networks.d"), Group: group}
	sock := filepath.Join(dir, "run", "roamtun.sock")
	if err := c.Listen(sock); err != nil {
		t.Fatal(err)
	}
	for _, f := range tweak {
		f(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { c.Serve(ctx); done <- struct{}{} }()
	go func() { d.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return c, sock
}

// asUser runs TestControlChild as uid/gid and returns its verdict.
func asUser(t *testing.T, sock string, uid, gid int) string {
	t.Helper()
	cmd := childAs(t, sock, uid, gid)
	out, _ := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "RESULT ") {
			return strings.TrimPrefix(l, "RESULT ")
		}
	}
	t.Fatalf("child gave no result:\n%s", out)
	return ""
}

// childAs prepares TestControlChild to run as uid/gid.
func childAs(t *testing.T, sock string, uid, gid int) *exec.Cmd {
	t.Helper()
	// The test binary lives in a directory only root may enter: run a copy.
	bin := filepath.Join(filepath.Dir(filepath.Dir(sock)), "control-child")
	if _, err := os.Stat(bin); err != nil {
		b, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^TestControlChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), controlChildEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	return cmd
}

// TestControlSocket: the socket is 0660 root:socket_group; a real second
// user outside the group is refused — by the file mode, and by the peer
// credential check when the mode is (wrongly) opened up; a member of the
// group is admitted.
func TestControlSocket(t *testing.T) {
	lab.RequirePrivileged(t)
	uid, gid, err := lab.EnsureLabUser()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	dir := worldDir(t)

	// socket_group = "root": the lab user is not a member.
	_, sock := startControl(t, dir, "root")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	if got := asUser(t, sock, uid, gid); !strings.Contains(got, "permission denied") {
		t.Errorf("outsider: %s, want refused by the file mode", got)
	}
	// Even if someone makes the socket world-writable, the daemon checks
	// the peer's credentials itself.
	os.Chmod(sock, 0o666)
	if got := asUser(t, sock, uid, gid); !strings.Contains(got, "neither root nor in group") {
		t.Errorf("outsider on an opened-up socket: %s, want refused by the credential check", got)
	}

	// A member of socket_group is let in.
	dir2 := worldDir(t)
	_, sock2 := startControl(t, dir2, g.Name)
	if got := asUser(t, sock2, uid, gid); got != "admitted" {
		t.Errorf("group member: %s, want admitted", got)
	}
}

// TestControlBadRequests: bad input gets an error naming the problem and
// the connection (and daemon) carry on.
func TestControlBadRequests(t *testing.T) {
	dir := t.TempDir()
	_, sock := startControl(t, dir, "")
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	ask := func(line string) control.Response {
		t.Helper()
		if _, err := conn.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		b, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var resp control.Response
		if err := json.Unmarshal(b, &resp); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		return resp
	}
	for _, c := range []struct{ req, want string }{
		{`{"cmd":"fly"}`, `unknown cmd "fly"`},
		{`{"cmd":"status","bogus":1}`, `unknown field "bogus"`},
		{`{"cmd":`, `request line 3`},
		{`{}`, `"cmd" is required`},
		{`{"cmd":"up","profile":"nope"}`, `nope`},
		{`{"cmd":"trust"}`, `no current network`},
	} {
		if resp := ask(c.req); resp.OK || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%s: %+v, want an error with %q", c.req, resp, c.want)
		}
	}
	if resp := ask(`{"cmd":"status"}`); !resp.OK || resp.Status == nil || resp.Status.State != daemon.StateIdle {
		t.Errorf("status after bad requests: %+v", resp)
	}
}

// worldDir is a directory another user can reach (t.TempDir's parent is 0700).
func worldDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "roamtun-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	os.MkdirAll(filepath.Join(dir, "run"), 0o755)
	return dir
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// waitFDs polls until the descriptor count is back to at most want.
func waitFDs(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for openFDs() > want {
		if time.Now().After(deadline) {
			t.Fatalf("open descriptors: %d, want at most %d (clients that hung up are still held)", openFDs(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestControlWatchHangup: a client that opens "watch" and hangs up is let
// go at once, not at the next change of state (which may never come):
// thousands of such clients cannot exhaust the daemon's descriptors.
func TestControlWatchHangup(t *testing.T) {
	_, sock := startControl(t, t.TempDir(), "")
	base := openFDs()
	for range 500 {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(`{"cmd":"watch"}` + "\n"))
		if _, err := bufio.NewReader(conn).ReadBytes('\n'); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	waitFDs(t, base)
	if _, err := control.Call(context.Background(), sock, control.Request{Cmd: "status"}); err != nil {
		t.Fatalf("status after 500 watch hang-ups: %v", err)
	}
}

// TestControlAcceptErrors: failed accepts (EMFILE) are transient: the
// socket answers again once they stop.
func TestControlAcceptErrors(t *testing.T) {
	_, sock := startControl(t, t.TempDir(), "", func(c *control.Server) { control.FailAccepts(c, 5) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, err := control.Call(ctx, sock, control.Request{Cmd: "status"})
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the socket never recovered from failed accepts: %v", err)
		}
	}
}

// TestControlLimits: a socket_group member holding connections is served
// up to its share and refused as busy beyond it, root still gets in while
// it holds them, and idle connections are closed after the idle timeout.
func TestControlLimits(t *testing.T) {
	lab.RequirePrivileged(t)
	uid, gid, err := lab.EnsureLabUser()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	dir := worldDir(t)
	_, sock := startControl(t, dir, g.Name, func(c *control.Server) { control.SetIdleTimeout(c, 2*time.Second) })
	cmd := childAs(t, sock, uid, gid)
	cmd.Env = append(cmd.Env, controlChildHoldEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	sc := bufio.NewScanner(out)
	var result string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "HOLDING ") {
			if _, err := control.Call(context.Background(), sock, control.Request{Cmd: "status"}); err != nil {
				t.Errorf("root while a member holds its connections: %v", err)
			}
		}
		if r, ok := strings.CutPrefix(line, "RESULT "); ok {
			result = r
		}
	}
	if want := "served=8 busy=4 idle-closed=8"; result != want {
		t.Errorf("greedy member: %q, want %q", result, want)
	}
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}
