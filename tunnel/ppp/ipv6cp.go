package ppp

import (
	"crypto/rand"
)

// IPv6CP options (RFC 5072 §4).
const (
	ipv6cpIfID     = 1
	ipv6cpCompress = 2
)

// ipv6cp negotiates the 64-bit interface identifiers from which both ends
// form their link-local addresses (RFC 5072 §4.1, §5).
type ipv6cp struct {
	l *Link
	f *fsm

	local, peer [8]byte
	wantIfID    bool
}

func newIPv6CP(l *Link) *ipv6cp {
	c := &ipv6cp{l: l}
	c.f = newFSM(l, ProtoIPv6CP, "IPv6CP", c)
	return c
}

func randomIfID() (id [8]byte) {
	for id == ([8]byte{}) {
		rand.Read(id[:])
		id[0] &^= 0x02 // "u" bit clear: not a globally unique IEEE identifier (RFC 5072 §4.1)
	}
	return id
}

func (c *ipv6cp) resetCI() {
	c.local = randomIfID()
	c.peer = [8]byte{}
	c.wantIfID = true
}

func (c *ipv6cp) addCI(b []byte) []byte {
	if c.wantIfID {
		b = append(b, ipv6cpIfID, 10)
		b = append(b, c.local[:]...)
	}
	return b
}

func (c *ipv6cp) ackCI(opts []byte) bool {
	var buf [16]byte
	return string(c.addCI(buf[:0])) == string(opts)
}

func (c *ipv6cp) nakCI(opts []byte) bool {
	return forOptions(opts, func(typ byte, v, _ []byte) {
		if typ == ipv6cpIfID && len(v) == 8 {
			// §4.1: take the suggestion if it is usable, else pick anew.
			if s := [8]byte(v); s != ([8]byte{}) && s != c.peer {
				c.local = s
			} else {
				c.local = randomIfID()
			}
		}
	})
}

func (c *ipv6cp) rejCI(opts []byte) bool {
	return forOptions(opts, func(typ byte, _, _ []byte) {
		if typ == ipv6cpIfID {
			c.wantIfID = false
		}
	})
}

func (c *ipv6cp) reqCI(opts []byte, dst []byte, rejectIfDisagree bool) (byte, []byte) {
	var naks, rejs []byte
	var peer [8]byte
	ok := forOptions(opts, func(typ byte, v, raw []byte) {
		if typ != ipv6cpIfID || len(v) != 8 {
			rejs = append(rejs, raw...) // header compression and the unknown
			return
		}
		id := [8]byte(v)
		if id == ([8]byte{}) || id == c.local {
			// Zero or a collision with ours: suggest another (§4.1).
			s := randomIfID()
			for s == c.local {
				s = randomIfID()
			}
			naks = append(append(naks, ipv6cpIfID, 10), s[:]...)
			return
		}
		peer = id
	})
	code, out, acked := reply(ok, opts, rejs, naks, dst, rejectIfDisagree)
	if acked {
		c.peer = peer
	}
	return code, out
}

func (c *ipv6cp) up()       { c.l.ipv6cpUp(c.local, c.peer) }
func (c *ipv6cp) down()     { c.l.ipv6cpDown() }
func (c *ipv6cp) finished() { c.l.ncpFinished(ProtoIPv6CP) }

func (c *ipv6cp) extCode(byte, byte, []byte) bool { return false }
