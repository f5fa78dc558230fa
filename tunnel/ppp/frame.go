package ppp

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
)

// Async HDLC-like framing, RFC 1662 §4–§7.
//
// A frame on the wire is: 0x7E, address 0xFF, control 0x03, protocol (1 or 2
// bytes), information, FCS-16 (least significant byte first), 0x7E — with
// every 0x7E and 0x7D inside escaped as 0x7D, byte^0x20, and every control
// character (< 0x20) whose bit is set in the peer's Async-Control-Character-Map
// escaped likewise. Address/control may be omitted (ACFC) and the protocol
// field shortened to one byte (PFC) once LCP has agreed to it.

// Well-known PPP protocol numbers.
const (
	ProtoIPv4     uint16 = 0x0021
	ProtoVJComp   uint16 = 0x002D
	ProtoVJUncomp uint16 = 0x002F
	ProtoIPv6     uint16 = 0x0057
	ProtoIPCP     uint16 = 0x8021
	ProtoIPv6CP   uint16 = 0x8057
	ProtoCCP      uint16 = 0x80FD
	ProtoLCP      uint16 = 0xC021
	ProtoPAP      uint16 = 0xC023
	ProtoLQR      uint16 = 0xC025
	ProtoCHAP     uint16 = 0xC223
)

const (
	flagSeq   = 0x7E
	escapeSeq = 0x7D
	addrAll   = 0xFF
	ctrlUI    = 0x03
	fcsInit   = 0xFFFF
	fcsGood   = 0xF0B8
)

// DefaultACCM is the map every link starts with: all control characters escaped.
const DefaultACCM = 0xFFFFFFFF

// TxOptions are what the peer allows us to send (what it acked in our LCP
// negotiation of its receive side).
type TxOptions struct {
	ACCM uint32 // control characters the peer wants escaped (bit n = byte n)
	ACFC bool   // the peer accepts frames without address/control
	PFC  bool   // the peer accepts one-byte protocol fields
}

// DefaultTxOptions apply until LCP is open: everything escaped, nothing compressed.
var DefaultTxOptions = TxOptions{ACCM: DefaultACCM}

// fcsTables holds the RFC 1662 table (fcsTables[0]) and fifteen more derived
// from it, so that FCS16 can fold sixteen bytes per step ("slicing-by-16"):
// the FCS is the per-packet cost that dominates framing, so it is worth 8 KiB.
var fcsTables = func() (t [16][256]uint16) {
	for b := range 256 {
		v := uint16(b)
		for range 8 {
			if v&1 != 0 {
				v = v>>1 ^ 0x8408
			} else {
				v >>= 1
			}
		}
		t[0][b] = v
	}
	for k := 1; k < 16; k++ {
		for b := range 256 {
			v := t[k-1][b]
			t[k][b] = v>>8 ^ t[0][byte(v)]
		}
	}
	return t
}()

// fcsTab points at fcsTables. Reading the tables through a pointer variable
// lets the compiler keep their address in a register and index each table
// by displacement, instead of loading sixteen addresses per step.
var fcsTab = &fcsTables

// FCS16 updates an RFC 1662 frame check sequence with p. Start with 0xFFFF; a
// frame whose bytes, FCS included, run through it gives 0xF0B8 when intact.
func FCS16(fcs uint16, p []byte) uint16 {
	t := fcsTab
	for len(p) >= 16 {
		// Only the first two bytes of a block meet the running FCS: fold
		// the other fourteen first, so that they do not wait for it and the
		// loop-carried chain is two lookups long instead of sixteen.
		x := t[13][p[2]] ^ t[12][p[3]] ^ t[11][p[4]] ^ t[10][p[5]] ^
			t[9][p[6]] ^ t[8][p[7]] ^ t[7][p[8]] ^ t[6][p[9]] ^
			t[5][p[10]] ^ t[4][p[11]] ^ t[3][p[12]] ^ t[2][p[13]] ^
			t[1][p[14]] ^ t[0][p[15]]
		fcs ^= uint16(p[0]) | uint16(p[1])<<8
		fcs = x ^ t[15][byte(fcs)] ^ t[14][fcs>>8]
		p = p[16:]
	}
	for _, b := range p {
		fcs = fcs>>8 ^ t[0][byte(fcs)^b]
	}
	return fcs
}

// fcs16Slow is the byte-at-a-time reference of RFC 1662 appendix C.
func fcs16Slow(fcs uint16, p []byte) uint16 {
	for _, b := range p {
		fcs = fcs>>8 ^ fcsTables[0][byte(fcs)^b]
	}
	return fcs
}

// MaxEncodedLen is the most bytes AppendFrame can add for an n-byte payload:
// every byte of header, payload and FCS escaped, plus two flags.
func MaxEncodedLen(n int) int { return 2*(4+n+2) + 2 }

// isLCPControl reports whether a frame must go out with default options:
// RFC 1662 §7.1 and RFC 1661 §6.6 — LCP Configure/Terminate/Code-Reject
// packets (codes 1–7) are always sent with the full ACCM and without ACFC or
// PFC, so that a peer that lost state can still read them.
func isLCPControl(proto uint16, payload []byte) bool {
	return proto == ProtoLCP && len(payload) > 0 && payload[0] >= 1 && payload[0] <= 7
}

// AppendFrame appends one complete frame carrying payload as protocol proto
// to dst and returns the extended slice. It allocates only when dst lacks
// room for MaxEncodedLen(len(payload)) more bytes.
func AppendFrame(dst []byte, proto uint16, payload []byte, o TxOptions) []byte {
	if proto == ProtoLCP {
		// ACFC/PFC never apply to LCP (RFC 1661 §6.5, §6.6).
		o.ACFC, o.PFC = false, false
		if isLCPControl(proto, payload) {
			o.ACCM = DefaultACCM
		}
	}
	if need := MaxEncodedLen(len(payload)); cap(dst)-len(dst) < need {
		grown := make([]byte, len(dst), len(dst)+need)
		copy(grown, dst)
		dst = grown
	}
	var hdr [4]byte
	h := hdr[:0]
	if !o.ACFC {
		h = append(h, addrAll, ctrlUI)
	}
	// 0x00FF stays two bytes: one byte of 0xFF would read as an address
	// field when ACFC is on too (RFC 1661 lists it as reserved for that).
	if o.PFC && proto < 0x100 && proto&1 == 1 && proto != 0xFF {
		h = append(h, byte(proto))
	} else {
		h = append(h, byte(proto>>8), byte(proto))
	}
	fcs := FCS16(fcsInit, h)
	fcs = FCS16(fcs, payload)
	fcs ^= 0xFFFF
	trailer := [2]byte{byte(fcs), byte(fcs >> 8)}

	dst = append(dst, flagSeq)
	dst = appendEscaped(dst, h, o.ACCM)
	dst = appendEscaped(dst, payload, o.ACCM)
	dst = appendEscaped(dst, trailer[:], o.ACCM)
	return append(dst, flagSeq)
}

// appendEscaped copies p to dst escaping what must be. With an ACCM of 0 —
// what every peer negotiates on an 8-bit-clean link such as ssh — only 0x7D
// and 0x7E need escaping, and runs between them are found with
// bytes.IndexByte (vectorised) and copied whole.
func appendEscaped(dst, p []byte, accm uint32) []byte {
	if accm != 0 {
		return appendEscapedACCM(dst, p, accm)
	}
	if len(p) < 16 {
		// A header or an FCS: not worth two calls to IndexByte.
		for _, b := range p {
			if b == flagSeq || b == escapeSeq {
				dst = append(dst, escapeSeq, b^0x20)
			} else {
				dst = append(dst, b)
			}
		}
		return dst
	}
	nextFlag, nextEsc := bytes.IndexByte(p, flagSeq), bytes.IndexByte(p, escapeSeq)
	base := 0 // p's offset in the original slice; the indexes are relative to it
	for nextFlag >= 0 || nextEsc >= 0 {
		i := nextFlag
		if i < 0 || (nextEsc >= 0 && nextEsc < i) {
			i = nextEsc
		}
		i -= base
		dst = append(dst, p[:i]...)
		dst = append(dst, escapeSeq, p[i]^0x20)
		consumed := base + i
		p, base = p[i+1:], consumed+1
		if nextFlag == consumed {
			if nextFlag = bytes.IndexByte(p, flagSeq); nextFlag >= 0 {
				nextFlag += base
			}
		} else if nextEsc = bytes.IndexByte(p, escapeSeq); nextEsc >= 0 {
			nextEsc += base
		}
	}
	return append(dst, p...)
}

// appendEscapedACCM is appendEscaped for a map with control characters in
// it. Those are common in binary data (one byte in eight), so rather than
// searching for them it goes byte by byte, without branches.
func appendEscapedACCM(dst, p []byte, accm uint32) []byte {
	var esc [256]byte // 1 for the bytes to escape
	for b := range 32 {
		esc[b] = byte(accm >> b & 1)
	}
	esc[flagSeq], esc[escapeSeq] = 1, 1
	n := len(dst)
	dst = slices.Grow(dst, 2*len(p))
	out := dst[n : n+2*len(p)]
	j := 0
	for _, b := range p {
		e := int(esc[b])
		// An escape, then b over it or after it.
		out[j] = escapeSeq
		out[j+e] = b ^ byte(e<<5)
		j += 1 + e
	}
	return dst[:n+j]
}

// SWAR ("SIMD within a register") constants: a one, and a high bit, in
// every byte of a word.
const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// hasZero flags the zero bytes of x: the lowest set bit of the result is
// the high bit of the first (least significant) zero byte, and it is 0 when
// there is none. Bits above the lowest may be false alarms (a borrow out
// of a zero byte), so only the lowest is to be trusted.
func hasZero(x uint64) uint64 { return (x - lsbs) &^ x & msbs }

// hasLess20 is hasZero for bytes below 0x20, with the same caveat.
func hasLess20(x uint64) uint64 { return (x - 0x20*lsbs) &^ x & msbs }

// indexSpecialOrCtl returns the index of the first 0x7E, 0x7D or control
// character (below 0x20) in p, or len(p).
func indexSpecialOrCtl(p []byte) int {
	i := 0
	for ; len(p)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(p[i:])
		if m := hasZero(x^flagSeq*lsbs) | hasZero(x^escapeSeq*lsbs) | hasLess20(x); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(p); i++ {
		if b := p[i]; b == flagSeq || b == escapeSeq || b < 0x20 {
			break
		}
	}
	return i
}

// DecoderStats counts what a Decoder saw.
type DecoderStats struct {
	Frames    uint64 // good frames handed on
	BadFCS    uint64 // frames whose FCS did not check
	TooLong   uint64 // frames longer than the decoder's limit
	Runts     uint64 // frames too short to hold a protocol and FCS
	BadHeader uint64 // frames with a wrong address/control or protocol field
	Aborts    uint64 // frames ended by 0x7D 0x7E (RFC 1662 §4.4.1)
}

// Decoder turns a byte stream into frames. It is not safe for concurrent use.
type Decoder struct {
	buf     []byte // unescaped bytes of the frame being read
	max     int
	escaped bool // the previous byte was 0x7D
	inFrame bool // a flag has been seen: bytes before the first flag are noise
	over    bool // the current frame overflowed; drop it at the next flag
	rxACCM  uint32
	stats   DecoderStats
}

// NewDecoder returns a decoder that accepts frames of up to maxFrame bytes
// after unescaping (address, control, protocol, information and FCS).
func NewDecoder(maxFrame int) *Decoder {
	if maxFrame < 8 {
		maxFrame = 8
	}
	return &Decoder{buf: make([]byte, 0, maxFrame), max: maxFrame}
}

// SetRxACCM sets the control characters we asked the peer to escape. Those
// arriving unescaped were inserted by something on the path (a modem, a
// terminal) and are discarded, as RFC 1662 §7.1 says. The default, 0,
// accepts every byte.
func (d *Decoder) SetRxACCM(accm uint32) { d.rxACCM = accm }

// Stats returns the counters so far.
func (d *Decoder) Stats() DecoderStats { return d.stats }

// Feed consumes p, calling fn for every intact frame with its protocol and
// information field. payload aliases the decoder's buffer: it is valid only
// during the call. Frames may span calls; anything before the first flag is
// skipped (an ssh banner, say).
func (d *Decoder) Feed(p []byte, fn func(proto uint16, payload []byte)) {
	for len(p) > 0 {
		if !d.inFrame {
			i := bytes.IndexByte(p, flagSeq)
			if i < 0 {
				return
			}
			d.inFrame = true
			d.reset()
			p = p[i+1:]
			continue
		}
		// Everything up to the next flag belongs to the frame being read.
		end := bytes.IndexByte(p, flagSeq)
		if end < 0 {
			d.unescape(p)
			return
		}
		d.unescape(p[:end])
		p = p[end+1:]
		if d.escaped {
			d.stats.Aborts++
		} else if len(d.buf) > 0 || d.over {
			d.frame(fn)
		}
		d.reset()
	}
}

// unescape adds p, which holds no flag, to the frame being read: escapes
// undone, and unescaped control characters of the receive ACCM dropped.
func (d *Decoder) unescape(p []byte) {
	if d.escaped && len(p) > 0 {
		d.escaped = false
		d.appendByte(p[0] ^ 0x20)
		p = p[1:]
	}
	if d.rxACCM != 0 {
		d.unescapeACCM(p)
		return
	}
	for {
		i := bytes.IndexByte(p, escapeSeq)
		if i < 0 {
			d.appendBytes(p)
			return
		}
		d.appendBytes(p[:i])
		if i+1 == len(p) {
			d.escaped = true
			return
		}
		d.appendByte(p[i+1] ^ 0x20)
		p = p[i+2:]
	}
}

// unescapeACCM is unescape for a non-zero receive ACCM.
func (d *Decoder) unescapeACCM(p []byte) {
	start, i := 0, 0
	for {
		// No flag in p: this finds escapes and control characters.
		i += indexSpecialOrCtl(p[i:])
		if i == len(p) {
			d.appendBytes(p[start:])
			return
		}
		b := p[i]
		if b != escapeSeq {
			i++
			if d.rxACCM&(1<<b) != 0 {
				// Noise from the path: drop it.
				d.appendBytes(p[start : i-1])
				start = i
			}
			continue
		}
		d.appendBytes(p[start:i])
		if i+1 == len(p) {
			d.escaped = true
			return
		}
		d.appendByte(p[i+1] ^ 0x20)
		i += 2
		start = i
	}
}

func (d *Decoder) reset() {
	d.buf = d.buf[:0]
	d.escaped = false
	d.over = false
}

func (d *Decoder) appendBytes(b []byte) {
	if d.over {
		return
	}
	if len(d.buf)+len(b) > d.max {
		d.over = true
		return
	}
	d.buf = append(d.buf, b...)
}

func (d *Decoder) appendByte(b byte) {
	if d.over {
		return
	}
	if len(d.buf) >= d.max {
		d.over = true
		return
	}
	d.buf = append(d.buf, b)
}

// frame checks and hands on the frame in d.buf.
func (d *Decoder) frame(fn func(uint16, []byte)) {
	f := d.buf
	switch {
	case d.over:
		d.stats.TooLong++
		return
	case len(f) < 3: // a compressed protocol (1) and the FCS (2), at the least
		d.stats.Runts++
		return
	case FCS16(fcsInit, f) != fcsGood:
		d.stats.BadFCS++
		return
	}
	f = f[:len(f)-2]
	// Address/control may be absent (ACFC): 0xFF is never a valid first
	// protocol byte, so its presence tells.
	if f[0] == addrAll {
		if len(f) < 2 || f[1] != ctrlUI {
			d.stats.BadHeader++
			return
		}
		f = f[2:]
	}
	if len(f) == 0 {
		d.stats.Runts++
		return
	}
	var proto uint16
	if f[0]&1 == 1 { // compressed: one byte, odd (RFC 1661 §6.5)
		proto, f = uint16(f[0]), f[1:]
	} else {
		if len(f) < 2 || f[1]&1 == 0 {
			d.stats.BadHeader++
			return
		}
		proto, f = uint16(f[0])<<8|uint16(f[1]), f[2:]
	}
	d.stats.Frames++
	fn(proto, f)
}
