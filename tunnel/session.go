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
	"sync"
	"syscall"
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
	var (
		mu    sync.Mutex
		dev   *tun.Device // made once the link is up
		st    tun.PumpStats
		pumps sync.WaitGroup
	)
	upErr := make(chan error, 1)
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
		d, err := tun.Open(o.Interface, o.MTU)
		// A stale session just evicted may still be giving its device (of
		// this fixed name) back to the kernel.
		for deadline := time.Now().Add(2 * time.Second); errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			d, err = tun.Open(o.Interface, o.MTU)
		}
		if err != nil {
			upErr <- err // tun.Open names the device
			link.Close()
			return
		}
		mu.Lock()
		dev = d
		mu.Unlock()
		pumps.Go(func() {
			if err := tun.Pump(d, link, o.MTU, &st); err != nil {
				log.Warn("TUN pump stopped", "err", err)
			}
		})
		var ifid, peer *[8]byte
		if s.IPv6 {
			ifid, peer = &s.LocalIfID, &s.PeerIfID
		}
		if err := d.Configure(s.LocalIP, s.PeerIP, s.MTU, ifid, peer); err != nil {
			upErr <- fmt.Errorf("configuring %s: %w", d.Name(), err)
			link.Close()
			return
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
	pumps.Wait()
	select {
	case err := <-upErr:
		return err
	default:
	}
	return runErr
}

// CleanEnd reports whether a session ended the way sessions are meant to:
// we closed it, or the far end terminated it.
func CleanEnd(err error) bool {
	return errors.Is(err, ppp.ErrClosed) || errors.Is(err, ppp.ErrTerminated)
}
