package notify

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/lab"
)

// TestDunst: against a real notification server: connecting → up is one
// bubble updated in place; a burst is one Notify call; clicking
// "Disconnect" in dunst's menu comes back as the action.
func TestDunst(t *testing.T) {
	d := lab.StartDesktop(t)
	conn, err := dbus.Connect(d.Addr, dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
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
	lab.WaitUntil(t, "the connecting bubble", func() bool { return a.Posts() == 1 })
	events <- up
	lab.WaitUntil(t, "the up bubble", func() bool { return a.Posts() == 2 })
	lab.WaitUntil(t, "dunst showing it", func() bool { return d.Dunstctl(t, "count", "displayed") == "1" })
	if n := d.Dunstctl(t, "count", "displayed"); n != "1" {
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
	lab.WaitUntil(t, "the burst's bubble", func() bool { return a.Posts() > before })
	// No sleep before counting: a marker event sent after the burst's
	// bubble is posted after anything the burst could still post, so the
	// count is final once the marker's bubble is there.
	marker := func(reason string) {
		t.Helper()
		n := a.Posts()
		events <- Event{State: "reconnecting", Reason: reason, SSID: "Cafe", Profile: "home"}
		lab.WaitUntil(t, "the marker's bubble", func() bool { return a.Posts() > n })
	}
	marker("marker 1")
	if got := a.Posts() - before; got != 2 {
		t.Errorf("a burst of 101 events made %d Notify calls, want 1", got-1)
	}
	// The same again changes nothing.
	events <- Event{State: "reconnecting", Reason: "marker 1", SSID: "Cafe", Profile: "home"}
	marker("marker 2")
	if got := a.Posts() - before; got != 3 {
		t.Errorf("an identical bubble was posted again (%d calls, want 3)", got)
	}
	lab.WaitUntil(t, "dbus-monitor seeing the calls", func() bool { return d.NotifyCalls() >= a.Posts() })

	// Back up, then the user clicks "Disconnect" in dunst.
	events <- up
	lab.WaitUntil(t, "up again", func() bool { return a.Posts() == before+4 })
	d.WantMenuEntry("Disconnect")
	d.Dunstctl(t, "action", "0")
	lab.WaitUntil(t, "the Disconnect action", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(actions) == 1
	})
	mu.Lock()
	if actions[0] != "disconnect" {
		t.Errorf("action %q, want disconnect", actions[0])
	}
	mu.Unlock()
	t.Logf("Notify calls seen on the bus: %d", d.NotifyCalls())
}

// TestForgedSignals: an ActionInvoked sent by anyone but the notification
// server, or with a wrong body, is ignored.
func TestForgedSignals(t *testing.T) {
	d := lab.StartDesktop(t)
	conn, err := dbus.Connect(d.Addr, dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
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
	lab.WaitUntil(t, "a bubble", func() bool { return a.Posts() == 1 })
	a.mu.Lock()
	id := a.bubble
	a.mu.Unlock()
	evil, err := dbus.Connect(d.Addr)
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

// TestMarkupEscaped: an SSID (the café chooses it) and reasons (ssh's and
// the far end's words) are shown as text by a server that reads bodies as
// markup (dunst): no tags, no links, no control characters, and nothing of
// the network's in a summary.
func TestMarkupEscaped(t *testing.T) {
	d := lab.StartDesktop(t)
	conn, err := dbus.Connect(d.Addr, dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	a, err := New(Options{Conn: conn, Coalesce: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !a.markup {
		t.Fatal("dunst should announce body-markup")
	}
	events := make(chan Event)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, events) }()
	defer func() { cancel(); <-done }()
	evil := `<b>Trusted</b> & <a href="http://evil.example/">safe</a>` + "\x1b[2J"
	events <- Event{State: "portal", SSID: evil, Reason: "sign in <img src=x>"}
	lab.WaitUntil(t, "the bubble", func() bool { return a.Posts() == 1 })
	lab.WaitUntil(t, "dbus-monitor seeing it", func() bool { return d.NotifyCalls() >= 1 })
	bus := d.BusLog()
	for _, bad := range []string{"<b>Trusted", "<a href", "<img", "\x1b", "Sign in to <"} {
		if strings.Contains(bus, bad) {
			t.Errorf("the Notify call carries %q unescaped:\n%s", bad, bus)
		}
	}
	for _, want := range []string{"&lt;b&gt;Trusted&lt;/b&gt; &amp; &lt;a href=&#34;http://evil.example/&#34;&gt;", "sign in &lt;img src=x&gt;", `"Sign in to this network"`} {
		if !strings.Contains(bus, want) {
			t.Errorf("the Notify call lacks %q:\n%s", want, bus)
		}
	}
}
