package notify

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/lab"
)

// desktop is a private session bus with Xvfb and dunst, a real
// notification server, on it; every process is killed at the end.
type desktop struct {
	addr    string
	env     []string
	monitor string // dbus-monitor's capture
}

func startDesktop(t *testing.T) *desktop {
	t.Helper()
	for _, c := range []string{"dbus-daemon", "dbus-monitor", "Xvfb", "dunst", "dunstctl"} {
		lab.RequireCommand(t, c)
	}
	dir, err := os.MkdirTemp("", "roamtun-desktop-")
	if err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Process.Kill()
			procs[i].Wait()
		}
		os.RemoveAll(dir)
	})
	start := func(c *exec.Cmd) {
		t.Helper()
		if err := c.Start(); err != nil {
			t.Fatalf("%s: %v", c.Path, err)
		}
		procs = append(procs, c)
	}
	d := &desktop{addr: "unix:path=" + filepath.Join(dir, "bus"), monitor: filepath.Join(dir, "monitor.txt")}
	start(exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--address="+d.addr))
	waitFor(t, "session bus", func() bool {
		c, err := dbus.Connect(d.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// Xvfb picks a free display and writes its number to fd 3.
	r, w, _ := os.Pipe()
	x := exec.Command("Xvfb", "-displayfd", "3", "-nolisten", "tcp", "-screen", "0", "800x600x24")
	x.ExtraFiles = []*os.File{w}
	start(x)
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if err != nil {
		t.Fatalf("Xvfb display: %v", err)
	}
	// dunst's context menu ("dmenu") picks the entry named in PICK.
	pick := filepath.Join(dir, "pick.sh")
	os.WriteFile(pick, []byte("#!/bin/sh\ncat > "+dir+"/menu.txt\ngrep -m1 \"$(cat "+dir+"/want)\" "+dir+"/menu.txt\n"), 0o755)
	rc := filepath.Join(dir, "dunstrc")
	os.WriteFile(rc, []byte("[global]\n    timeout = 0\n    dmenu = "+pick+"\n"), 0o644)
	d.env = append(os.Environ(), "DISPLAY=:"+strings.TrimSpace(line), "DBUS_SESSION_BUS_ADDRESS="+d.addr,
		"HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_RUNTIME_DIR="+dir)
	mon, _ := os.Create(d.monitor)
	m := exec.Command("dbus-monitor", "--address", d.addr, "interface='org.freedesktop.Notifications'")
	m.Stdout, m.Stderr = mon, mon
	start(m)
	s := exec.Command("dunst", "-config", rc)
	s.Env = d.env
	start(s)
	waitFor(t, "dunst on the bus", func() bool {
		c, err := dbus.Connect(d.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		var has bool
		c.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, service).Store(&has)
		return has
	})
	return d
}

func (d *desktop) want(t *testing.T, label string) {
	os.WriteFile(filepath.Join(filepath.Dir(d.monitor), "want"), []byte(label), 0o644)
}

func (d *desktop) dunstctl(t *testing.T, args ...string) string {
	t.Helper()
	c := exec.Command("dunstctl", args...)
	c.Env = d.env
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("dunstctl %v: %v %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (d *desktop) notifyCalls() int {
	b, _ := os.ReadFile(d.monitor)
	return strings.Count(string(b), "member=Notify")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDunst: against a real notification server: connecting → up is one
// bubble updated in place; a burst is one Notify call; clicking
// "Disconnect" in dunst's menu comes back as the action.
func TestDunst(t *testing.T) {
	d := startDesktop(t)
	conn, err := dbus.Connect(d.addr, dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var actions []string
	a, err := New(Options{Conn: conn, Coalesce: 200 * time.Millisecond, OnAction: func(act string) error {
		mu.Lock()
		actions = append(actions, act)
		mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !a.actionsOK {
		t.Fatal("dunst should support actions")
	}
	events := make(chan Event)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, events) }()
	defer func() { cancel(); <-done }()

	up := Event{State: "up", SSID: "Cafe", Interface: "wlan0", Profile: "home", Local: "10.9.0.2", Remote: "10.9.0.1"}
	events <- Event{State: "connecting", SSID: "Cafe", Interface: "wlan0", Profile: "home"}
	waitFor(t, "the connecting bubble", func() bool { return a.Posts() == 1 })
	events <- up
	waitFor(t, "the up bubble", func() bool { return a.Posts() == 2 })
	waitFor(t, "dunst showing it", func() bool { return d.dunstctl(t, "count", "displayed") == "1" })
	if n := d.dunstctl(t, "count", "displayed"); n != "1" {
		t.Errorf("dunst shows %s notifications: connecting → up should be one bubble", n)
	}

	// A storm: 100 events in a burst are one Notify call (the newest wins).
	before := a.Posts()
	for i := range 100 {
		e := up
		if i%2 == 0 {
			e.State, e.Reason = "reconnecting", fmt.Sprintf("redialing: attempt %d", i)
		}
		events <- e
	}
	events <- Event{State: "reconnecting", Reason: "redialing: echo timeout", SSID: "Cafe", Profile: "home"}
	waitFor(t, "the burst's bubble", func() bool { return a.Posts() > before })
	time.Sleep(500 * time.Millisecond)
	if got := a.Posts() - before; got != 1 {
		t.Errorf("a burst of 101 events made %d Notify calls, want 1", got)
	}
	// The same again changes nothing.
	events <- Event{State: "reconnecting", Reason: "redialing: echo timeout", SSID: "Cafe", Profile: "home"}
	time.Sleep(500 * time.Millisecond)
	if got := a.Posts() - before; got != 1 {
		t.Errorf("an identical bubble was posted again")
	}
	waitFor(t, "dbus-monitor seeing the calls", func() bool { return d.notifyCalls() >= a.Posts() })

	// Back up, then the user clicks "Disconnect" in dunst.
	events <- up
	waitFor(t, "up again", func() bool { return a.Posts() == before+2 })
	d.want(t, "Disconnect")
	d.dunstctl(t, "action", "0")
	waitFor(t, "the Disconnect action", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(actions) == 1
	})
	mu.Lock()
	if actions[0] != "disconnect" {
		t.Errorf("action %q, want disconnect", actions[0])
	}
	mu.Unlock()
	t.Logf("Notify calls seen on the bus: %d", d.notifyCalls())
}

// TestForgedSignals: an ActionInvoked sent by anyone but the notification
// server, or with a wrong body, is ignored.
func TestForgedSignals(t *testing.T) {
	d := startDesktop(t)
	conn, err := dbus.Connect(d.addr, dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	called := make(chan string, 4)
	a, err := New(Options{Conn: conn, OnAction: func(act string) error { called <- act; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan Event)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, events) }()
	defer func() { cancel(); <-done }()
	events <- Event{State: "up", SSID: "Cafe", Profile: "home", Local: "10.9.0.2", Remote: "10.9.0.1"}
	waitFor(t, "a bubble", func() bool { return a.Posts() == 1 })
	a.mu.Lock()
	id := a.bubble
	a.mu.Unlock()
	evil, err := dbus.Connect(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	evil.Emit(path, iface+".ActionInvoked", id, "disconnect")
	evil.Emit(path, iface+".ActionInvoked", "not-an-id")
	select {
	case act := <-called:
		t.Fatalf("a forged signal triggered %q", act)
	case <-time.After(time.Second):
	}
}
