package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/lab"
)

const controlChildEnv = "ROAMTUN_CONTROL_CHILD_SOCKET"

// TestControlChild is the other user's side of TestControlSocket: it only
// runs when that test starts it under another uid.
func TestControlChild(t *testing.T) {
	sock := os.Getenv(controlChildEnv)
	if sock == "" {
		return // only as TestControlSocket's helper process
	}
	_, err := daemon.Call(context.Background(), sock, daemon.Request{Cmd: "status"})
	if err == nil {
		os.Stdout.WriteString("RESULT admitted\n")
		return
	}
	os.Stdout.WriteString("RESULT refused: " + err.Error() + "\n")
}

func startControl(t *testing.T, dir, group string) (*daemon.Control, string) {
	t.Helper()
	cfg := &config.Config{Profiles: map[string]*config.Profile{}}
	d := daemon.New(daemon.Options{Config: cfg})
	c := &daemon.Control{D: d, PolicyDir: filepath.Join(dir, "networks.d"), Group: group}
	sock := filepath.Join(dir, "run", "roamtun.sock")
	if err := c.Listen(sock); err != nil {
		t.Fatal(err)
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
	out, _ := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "RESULT ") {
			return strings.TrimPrefix(l, "RESULT ")
		}
	}
	t.Fatalf("child gave no result:\n%s", out)
	return ""
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
	ask := func(line string) daemon.Response {
		t.Helper()
		if _, err := conn.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		b, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var resp daemon.Response
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
