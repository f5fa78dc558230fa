// Package notify turns the daemon's status changes into freedesktop desktop
// notifications on the user's session bus, and the user's clicks on their
// actions into requests. It runs in the user's session (roamtun notify) and
// needs no privileges.
//
// The tunnel's story is one bubble updated in place (replaces_id):
// connecting → up → reconnecting → up …; bursts are coalesced; identical
// bubbles are not posted twice.
package notify

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"
)

const (
	service = "org.freedesktop.Notifications"
	path    = "/org/freedesktop/Notifications"
	iface   = "org.freedesktop.Notifications"
)

// Event is one daemon status, reduced to what a notification needs.
type Event struct {
	State         string // idle | direct | connecting | up | reconnecting | blocked | portal | stopped
	Reason        string
	SSID          string // display form
	Interface     string
	Profile       string
	Local, Remote string
	TunnelVision  bool
}

// Options configure an Agent.
type Options struct {
	Conn     *dbus.Conn // a session bus connection
	AppName  string     // default "roamtun"
	Coalesce time.Duration
	// OnAction is called when the user clicks "disconnect", "trust" or "signin".
	OnAction func(action string) error
	Log      *slog.Logger
}

// Agent posts notifications for events.
type Agent struct {
	o   Options
	obj dbus.BusObject

	mu        sync.Mutex
	owner     string // the server's unique name: signals from others are ignored
	bubble    uint32 // the tunnel story's notification
	last      string // what the bubble shows now
	ours      map[uint32]bool
	warned    map[string]bool
	actionsOK bool
	markup    bool // the server reads bodies as markup ("body-markup")
	posts     int
}

// New checks that a notification server is there and subscribes to its
// signals.
func New(o Options) (*Agent, error) {
	if o.Conn == nil {
		return nil, errors.New("notify: no session bus connection")
	}
	if o.AppName == "" {
		o.AppName = "roamtun"
	}
	if o.Coalesce <= 0 {
		o.Coalesce = 300 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{o: o, obj: o.Conn.Object(service, path), ours: map[uint32]bool{}, warned: map[string]bool{}}
	var name, vendor, version, spec string
	if err := a.obj.Call(iface+".GetServerInformation", 0).Store(&name, &vendor, &version, &spec); err != nil {
		return nil, fmt.Errorf("notify: no notification server on the session bus: %w", err)
	}
	var caps []string
	if err := a.obj.Call(iface+".GetCapabilities", 0).Store(&caps); err == nil {
		a.actionsOK = slices.Contains(caps, "actions")
		a.markup = slices.Contains(caps, "body-markup")
	}
	if err := o.Conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, service).Store(&a.owner); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	for _, m := range []dbus.MatchOption{dbus.WithMatchMember("ActionInvoked"), dbus.WithMatchMember("NotificationClosed")} {
		if err := o.Conn.AddMatchSignal(dbus.WithMatchInterface(iface), m); err != nil {
			return nil, fmt.Errorf("notify: %w", err)
		}
	}
	if err := o.Conn.AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, service)); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	o.Log.Info("notification server", "name", name, "vendor", vendor, "version", version, "actions", a.actionsOK)
	return a, nil
}

// Posts is how many Notify calls were made (tests, diagnostics).
func (a *Agent) Posts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.posts
}

// Run posts notifications for events until ctx is done or events closes.
func (a *Agent) Run(ctx context.Context, events <-chan Event) error {
	sigs := make(chan *dbus.Signal, 64)
	a.o.Conn.Signal(sigs)
	defer a.o.Conn.RemoveSignal(sigs)
	var pending *Event
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-events:
			if !ok {
				if pending != nil {
					a.post(*pending)
				}
				return nil
			}
			pending = &e
			if timer == nil {
				timer = time.After(a.o.Coalesce)
			}
		case <-timer:
			timer = nil
			if pending != nil {
				a.post(*pending)
				pending = nil
			}
		case s := <-sigs:
			a.signal(s)
		}
	}
}

// bubbleFor says what an event shows; ok false: nothing to show.
func bubbleFor(e Event) (summary, body string, actions []string, urgency byte, ok bool) {
	where := e.SSID
	if where == "" {
		where = e.Interface
	}
	switch {
	case strings.Contains(e.Reason, "host key"):
		return "roamtun: the server's identity does not match!", e.Reason +
			"\nSomeone may be intercepting the connection. The tunnel is not used.", []string{"disconnect", "Use the network directly"}, 2, true
	}
	switch e.State {
	case "connecting":
		return "Untrusted network: connecting the tunnel", fmt.Sprintf("%s: everything will go through %s.", where, e.Profile),
			[]string{"disconnect", "Disconnect"}, 1, true
	case "up":
		return "Tunnel up", fmt.Sprintf("%s is untrusted: all traffic goes through %s (%s → %s).", where, e.Profile, e.Local, e.Remote),
			[]string{"disconnect", "Disconnect", "trust", "Trust this network"}, 1, true
	case "reconnecting":
		return "Tunnel dropped: reconnecting", e.Reason, []string{"disconnect", "Disconnect"}, 1, true
	case "direct":
		return "Trusted network", fmt.Sprintf("%s is used directly: %s", where, e.Reason), nil, 0, true
	case "blocked":
		return "Network blocked", fmt.Sprintf("%s: nothing leaves but the tunnel's own connection. %s", where, e.Reason), nil, 2, true
	case "portal":
		// Summaries are plain text to some servers and markup to others:
		// nothing the network chose (its name) goes into one.
		return "Sign in to this network", where + ": " + e.Reason, []string{"signin", "Sign in"}, 1, true
	case "stopped":
		return "roamtun stopped", e.Reason, nil, 1, true
	}
	return "", "", nil, 0, false
}

func (a *Agent) post(e Event) {
	if e.TunnelVision {
		key := e.Interface + "\x00" + e.SSID
		a.mu.Lock()
		first := !a.warned[key]
		a.warned[key] = true
		a.mu.Unlock()
		if first {
			a.notify(0, "This network tries to redirect traffic (TunnelVision)",
				fmt.Sprintf("%s's DHCP pushes routes over the default route. roamtun's tunnel is not affected.", e.SSID), nil, 2)
		}
	}
	summary, body, actions, urgency, ok := bubbleFor(e)
	if !ok {
		return
	}
	if !a.actionsOK {
		actions = nil
	}
	key := fmt.Sprint(summary, "\x00", body, "\x00", actions, urgency)
	a.mu.Lock()
	if key == a.last {
		a.mu.Unlock()
		return
	}
	replaces := a.bubble
	a.mu.Unlock()
	id, err := a.notify(replaces, summary, body, actions, urgency)
	if err != nil {
		return
	}
	a.mu.Lock()
	a.bubble, a.last = id, key
	a.mu.Unlock()
}

func (a *Agent) notify(replaces uint32, summary, body string, actions []string, urgency byte) (uint32, error) {
	if actions == nil {
		actions = []string{}
	}
	// What a body holds comes from the network (its SSID), the far end
	// (ssh's and PPP's words) and the daemon: shown as text, never read as
	// markup (a link, an image, a fake "Trusted" line).
	summary, body = plainText(summary), plainText(body)
	if a.markup {
		body = html.EscapeString(body)
	}
	hints := map[string]dbus.Variant{"urgency": dbus.MakeVariant(urgency), "category": dbus.MakeVariant("network")}
	var id uint32
	err := a.obj.Call(iface+".Notify", 0, a.o.AppName, replaces, "network-vpn", summary, body, actions, hints, int32(-1)).Store(&id)
	if err != nil {
		a.o.Log.Warn("notify: Notify failed", "err", err)
		return 0, err
	}
	a.mu.Lock()
	a.posts++
	a.ours[id] = true
	a.mu.Unlock()
	return id, nil
}

// plainText replaces control characters (but newlines) and invalid UTF-8
// with U+FFFD, so a name cannot rewrite the lines around it.
func plainText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || (unicode.IsPrint(r) || r == ' ') && r != utf8.RuneError {
			return r
		}
		return utf8.RuneError
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

func (a *Agent) signal(s *dbus.Signal) {
	switch s.Name {
	case "org.freedesktop.DBus.NameOwnerChanged":
		var name, old, new string
		if dbus.Store(s.Body, &name, &old, &new) != nil || name != service {
			return
		}
		a.mu.Lock()
		a.owner, a.bubble, a.last = new, 0, ""
		clear(a.ours)
		a.mu.Unlock()
		a.o.Log.Info("notification server changed", "owner", new)
		return
	}
	a.mu.Lock()
	owner := a.owner
	a.mu.Unlock()
	if s.Sender != owner {
		a.o.Log.Warn("notify: signal from someone other than the notification server ignored", "sender", s.Sender, "signal", s.Name)
		return
	}
	switch s.Name {
	case iface + ".ActionInvoked":
		var id uint32
		var action string
		if err := dbus.Store(s.Body, &id, &action); err != nil {
			a.o.Log.Warn("notify: bad ActionInvoked", "err", err)
			return
		}
		a.mu.Lock()
		ours := a.ours[id]
		a.mu.Unlock()
		if !ours || a.o.OnAction == nil {
			return
		}
		a.o.Log.Info("notification action", "action", action)
		if err := a.o.OnAction(action); err != nil {
			a.notify(0, "roamtun could not do that", err.Error(), nil, 1)
		}
	case iface + ".NotificationClosed":
		var id, reason uint32
		if err := dbus.Store(s.Body, &id, &reason); err != nil {
			a.o.Log.Warn("notify: bad NotificationClosed", "err", err)
			return
		}
		a.mu.Lock()
		if id == a.bubble {
			a.bubble, a.last = 0, "" // the next post starts a new bubble
		}
		delete(a.ours, id)
		a.mu.Unlock()
	}
}
