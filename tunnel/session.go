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

	"github.com/roamtun/roamtun/internal/tun"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// SessionOptions describe one PPP session over an already dialed stream.
type SessionOptions struct {
	Stream    io.ReadWriter // the PPP byte stream; closed by the link when it ends
	Link      ppp.Config
	Interface string // TUN device name
	MTU       int
	// OnUp runs once the link is up and the TUN configured; stats reads
	// the link's counters for as long as it lives.
	OnUp func(s ppp.Session, ifname string, stats func() ppp.Stats)
	Log  *slog.Logger
}

// RunSession opens the TUN, runs the PPP link over the stream, configures
// the TUN with what IPCP/IPv6CP negotiated, and pumps packets, until the
// link ends or ctx is cancelled — then it terminates the link cleanly (LCP
// Terminate-Request) and removes the TUN. It returns why the link ended:
// ppp.ErrClosed after a cancel.
func RunSession(ctx context.Context, o SessionOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dev, err := tun.Open(o.Interface, o.MTU)
	if err != nil {
		if c, ok := o.Stream.(io.Closer); ok {
			c.Close()
		}
		return err
	}
	defer dev.Close()
	if o.Link.Logger == nil {
		o.Link.Logger = log
	}
	link := ppp.NewLink(o.Stream, o.Link)
	var st tun.PumpStats
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := tun.Pump(dev, link, o.MTU, &st); err != nil {
			log.Warn("TUN pump stopped", "err", err)
		}
	}()
	upErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-link.Up():
		case <-link.Done():
			return
		}
		s := link.Session()
		var ifid, peer *[8]byte
		if s.IPv6 {
			ifid, peer = &s.LocalIfID, &s.PeerIfID
		}
		if err := dev.Configure(s.LocalIP, s.PeerIP, s.MTU, ifid, peer); err != nil {
			upErr <- err
			link.Close()
			return
		}
		if o.OnUp != nil {
			o.OnUp(s, dev.Name(), link.Stats)
		}
	}()
	stop := context.AfterFunc(ctx, func() { link.Close() })
	defer stop()
	runErr := link.Run(context.Background())
	dev.Close() // ends the pump
	wg.Wait()
	select {
	case err := <-upErr:
		return fmt.Errorf("configuring %s: %w", dev.Name(), err)
	default:
	}
	return runErr
}

// CleanEnd reports whether a session ended the way sessions are meant to:
// we closed it, or the far end terminated it.
func CleanEnd(err error) bool {
	return errors.Is(err, ppp.ErrClosed) || errors.Is(err, ppp.ErrTerminated)
}
