package daemon_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/tunnel"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// transcript collects what the fakes were asked to do, in order.
type transcript struct {
	mu    sync.Mutex
	calls []string
}

func (tr *transcript) add(format string, args ...any) {
	tr.mu.Lock()
	tr.calls = append(tr.calls, fmt.Sprintf(format, args...))
	tr.mu.Unlock()
}

// take returns the calls since the last take.
func (tr *transcript) take() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := tr.calls
	tr.calls = nil
	return out
}

// fakeHost is daemon.Host without a kernel: every call is recorded.
type fakeHost struct {
	tr         *transcript
	protectErr error
}

func (h *fakeHost) Protect(_ context.Context, p *config.Profile, addr netip.Addr) (daemon.Guard, error) {
	h.tr.add("protect %s %s lockdown=%v", p.Name, addr, p.Lockdown)
	if h.protectErr != nil {
		return nil, h.protectErr
	}
	return &fakeGuard{tr: h.tr}, nil
}

func (h *fakeHost) Standby(exempt []string, portalPort uint16) (daemon.Standby, error) {
	if portalPort != 0 {
		h.tr.add("standby start %s portal probe :%d", strings.Join(exempt, ","), portalPort)
	} else {
		h.tr.add("standby start %s", strings.Join(exempt, ","))
	}
	return fakeStandby{h.tr}, nil
}

type fakeGuard struct{ tr *transcript }

func (g *fakeGuard) UseServer(a netip.Addr) error { g.tr.add("guard server %s", a); return nil }
func (g *fakeGuard) Refresh() error               { g.tr.add("guard refresh"); return nil }
func (g *fakeGuard) Forbidden() []ppp.Forbidden   { return nil }
func (g *fakeGuard) Up(_ context.Context, ifname string, s ppp.Session) error {
	g.tr.add("guard up %s %s dns %v", ifname, s.LocalIP, s.DNS)
	return nil
}
func (g *fakeGuard) Down()                         { g.tr.add("guard down") }
func (g *fakeGuard) Close(_ context.Context) error { g.tr.add("guard close"); return nil }

type fakeStandby struct{ tr *transcript }

func (s fakeStandby) Open(ifname string) error  { s.tr.add("standby open %s", ifname); return nil }
func (s fakeStandby) Close(ifname string) error { s.tr.add("standby close %s", ifname); return nil }
func (s fakeStandby) SetProbes(t []netip.AddrPort) error {
	s.tr.add("standby probes %v", t)
	return nil
}
func (s fakeStandby) Stop() error { s.tr.add("standby stop"); return nil }

// fakeLinks stands in for tunnel.Supervise: each run waits for the test to
// play its events.
type fakeLinks struct {
	tr   *transcript
	runs chan *fakeRun
	// hold, when set, keeps a cancelled run from returning until it is
	// closed: a link whose goodbye takes long (the far end is gone).
	hold chan struct{}
}

type fakeRun struct {
	o      tunnel.SuperviseOptions
	events chan tunnel.Event
}

func newFakeLinks(tr *transcript) *fakeLinks {
	return &fakeLinks{tr: tr, runs: make(chan *fakeRun, 8)}
}

func (f *fakeLinks) Supervise(ctx context.Context, o tunnel.SuperviseOptions) error {
	r := &fakeRun{o: o, events: make(chan tunnel.Event)}
	f.runs <- r
	for {
		select {
		case <-ctx.Done():
			if f.hold != nil {
				<-f.hold
			}
			return nil
		case ev := <-r.events:
			if ev.Kind == tunnel.EventDialing {
				o.OnEvent(ev)
				argv, _, err := o.Dial(ev.Attempt)
				f.tr.add("dial %s %v", strings.Join(argv, " "), err)
				continue
			}
			o.OnEvent(ev)
		}
	}
}

// next returns the run the daemon started.
func (f *fakeLinks) next(t *testing.T) *fakeRun {
	t.Helper()
	select {
	case r := <-f.runs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon started no tunnel")
		return nil
	}
}

func (r *fakeRun) play(evs ...tunnel.Event) {
	for _, ev := range evs {
		r.events <- ev
	}
}

var upSession = ppp.Session{LocalIP: netip.MustParseAddr("10.9.0.2"), PeerIP: netip.MustParseAddr("10.9.0.1"),
	DNS: []netip.Addr{netip.MustParseAddr("10.9.0.53")}, MTU: 1200}

func dialing(attempt int) tunnel.Event {
	return tunnel.Event{Kind: tunnel.EventDialing, Attempt: attempt}
}
func up() tunnel.Event {
	return tunnel.Event{Kind: tunnel.EventUp, Attempt: 1, Session: upSession, Ifname: "roamtun0",
		Stats: func() ppp.Stats { return ppp.Stats{} }}
}
func down(why string) tunnel.Event {
	return tunnel.Event{Kind: tunnel.EventDown, Reason: fmt.Errorf("%s", why)}
}
