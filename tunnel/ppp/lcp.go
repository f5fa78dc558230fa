package ppp

import (
	"encoding/binary"
	"math/rand/v2"
)

// LCP configuration options (RFC 1661 §6, RFC 1662 §7.1).
const (
	lcpMRU   = 1
	lcpACCM  = 2
	lcpAuth  = 3
	lcpQual  = 4
	lcpMagic = 5
	lcpPFC   = 7
	lcpACFC  = 8

	chapMD5 = 5 // CHAP algorithm: MD5 (RFC 1994)

	minMRU     = 128
	defaultMRU = 1500
)

// lcpWants is what we ask for in our Configure-Request; fields are dropped
// as the peer rejects them.
type lcpWants struct {
	mru       int
	accm      bool
	magic     uint32
	useMagic  bool
	pfc, acfc bool
	chap      bool // ask the peer to authenticate with CHAP-MD5
}

// lcp is the Link Control Protocol: it owns the link's framing options, the
// magic number and the echo keepalive.
type lcp struct {
	l    *Link
	f    *fsm
	want lcpWants

	// Negotiated: what the peer accepts from us (tx) and what we agreed to
	// do (authenticate to the peer with CHAP).
	tx            TxOptions
	peerMRU       int
	peerWantsCHAP bool
	loops         int // Configure-Requests that carried our own magic number
}

func newLCP(l *Link) *lcp {
	c := &lcp{l: l}
	c.f = newFSM(l, ProtoLCP, "LCP", c)
	return c
}

func (c *lcp) resetCI() {
	c.want = lcpWants{
		mru:      c.l.cfg.MRU,
		accm:     true,
		magic:    newMagic(),
		useMagic: true,
		pfc:      true,
		acfc:     true,
		chap:     c.l.cfg.RequireCHAP,
	}
	c.tx = DefaultTxOptions
	c.peerMRU = defaultMRU
	c.peerWantsCHAP = false
}

func newMagic() uint32 {
	for {
		if m := rand.Uint32(); m != 0 {
			return m
		}
	}
}

func (c *lcp) addCI(b []byte) []byte {
	w := &c.want
	if w.mru != defaultMRU {
		b = append(b, lcpMRU, 4, byte(w.mru>>8), byte(w.mru))
	}
	if w.accm {
		b = append(b, lcpACCM, 6, 0, 0, 0, 0) // 8-bit clean stream: escape nothing
	}
	if w.chap {
		b = append(b, lcpAuth, 5, byte(ProtoCHAP>>8), byte(ProtoCHAP&0xff), chapMD5)
	}
	if w.useMagic {
		b = append(b, lcpMagic, 6)
		b = binary.BigEndian.AppendUint32(b, w.magic)
	}
	if w.pfc {
		b = append(b, lcpPFC, 2)
	}
	if w.acfc {
		b = append(b, lcpACFC, 2)
	}
	return b
}

// ackCI: a Configure-Ack must repeat our request exactly (§5.2).
func (c *lcp) ackCI(opts []byte) bool {
	var buf [32]byte
	return string(c.addCI(buf[:0])) == string(opts)
}

func (c *lcp) nakCI(opts []byte) bool {
	w := &c.want
	return forOptions(opts, func(typ byte, v, _ []byte) {
		switch typ {
		case lcpMRU:
			if len(v) == 2 {
				// The peer wants us to receive at most/at least this: take it
				// if it is sane and no bigger than what the TUN can carry.
				if m := int(binary.BigEndian.Uint16(v)); m >= minMRU && m <= c.l.cfg.MRU {
					w.mru = m
				}
			}
		case lcpAuth:
			if w.chap {
				// The peer would rather authenticate some other way; we insist
				// on CHAP-MD5 until max-failure, then give up (reported as an
				// authentication failure).
				c.l.log.Info("peer proposed another authentication protocol; insisting on CHAP-MD5")
			}
		case lcpMagic:
			if len(v) == 4 {
				w.magic = newMagic() // §6.4: pick a new random number
			}
		}
	})
}

func (c *lcp) rejCI(opts []byte) bool {
	w := &c.want
	return forOptions(opts, func(typ byte, _, _ []byte) {
		switch typ {
		case lcpMRU:
			w.mru = defaultMRU
		case lcpACCM:
			w.accm = false
		case lcpAuth:
			if w.chap {
				c.l.fail(&AuthError{Side: "peer", Name: c.l.cfg.RemoteName, Msg: "the far end refused to authenticate with CHAP"})
			}
			w.chap = false
		case lcpMagic:
			w.useMagic = false
		case lcpPFC:
			w.pfc = false
		case lcpACFC:
			w.acfc = false
		}
	})
}

func (c *lcp) reqCI(opts []byte, dst []byte, rejectIfDisagree bool) (byte, []byte) {
	var naks, rejs []byte
	tx := TxOptions{ACCM: DefaultACCM}
	peerMRU := defaultMRU
	wantsCHAP := false
	ok := forOptions(opts, func(typ byte, v, raw []byte) {
		switch typ {
		case lcpMRU:
			if len(v) != 2 {
				rejs = append(rejs, raw...)
				return
			}
			m := int(binary.BigEndian.Uint16(v))
			if m < minMRU {
				naks = append(naks, lcpMRU, 4, byte(minMRU>>8), byte(minMRU&0xff))
				return
			}
			peerMRU = m
		case lcpACCM:
			if len(v) != 4 {
				rejs = append(rejs, raw...)
				return
			}
			tx.ACCM = binary.BigEndian.Uint32(v)
		case lcpAuth:
			switch {
			case c.l.cfg.RefuseAuth || c.l.cfg.Secrets == nil:
				rejs = append(rejs, raw...)
			case len(v) == 3 && binary.BigEndian.Uint16(v) == ProtoCHAP && v[2] == chapMD5:
				wantsCHAP = true
			default:
				// PAP, MS-CHAP, ...: suggest CHAP-MD5 instead (§6.2).
				naks = append(naks, lcpAuth, 5, byte(ProtoCHAP>>8), byte(ProtoCHAP&0xff), chapMD5)
			}
		case lcpMagic:
			if len(v) != 4 {
				rejs = append(rejs, raw...)
				return
			}
			if m := binary.BigEndian.Uint32(v); c.want.useMagic && m == c.want.magic {
				// Our own magic number came back: either a looped-back line
				// or a rare collision. §6.4: Nak with a new number and count.
				c.loops++
				if c.loops >= c.l.maxFailure {
					c.l.fail(ErrLoopback)
				}
				naks = binary.BigEndian.AppendUint32(append(naks, lcpMagic, 6), newMagic())
			}
		case lcpPFC:
			if len(v) != 0 {
				rejs = append(rejs, raw...)
				return
			}
			tx.PFC = true
		case lcpACFC:
			if len(v) != 0 {
				rejs = append(rejs, raw...)
				return
			}
			tx.ACFC = true
		default: // Quality-Protocol, callback, multilink, ...: not spoken here.
			rejs = append(rejs, raw...)
		}
	})
	code, out, acked := reply(ok, opts, rejs, naks, dst, rejectIfDisagree)
	if acked {
		c.tx, c.peerMRU, c.peerWantsCHAP = tx, peerMRU, wantsCHAP
	}
	return code, out
}

func (c *lcp) up() {
	c.loops = 0
	c.l.setTxOptions(c.tx, c.peerMRU)
	c.l.lcpUp()
}

func (c *lcp) down() {
	c.l.setTxOptions(DefaultTxOptions, defaultMRU)
	c.l.lcpDown()
}

func (c *lcp) finished() { c.l.lcpFinished() }

func (c *lcp) extCode(code, id byte, data []byte) bool {
	switch code {
	case codeEchoReq:
		if c.f.state == stOpened {
			// §5.8: reply with our magic number and the request's data.
			rep := make([]byte, 0, len(data))
			rep = binary.BigEndian.AppendUint32(rep, c.ourMagic())
			if len(data) > 4 {
				rep = append(rep, data[4:]...)
			}
			c.f.send(codeEchoRep, id, rep)
		}
	case codeEchoRep:
		if len(data) >= 4 && c.want.useMagic && binary.BigEndian.Uint32(data) == c.want.magic {
			c.l.log.Warn("echo reply carries our own magic number: the line may be looped back")
			return true
		}
		c.l.echoReplied()
	case codeDiscard:
	case codeProtoRej:
		if len(data) >= 2 {
			c.l.protocolRejected(binary.BigEndian.Uint16(data))
		}
	default:
		return false
	}
	return true
}

func (c *lcp) ourMagic() uint32 {
	if c.want.useMagic {
		return c.want.magic
	}
	return 0
}

// sendEcho sends an Echo-Request (§5.8) carrying our magic number.
func (c *lcp) sendEcho() {
	c.f.id++
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c.ourMagic())
	c.f.send(codeEchoReq, c.f.id, b[:])
}

// sendProtocolReject tells the peer we do not speak proto (§5.7).
func (c *lcp) sendProtocolReject(proto uint16, info []byte) {
	pkt := make([]byte, 0, 2+len(info))
	pkt = binary.BigEndian.AppendUint16(pkt, proto)
	pkt = append(pkt, info...)
	if max := c.peerMRU - 4; len(pkt) > max {
		pkt = pkt[:max]
	}
	c.f.id++
	c.f.send(codeProtoRej, c.f.id, pkt)
}
