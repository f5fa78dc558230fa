package tunnel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/roamtun/roamtun/internal/dial"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// Event is one step of a supervised tunnel, for logs, status and
// notifications: a dial attempt, the link up, the link down and why, the
// wait before the next attempt.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Attempt int       // dial attempts since the tunnel last stayed up
	Reason  error     // why the link went down (Kind "down")
	Cause   DialCause // why this attempt now (Kind "dialing")
	Wait    time.Duration
	Session ppp.Session      // Kind "up"
	Ifname  string           // Kind "up"
	Stats   func() ppp.Stats // Kind "up": the link's byte and packet counters
}

// EventKind is what happened to a supervised tunnel.
type EventKind string

// Event kinds, in the order a session goes through them.
const (
	EventDialing EventKind = "dialing" // an attempt starts
	EventUp      EventKind = "up"      // the link is up: Session, Ifname, Stats
	EventDown    EventKind = "down"    // the link ended: Reason
	EventWaiting EventKind = "waiting" // backing off: Wait
)

// ErrUplinkChanged ends a session whose uplink went from under it (see
// SuperviseOptions.Stale).
var ErrUplinkChanged = errors.New("the uplink changed under the tunnel: redialing at once")

// DialCause says why a dial attempt happens when it does.
type DialCause string

// Dial causes.
const (
	CauseFirst   DialCause = "first"          // the tunnel starts
	CauseDrop    DialCause = "link-dropped"   // after a link that was up went down
	CauseBackoff DialCause = "backoff"        // after an attempt that never came up (at once the first time, then waiting)
	CauseNetwork DialCause = "network-change" // the network changed during the wait (or under the link)
)

// SuperviseOptions say how to dial and run sessions.
type SuperviseOptions struct {
	Argv, Env []string // the dial command (ssh, or the profile's dial_command)
	// Dial, when set, gives the dial command for each attempt instead of
	// Argv and Env (another address of the server after a failed one); an
	// error fails the attempt.
	Dial      func(attempt int) (argv, env []string, err error)
	LogPrefix string // "ssh" or "dial"
	Session   SessionOptions
	Backoff   dial.Backoff
	Once      bool          // one session, no redial
	Kick      chan struct{} // a send makes a waiting redial happen at once (the network changed)
	// Stale, when set, is asked on a kick while the link is up: true means
	// the link cannot work any more (the uplink's address it ran over is
	// gone: a new lease, another network), so it is ended and redialed at
	// once instead of waiting for its echoes to go unanswered.
	Stale func() bool
	// Engine, when set, runs each attempt instead of the built-in engine
	// (StartCommand + RunSession): it dials argv/env its own way (the
	// system pppd with argv as its pty), calls o.OnUp once the link is up,
	// and returns why it ended (ppp.ErrClosed after ctx is cancelled).
	Engine  func(ctx context.Context, argv, env []string, o SessionOptions) error
	OnEvent func(Event)
	Log     *slog.Logger
}

// Supervise keeps a tunnel up: it dials, runs a session, and when the link
// dies — ssh exits, LCP ends, echoes go unanswered — dials again, at once
// the first time and then backing off. It returns nil when ctx is
// cancelled (the session is closed cleanly first), or with Once the reason
// the single session ended.
func Supervise(ctx context.Context, o SuperviseOptions) error {
	emit := func(e Event) {
		e.Time = time.Now()
		if o.OnEvent != nil {
			o.OnEvent(e)
		}
	}
	// A kick is honoured at most once per kickGap: whatever flood of
	// events the network produces, it cannot turn into a busy loop. One
	// that comes within the gap is deferred to its end, not dropped: the
	// last change (an address removed just after one was added) counts.
	const kickGap = 2 * time.Second
	kicks := make(chan struct{}, 1)
	// changes passes every kick on at once, for the check of a link that
	// is up (SuperviseOptions.Stale: a route lookup, nothing to throttle).
	changes := make(chan struct{}, 1)
	if o.Kick != nil {
		kctx, stopKicks := context.WithCancel(ctx)
		kickerDone := make(chan struct{})
		defer func() { stopKicks(); <-kickerDone }()
		go func() {
			defer close(kickerDone)
			var last time.Time
			var deferred <-chan time.Time
			fire := func() {
				last = time.Now()
				select {
				case kicks <- struct{}{}:
				default:
				}
			}
			for {
				select {
				case <-kctx.Done():
					return
				case <-o.Kick:
					select {
					case changes <- struct{}{}:
					default:
					}
					if wait := kickGap - time.Since(last); wait > 0 {
						if deferred == nil {
							deferred = time.After(wait)
						}
						continue
					}
					fire()
				case <-deferred:
					deferred = nil
					fire()
				}
			}
		}()
	}
	cause := CauseFirst
	for attempt := 1; ; attempt++ {
		// What changed before this attempt is old news to it.
		for _, ch := range []chan struct{}{kicks, changes} {
			select {
			case <-ch:
			default:
			}
		}
		emit(Event{Kind: EventDialing, Attempt: attempt, Cause: cause})
		var upAt time.Time
		var up, kicked, moved atomic.Bool
		var current atomic.Pointer[dial.Command] // this attempt's transport, once started
		actx, cancel := context.WithCancel(ctx)
		stopKick := make(chan struct{})
		kickDone := make(chan struct{})
		go func() {
			// The network changed while an attempt is still dialing: it
			// is likely stuck on the old path (ssh's SYNs into a dead
			// route). Abandon it and dial afresh. A link that is up is
			// left alone; its echoes tell whether it survived.
			defer close(kickDone)
			for {
				select {
				case <-kicks:
					if !up.Load() {
						kicked.Store(true)
						cancel()
						return
					}
				case <-changes:
					if up.Load() && o.Stale != nil && o.Stale() {
						moved.Store(true)
						if c := current.Load(); c != nil {
							c.Abort() // its connection is dead: no goodbye
						}
						cancel()
						return
					}
				case <-stopKick:
					return
				}
			}
		}()
		err := func() error {
			argv, env := o.Argv, o.Env
			if o.Dial != nil {
				var err error
				if argv, env, err = o.Dial(attempt); err != nil {
					return err
				}
			}
			so := o.Session
			userUp := so.OnUp
			so.OnUp = func(s ppp.Session, ifname string, stats func() ppp.Stats) {
				up.Store(true)
				upAt = time.Now()
				emit(Event{Kind: EventUp, Attempt: attempt, Session: s, Ifname: ifname, Stats: stats})
				if userUp != nil {
					userUp(s, ifname, stats)
				}
			}
			if o.Engine != nil {
				return o.Engine(actx, argv, env, so)
			}
			cmd, err := dial.StartCommand(argv, env, o.Log, o.LogPrefix)
			if err != nil {
				return err
			}
			current.Store(cmd)
			so.Stream = cmd
			err = RunSession(actx, so)
			cmd.Close()
			return EndReason(err, cmd)
		}()
		close(stopKick)
		<-kickDone
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var lasted time.Duration
		if !upAt.IsZero() {
			lasted = time.Since(upAt)
			attempt = 0 // counted afresh after a session that came up
		}
		switch {
		case kicked.Load():
			err = errors.New("the network changed while dialing")
		case moved.Load():
			err = ErrUplinkChanged
		}
		emit(Event{Kind: EventDown, Attempt: attempt, Reason: err})
		if o.Once {
			return err
		}
		if kicked.Load() || moved.Load() {
			o.Backoff.Reset()
		}
		wait := o.Backoff.Next(lasted)
		switch {
		case kicked.Load() || moved.Load():
			cause = CauseNetwork
		case !upAt.IsZero():
			cause = CauseDrop
		default:
			cause = CauseBackoff
		}
		emit(Event{Kind: EventWaiting, Attempt: attempt, Wait: wait, Reason: err})
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-kicks:
			t.Stop()
			o.Backoff.Reset()
			o.Backoff.Next(0) // the attempt now is the immediate one
			cause = CauseNetwork
		}
	}
}

// EndReason explains why a session over a dial command ended: when the
// stream just stopped, the command's own words (ssh's host-key and
// authentication messages above all) say more than "EOF".
func EndReason(err error, cmd *dial.Command) error {
	if err == nil || errors.Is(err, ppp.ErrClosed) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		<-waitExit(cmd, 2*time.Second)
		if cerr := dial.ClassifySSH(cmd.Stderr()); cerr != nil {
			return cerr
		}
		if xerr := cmd.ExitError(); xerr != nil {
			return xerr
		}
	}
	return err
}

func waitExit(cmd *dial.Command, d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		select {
		case <-cmd.Exited():
		case <-time.After(d):
		}
	}()
	return ch
}
