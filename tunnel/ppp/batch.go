package ppp

// Batched transmission: the TUN side of a link hands over many packets at
// once when the stream is busy, and each write to an ssh process costs a
// syscall, a wakeup of ssh and, worse, one ssh channel packet (its own MAC,
// its own TCP push) per write. AppendPacket frames packets into a buffer the
// caller owns; WriteFrames sends that buffer in one write.

// AppendPacket appends pkt, an IPv4 or IPv6 packet, to dst as one complete
// frame with the options the far end negotiated, and returns the extended
// slice; send it with WriteFrames. Like WritePacket it returns ErrNotUp
// (dst unchanged, the packet counted as dropped) before the packet's network
// protocol is open, and skips a packet that is neither IPv4 nor IPv6. The
// packet counts as sent once appended. It allocates only when dst lacks room
// for MaxEncodedLen(len(pkt)) more bytes.
func (l *Link) AppendPacket(dst, pkt []byte) ([]byte, error) {
	if len(pkt) == 0 {
		return dst, nil
	}
	proto := ProtoIPv4
	switch pkt[0] >> 4 {
	case 4:
		if !l.v4open.Load() {
			l.dropped.Add(1)
			return dst, ErrNotUp
		}
	case 6:
		if !l.v6open.Load() {
			l.dropped.Add(1)
			return dst, ErrNotUp
		}
		proto = ProtoIPv6
	default:
		l.dropped.Add(1)
		return dst, nil
	}
	l.wmu.Lock()
	tx := l.tx
	l.wmu.Unlock()
	dst = AppendFrame(dst, proto, pkt, tx)
	l.txPkts.Add(1)
	l.txBytes.Add(uint64(len(pkt)))
	return dst, nil
}

// WriteFrames writes frames, whole frames built by AppendPacket, to the
// stream in one write, in turn with the control frames the link sends
// itself (never in the middle of one).
func (l *Link) WriteFrames(frames []byte) error {
	if len(frames) == 0 {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_, err := l.rw.Write(frames)
	return err
}

// SetReadDoneHandler sets fn to run on the reader goroutine each time the
// packets of one read of the stream have all been handed to the packet
// handler. A handler that holds packets back to write them as fewer, larger
// ones (GRO onto a TUN) writes them then: nothing waits longer than the
// decoding of one read. It may be set at any time, Run included.
func (l *Link) SetReadDoneHandler(fn func()) { l.readDone.Store(&fn) }
