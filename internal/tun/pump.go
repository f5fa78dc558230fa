package tun

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

// BatchLink is a PacketLink that can frame packets into a buffer of the
// caller's and send many frames in one write (*ppp.Link satisfies it).
type BatchLink interface {
	PacketLink
	AppendPacket(dst, pkt []byte) ([]byte, error)
	WriteFrames(frames []byte) error
}

// NoWaitReader is a packet device that can say it has nothing ready instead
// of waiting (*TUN satisfies it): ReadNoWait returns 0, nil then.
type NoWaitReader interface {
	ReadNoWait(p []byte) (int, error)
}

// CoalescingWriter is a packet device that can hold packets back to write
// them as fewer, larger ones (*TUN does: GRO). Flush writes what it holds.
type CoalescingWriter interface {
	WriteCoalesce(pkt []byte) error
	Flush() error
}

// readDoneLink is a link that says when it has handed on the packets of one
// read of its stream (*ppp.Link does).
type readDoneLink interface {
	SetReadDoneHandler(fn func())
}

// MaxBatch bounds the bytes of frames the pump hands the stream in one
// write. Big enough that ssh reads full 16 KiB chunks and sends them as few
// channel packets; small enough that what waits ahead of the transport —
// this batch plus the pipe to ssh — stays a couple of milliseconds at
// hundreds of Mbit/s, so a ping behind a bulk upload is not held up.
const MaxBatch = 64 << 10

// PumpStats counts what the pump moved and dropped.
type PumpStats struct {
	ToLink, FromLink atomic.Uint64
	DroppedNotUp     atomic.Uint64 // read from the TUN before the link was up
	LinkWriteErrs    atomic.Uint64 // the stream refused a packet (it is ending)
	TUNWriteErrs     atomic.Uint64
	Batches          atomic.Uint64 // writes to the stream (batched path)
}

// Pump moves packets between dev and link until reading dev fails: close
// dev to stop it (Pump then returns nil). Packets from the link are written
// to dev on the link's reader goroutine, which decodes every frame of one
// large read of the stream in turn; when dev is a CoalescingWriter, the TCP
// segments of one read are joined (GRO) and written when the read is done.
//
// From dev to the link, when dev is a NoWaitReader and link a BatchLink,
// Pump waits for one packet, then takes whatever else dev has ready without
// waiting, framing each into one buffer, up to MaxBatch bytes, and writes
// the buffer to the stream at once. It never waits for more packets to
// fill a batch, so a lone packet (a ping) goes out at once; under load the
// batches grow by themselves while the previous write is blocked on a full
// pipe. Nothing is allocated per packet.
//
// Call it before the link runs, so that no packet arrives without a handler.
func Pump(dev io.ReadWriter, link PacketLink, mtu int, st *PumpStats) error {
	if st == nil {
		st = new(PumpStats)
	}
	cw, canCoalesce := dev.(CoalescingWriter)
	rd, saysReadDone := link.(readDoneLink)
	if canCoalesce && saysReadDone {
		// Packets from one read of the stream are joined where they can
		// be, and written at the latest when that read is decoded.
		link.SetPacketHandler(func(pkt []byte) {
			if err := cw.WriteCoalesce(pkt); err != nil {
				st.TUNWriteErrs.Add(1)
				return
			}
			st.FromLink.Add(1)
		})
		rd.SetReadDoneHandler(func() {
			if err := cw.Flush(); err != nil {
				st.TUNWriteErrs.Add(1)
			}
		})
	} else {
		link.SetPacketHandler(func(pkt []byte) {
			if _, err := dev.Write(pkt); err != nil {
				st.TUNWriteErrs.Add(1)
				return
			}
			st.FromLink.Add(1)
		})
	}
	buf := make([]byte, max(mtu, 1500)+64)
	bl, canBatch := link.(BatchLink)
	nw, canDrain := dev.(NoWaitReader)
	if !canBatch || !canDrain {
		return pumpEach(dev, link, buf, st)
	}
	batch := make([]byte, 0, MaxBatch+ppp.MaxEncodedLen(len(buf)))
	for {
		n, err := dev.Read(buf)
		if err != nil {
			return readEnd(err)
		}
		batch = batch[:0]
		var pkts uint64
		for {
			batch, err = bl.AppendPacket(batch, buf[:n])
			switch {
			case errors.Is(err, ppp.ErrNotUp):
				st.DroppedNotUp.Add(1)
			case err == nil:
				pkts++
			}
			if len(batch) >= MaxBatch {
				break
			}
			if n, err = nw.ReadNoWait(buf); err != nil || n == 0 {
				break
			}
		}
		if len(batch) > 0 {
			if werr := bl.WriteFrames(batch); werr != nil {
				st.LinkWriteErrs.Add(pkts)
			} else {
				st.ToLink.Add(pkts)
				st.Batches.Add(1)
			}
		}
		if err != nil {
			return readEnd(err)
		}
	}
}

// pumpEach is the TUN → link copy one packet at a time, for devices and
// links that cannot batch.
func pumpEach(dev io.Reader, link PacketLink, buf []byte, st *PumpStats) error {
	for {
		n, err := dev.Read(buf)
		if err != nil {
			return readEnd(err)
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

// readEnd is what Pump returns when reading the device failed: nil when it
// was closed (the way to stop the pump).
func readEnd(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
