package ppp

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// The link's phases (RFC 1661 §3.2): Establish (LCP) → Authenticate (CHAP,
// both ways) → Network (IPCP, IPv6CP) → Terminate. These are the callbacks
// the protocols make into the link, all on the loop goroutine.

func (l *Link) lcpUp() {
	l.log.Debug("LCP up", "tx", l.tx, "peer_mru", l.txMRU)
	l.startEcho()
	l.authed = false
	l.chap.start(l.lcp.want.chap, l.lcp.peerWantsCHAP)
}

func (l *Link) lcpDown() {
	l.echoGen++
	l.authed = false
	l.pending = nil
	l.chap.reset()
	l.ipcp.f.lowerDown()
	l.ipv6cp.f.lowerDown()
}

// lcpFinished: LCP gave up (max-configure, rejected) or finished terminating.
func (l *Link) lcpFinished() {
	if l.err == nil {
		l.err = errNegotiation("LCP: no agreement with the far end")
	}
	l.done = true
}

func (l *Link) authFinished() {
	if l.authed {
		return
	}
	l.authed = true
	l.ipcp.f.open()
	l.ipcp.f.lowerUp()
	if l.cfg.IPv6 {
		l.ipv6cp.f.open()
		l.ipv6cp.f.lowerUp()
	} else {
		l.v6Off = true
	}
	pending := l.pending
	l.pending = nil
	for _, p := range pending {
		l.control(binary.BigEndian.Uint16(p), p[2:])
	}
}

func (l *Link) ipcpUp(local, peer netip.Addr, dns []netip.Addr) {
	l.sessMu.Lock()
	l.sess.LocalIP, l.sess.PeerIP, l.sess.DNS = local, peer, dns
	l.sessMu.Unlock()
	l.ipcpOpen = true
	l.v4open.Store(true)
	l.log.Info("IPCP up", "local", local, "peer", peer, "dns", dns)
	l.maybeUp()
}

func (l *Link) ipcpDown() {
	l.ipcpOpen = false
	l.v4open.Store(false)
}

func (l *Link) ipv6cpUp(local, peer [8]byte) {
	l.sessMu.Lock()
	l.sess.IPv6, l.sess.LocalIfID, l.sess.PeerIfID = true, local, peer
	l.sessMu.Unlock()
	l.ipv6Open = true
	l.v6open.Store(true)
	l.maybeUp()
}

func (l *Link) ipv6cpDown() {
	l.ipv6Open = false
	l.v6open.Store(false)
}

// ncpFinished: a network protocol gave up. Without IPv4 there is no link;
// without IPv6 the link carries IPv4 only.
func (l *Link) ncpFinished(proto uint16) {
	if proto == ProtoIPCP {
		if l.lcp.f.state == stOpened && !l.done {
			l.fail(errNegotiation("IPCP: no agreement with the far end"))
		}
		return
	}
	l.log.Info("IPv6CP did not come up; carrying IPv4 only")
	l.v6Off = true
	l.maybeUp()
}

func (l *Link) protocolRejected(proto uint16) {
	switch proto {
	case ProtoIPv6CP, ProtoIPv6:
		l.log.Info("the far end does not speak IPv6CP; carrying IPv4 only")
		l.ipv6cp.f.lowerDown()
		l.v6Off = true
		l.maybeUp()
	case ProtoIPCP, ProtoIPv4:
		l.fail(errNegotiation("the far end rejected IPCP"))
	case ProtoCHAP:
		l.fail(&AuthError{Side: "peer", Name: l.cfg.RemoteName, Msg: "the far end does not speak CHAP"})
	}
}

func (l *Link) maybeUp() {
	if !l.ipcpOpen || !(l.ipv6Open || l.v6Off) {
		return
	}
	l.sessMu.Lock()
	l.sess.MTU = min(l.cfg.MRU, l.txMRU)
	s := l.sess
	l.sessMu.Unlock()
	l.upOnce.Do(func() {
		l.log.Info("link up", "local", s.LocalIP, "peer", s.PeerIP, "dns", s.DNS, "mtu", s.MTU, "ipv6", s.IPv6)
		close(l.upCh)
	})
}

func (l *Link) peerTerminated() {
	l.terminated = true
	l.setErr(ErrTerminated)
	// Give the Terminate-Ack a moment on the wire, as pppd does, then end.
	l.after(100*time.Millisecond, func() { l.done = true })
}

func (l *Link) setPeerName(name string) {
	l.sessMu.Lock()
	l.sess.PeerName = name
	l.sessMu.Unlock()
}

// secretFor returns the secret client uses towards server. If the far end
// names itself differently from what the profile calls it, the profile's
// remote_name is tried too (pppd's "remotename").
func (l *Link) secretFor(client, server string) (string, bool) {
	if s, ok := l.cfg.Secrets.Lookup(client, server); ok {
		return s, true
	}
	if client == l.cfg.LocalName && l.cfg.RemoteName != "" && server != l.cfg.RemoteName {
		return l.cfg.Secrets.Lookup(client, l.cfg.RemoteName)
	}
	return "", false
}

// startEcho runs the keepalive, adaptively like pppd's lcp-echo-adaptive:
// every EchoInterval it looks whether anything came from the far end since
// the last look (any frame: packets, its own echoes, replies to ours), and
// sends an Echo-Request only if nothing did. A busy link, or one whose far
// end echoes as often, carries no echoes of ours; an idle one sends one
// every other interval (the reply counts as traffic for the next). The link
// is dead after EchoFailures requests in a row went unanswered, with
// nothing else heard either.
func (l *Link) startEcho() {
	if l.cfg.EchoInterval <= 0 {
		return
	}
	l.echoGen++
	l.echoFails = 0
	gen := l.echoGen
	seen := l.rxFrames.Load()
	var tick func()
	tick = func() {
		if gen != l.echoGen || l.done {
			return
		}
		if n := l.rxFrames.Load(); n != seen {
			seen = n
			l.echoFails = 0
			l.after(l.cfg.EchoInterval, tick)
			return
		}
		if l.echoFails >= l.cfg.EchoFailures {
			l.fail(ErrEchoTimeout)
			return
		}
		l.echoFails++
		l.lcp.sendEcho()
		l.after(l.cfg.EchoInterval, tick)
	}
	l.after(l.cfg.EchoInterval, tick)
}

func (l *Link) echoReplied() { l.echoFails = 0 }

// sendControl writes one control packet: code, id, length, data.
func (l *Link) sendControl(proto uint16, code, id byte, data []byte) {
	pkt := make([]byte, 4, 4+len(data))
	pkt[0], pkt[1] = code, id
	binary.BigEndian.PutUint16(pkt[2:], uint16(4+len(data)))
	pkt = append(pkt, data...)
	if err := l.writeFrame(proto, pkt); err != nil {
		l.log.Debug("writing control packet", "err", err)
	}
}

func (l *Link) writeFrame(proto uint16, payload []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.wbuf = AppendFrame(l.wbuf[:0], proto, payload, l.tx)
	_, err := l.rw.Write(l.wbuf)
	return err
}

func (l *Link) setTxOptions(tx TxOptions, mru int) {
	l.wmu.Lock()
	l.tx, l.txMRU = tx, mru
	l.wmu.Unlock()
}

func (l *Link) peerMRU() int {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.txMRU
}

// WritePacket sends one IPv4 or IPv6 packet. It is safe to call from any
// goroutine and allocates nothing. Before the matching network protocol is
// open it returns ErrNotUp and the packet is dropped.
func (l *Link) WritePacket(pkt []byte) error {
	if len(pkt) == 0 {
		return nil
	}
	proto := ProtoIPv4
	switch pkt[0] >> 4 {
	case 4:
		if !l.v4open.Load() {
			l.dropped.Add(1)
			return ErrNotUp
		}
	case 6:
		if !l.v6open.Load() {
			l.dropped.Add(1)
			return ErrNotUp
		}
		proto = ProtoIPv6
	default:
		l.dropped.Add(1)
		return nil
	}
	if err := l.writeFrame(proto, pkt); err != nil {
		return err
	}
	l.txPkts.Add(1)
	l.txBytes.Add(uint64(len(pkt)))
	return nil
}
