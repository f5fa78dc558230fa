// Package tunnel runs a PPP link over a dial command and keeps it up: a
// session (the TUN, the PPP engine, the pump between them) and its
// supervision (redial, backoff, reacting to network changes).
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/roamtun/roamtun/internal/tun"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// SessionOptions describe one PPP session over an already dialed stream.
type SessionOptions struct {
	Stream    io.ReadWriter // the PPP byte stream; closed by the link when it ends
	Link      ppp.Config
	Interface string // TUN device name
	MTU       int
	// Claim, when set, runs once the link is up (authenticated, addresses
	// agreed) and before the TUN is made: the far end uses it to take the
	// peer address — and a fixed interface name — over from a stale
	// session of the same laptop, so the new TUN never finds the name
	// taken. An unauthenticated client never gets this far.
	Claim func(s ppp.Session)
	// OnUp runs once the link is up and the TUN configured; stats reads
	// the link's counters for as long as it lives.
	OnUp func(s ppp.Session, ifname string, stats func() ppp.Stats)
	Log  *slog.Logger

	// Prefix6, on the far end, is the /64 the laptop gets its IPv6 address
	// from once IPv6CP opens (Link.IPv6 must be set): it is routed to the
	// TUN and advertised down the link in router advertisements, with DNS6
	// as their RDNSS. Zero: no router advertisements.
	Prefix6 netip.Prefix
	DNS6    []netip.Addr
	// RAWait, on the laptop (Link.IPv6 without Prefix6), bounds the wait for
	// the far end's router advertisement before OnUp; 0 is DefaultRAWait.
	// Without a usable one the session says IPv6 false, so ::/0 stays
	// unreachable.
	RAWait time.Duration
}

// RunSession runs the PPP link over the stream; once it is up it makes the
// TUN, configures it with what IPCP/IPv6CP negotiated and pumps packets,
// until the link ends or ctx is cancelled — then it terminates the link
// cleanly (LCP Terminate-Request) and removes the TUN. It returns why the
// link ended: ppp.ErrClosed after a cancel.
func RunSession(ctx context.Context, o SessionOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Link.Logger == nil {
		o.Link.Logger = log
	}
	link := ppp.NewLink(o.Stream, o.Link)
	// With IPv6, router discovery messages are taken off the link before
	// the TUN (the far end advertises, the laptop solicits).
	var pl tun.PacketLink = link
	tap := newNDTap(link)
	router, host := o.Link.IPv6 && o.Prefix6.IsValid(), o.Link.IPv6 && !o.Prefix6.IsValid()
	if router || host {
		pl = tap
	}
	var (
		mu    sync.Mutex
		dev   *tun.Device // made once the link is up
		st    tun.PumpStats
		wg    sync.WaitGroup // the pump and the far end's advertising loop
		upErr = make(chan error, 1)
	)
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		select {
		case <-link.Up():
		case <-link.Done():
			return
		}
		s := link.Session()
		if o.Claim != nil {
			o.Claim(s)
		}
		// A stale session just evicted may still be giving its device (of
		// this fixed name) back to the kernel: wait for the name to be free.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := net.InterfaceByName(o.Interface); err != nil {
				break
			}
		}
		d, err := tun.Open(o.Interface, o.MTU)
		if err != nil {
			upErr <- err // tun.Open names the device
			link.Close()
			return
		}
		mu.Lock()
		dev = d
		mu.Unlock()
		wg.Go(func() {
			if err := tun.Pump(d, pl, o.MTU, &st); err != nil {
				log.Warn("TUN pump stopped", "err", err)
			}
		})
		if s.IPv6 && s.MTU < minMTU6 {
			// The kernel turns IPv6 off on a device with a smaller MTU.
			log.Warn("IPv6CP is up but the link's MTU is below IPv6's minimum: IPv6 stays off", "mtu", s.MTU, "need", minMTU6)
			s.IPv6 = false
		}
		var ifid, peer *[8]byte
		if s.IPv6 {
			ifid, peer = &s.LocalIfID, &s.PeerIfID
		}
		if err := d.Configure(s.LocalIP, s.PeerIP, s.MTU, ifid, peer); err != nil {
			upErr <- fmt.Errorf("configuring %s: %w", d.Name(), err)
			link.Close()
			return
		}
		switch {
		case s.IPv6 && host:
			s = solicit(ctx, &o, tap, tap.msgs, d, s, log)
		case s.IPv6 && router:
			loop, err := advertise(&o, tap, d, s, log)
			if err != nil {
				upErr <- fmt.Errorf("routing %s: %w", o.Prefix6, err)
				link.Close()
				return
			}
			wg.Go(loop)
		}
		if o.OnUp != nil {
			o.OnUp(s, d.Name(), link.Stats)
		}
	}()
	stop := context.AfterFunc(ctx, func() { link.Close() })
	defer stop()
	runErr := link.Run(context.Background())
	<-upDone
	mu.Lock()
	if dev != nil {
		dev.Close() // ends the pump
	}
	mu.Unlock()
	wg.Wait()
	select {
	case err := <-upErr:
		return err
	default:
	}
	return runErr
}

// minMTU6 is IPv6's minimum link MTU (RFC 8200 §5).
const minMTU6 = 1280

// CleanEnd reports whether a session ended the way sessions are meant to:
// we closed it, or the far end terminated it.
func CleanEnd(err error) bool {
	return errors.Is(err, ppp.ErrClosed) || errors.Is(err, ppp.ErrTerminated)
}
