package tunnel

import (
	"errors"
	"io"
	"os"
	"sync/atomic"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// PacketLink is the packet side of a PPP link (*ppp.Link satisfies it).
type PacketLink interface {
	WritePacket(pkt []byte) error
	SetPacketHandler(fn func(pkt []byte))
}

// PumpStats counts what the pump moved and dropped.
type PumpStats struct {
	ToLink, FromLink atomic.Uint64
	DroppedNotUp     atomic.Uint64 // read from the TUN before the link was up
	LinkWriteErrs    atomic.Uint64 // the stream refused a packet (it is ending)
	TUNWriteErrs     atomic.Uint64
}

// Pump moves packets between dev and link until reading dev fails: close
// dev to stop it (Pump then returns nil). Packets from the link are written
// to dev on the link's reader goroutine; packets from dev are read into one
// fixed buffer: nothing is allocated per packet. Call it before the link
// runs, so that no packet arrives without a handler.
func Pump(dev io.ReadWriter, link PacketLink, mtu int, st *PumpStats) error {
	if st == nil {
		st = new(PumpStats)
	}
	link.SetPacketHandler(func(pkt []byte) {
		if _, err := dev.Write(pkt); err != nil {
			st.TUNWriteErrs.Add(1)
			return
		}
		st.FromLink.Add(1)
	})
	buf := make([]byte, max(mtu, 1500)+64)
	for {
		n, err := dev.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		if err := link.WritePacket(buf[:n]); err != nil {
			if errors.Is(err, ppp.ErrNotUp) {
				st.DroppedNotUp.Add(1)
			} else {
				st.LinkWriteErrs.Add(1)
			}
			continue
		}
		st.ToLink.Add(1)
	}
}
