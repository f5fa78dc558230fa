package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/roamtun/roamtun/internal/route"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/tunnel"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// Host is every change the state machine makes to the machine, behind
// interfaces of a few methods each, so that the state machine is tested
// with fakes and without root (see host_test.go). *System is the real one:
// journaled routes, lockdown firewall, standby firewall and DNS.
type Host interface {
	// Protect sets up routing (and with the profile's lockdown, the
	// firewall) for reaching the server at addr, before anything is
	// dialed: from then on nothing leaves the uplink but ssh to it.
	Protect(ctx context.Context, p *config.Profile, addr netip.Addr) (Guard, error)
	// Standby installs the standby firewall: nothing but DHCP and ND leaves
	// an interface the daemon has not judged; exempt ones (the TUNs) are
	// always open. With portalPort, the portal probe's marked DNS queries
	// and HTTP connections to that port get out too.
	Standby(exempt []string, portalPort uint16) (Standby, error)
}

// Guard is one profile's protection on the uplink, from Protect to Close.
type Guard interface {
	// UseServer moves the server's route and the lockdown's hole to addr,
	// another address of the same server, before a dial.
	UseServer(addr netip.Addr) error
	// Refresh puts the server's route in line with the uplink (a new
	// gateway after a roam, a flushed interface).
	Refresh() error
	// Forbidden is what the far end may not hand over IPCP.
	Forbidden() []ppp.Forbidden
	// Up routes everything through the TUN and points DNS at the link's.
	Up(ctx context.Context, ifname string, s ppp.Session) error
	// Down notes that the TUN went away (DNS stays, lockdown holds).
	Down()
	// Close undoes everything, newest first.
	Close(ctx context.Context) error
}

// Standby is the standby firewall (route.StartStandby).
type Standby interface {
	Open(ifname string) error  // let ifname out: judged trusted, or held by a Guard
	Close(ifname string) error // back under the standby rules
	SetProbes(targets []netip.AddrPort) error
	Stop() error // remove it
}

// Supervisor keeps one tunnel up until ctx is done: tunnel.Supervise, or a
// fake that plays events.
type Supervisor func(ctx context.Context, o tunnel.SuperviseOptions) error

// NetWatcher signals kick when the network changes under a tunnel, so that
// a waiting redial happens at once: netmon.WatchNetwork, or nothing.
type NetWatcher func(ctx context.Context, kick chan<- struct{}, ifname string, settle time.Duration, log *slog.Logger)

// Clock is the time the state machine reads and waits on (the portal
// window): the real one, or a fake that tests advance.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Standby implements Host with the journaled standby firewall.
func (s *System) Standby(exempt []string, portalPort uint16) (Standby, error) {
	st, err := route.StartStandby(nil, s.Journal, exempt, portalPort)
	if err != nil {
		return nil, err
	}
	return systemStandby{st, s}, nil
}

type systemStandby struct {
	*route.Standby
	s *System
}

func (st systemStandby) Stop() error { return st.Standby.Stop(st.s.Journal) }
