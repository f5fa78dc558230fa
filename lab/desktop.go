package lab

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Desktop is a private session bus with Xvfb and dunst — a real
// notification server — on it (LAB.md §5). Every process is killed when the
// test ends.
type Desktop struct {
	Addr    string   // the session bus address
	Env     []string // environment for clients: DISPLAY, DBUS_SESSION_BUS_ADDRESS, HOME...
	dir     string
	monitor string // dbus-monitor's capture
}

// StartDesktop starts the desktop for t. dunst's context menu ("dmenu") is
// a script choosing the entry named with WantMenuEntry, so that a click on
// an action can be made through the real server.
func StartDesktop(t TB) *Desktop {
	t.Helper()
	for _, c := range []string{"dbus-daemon", "dbus-monitor", "Xvfb", "dunst", "dunstctl"} {
		RequireCommand(t, c)
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
	d := &Desktop{Addr: "unix:path=" + filepath.Join(dir, "bus"), dir: dir, monitor: filepath.Join(dir, "monitor.txt")}
	start(exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--address="+d.Addr))
	WaitUntil(t, "the session bus", func() bool {
		c, err := dbus.Connect(d.Addr)
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
	pick := filepath.Join(dir, "pick.sh")
	os.WriteFile(pick, []byte("#!/bin/sh\ncat > "+dir+"/menu.txt\ngrep -m1 \"$(cat "+dir+"/want)\" "+dir+"/menu.txt\n"), 0o755)
	rc := filepath.Join(dir, "dunstrc")
	os.WriteFile(rc, []byte("[global]\n    timeout = 0\n    dmenu = "+pick+"\n"), 0o644)
	d.Env = append(os.Environ(), "DISPLAY=:"+strings.TrimSpace(line), "DBUS_SESSION_BUS_ADDRESS="+d.Addr,
		"HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_RUNTIME_DIR="+dir)
	mon, _ := os.Create(d.monitor)
	m := exec.Command("dbus-monitor", "--address", d.Addr, "interface='org.freedesktop.Notifications'")
	m.Stdout, m.Stderr = mon, mon
	start(m)
	s := exec.Command("dunst", "-config", rc)
	s.Env = d.Env
	start(s)
	WaitUntil(t, "dunst on the bus", func() bool {
		c, err := dbus.Connect(d.Addr)
		if err != nil {
			return false
		}
		defer c.Close()
		var has bool
		c.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.Notifications").Store(&has)
		return has
	})
	return d
}

// WantMenuEntry makes the next context menu dunst opens choose the entry
// containing label (an action's label).
func (d *Desktop) WantMenuEntry(label string) {
	os.WriteFile(filepath.Join(d.dir, "want"), []byte(label), 0o644)
}

// Dunstctl runs dunstctl against the desktop's dunst.
func (d *Desktop) Dunstctl(t TB, args ...string) string {
	t.Helper()
	c := exec.Command("dunstctl", args...)
	c.Env = d.Env
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("dunstctl %v: %v %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// NotifyCalls counts the Notify calls dbus-monitor saw on the bus.
func (d *Desktop) NotifyCalls() int {
	b, _ := os.ReadFile(d.monitor)
	return strings.Count(string(b), "member=Notify")
}

// BusLog is what dbus-monitor saw on the bus so far (Notify calls with
// their arguments).
func (d *Desktop) BusLog() string {
	b, _ := os.ReadFile(d.monitor)
	return string(b)
}

// WaitUntil polls cond for up to a minute (a deadline, not a measurement).
func WaitUntil(t TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
