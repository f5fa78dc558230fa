package ppp

import "bytes"

// The framing as it was before the word-at-a-time rewrite (commit 6614536),
// kept only so that the framing benchmarks measure the old and the new code
// side by side, in one run on one machine (the "earlier" sub-benchmarks).
// Not used by any test.

// baseFCS16 updates an RFC 1662 frame check sequence with p. Start with 0xFFFF; a
// frame whose bytes, FCS included, run through it gives 0xF0B8 when intact.
func baseFCS16(fcs uint16, p []byte) uint16 {
	t := &fcsTables
	for len(p) >= 16 {
		fcs ^= uint16(p[0]) | uint16(p[1])<<8
		fcs = t[15][byte(fcs)] ^ t[14][fcs>>8] ^ t[13][p[2]] ^ t[12][p[3]] ^
			t[11][p[4]] ^ t[10][p[5]] ^ t[9][p[6]] ^ t[8][p[7]] ^
			t[7][p[8]] ^ t[6][p[9]] ^ t[5][p[10]] ^ t[4][p[11]] ^
			t[3][p[12]] ^ t[2][p[13]] ^ t[1][p[14]] ^ t[0][p[15]]
		p = p[16:]
	}
	for len(p) >= 8 {
		fcs ^= uint16(p[0]) | uint16(p[1])<<8
		fcs = t[7][byte(fcs)] ^ t[6][fcs>>8] ^ t[5][p[2]] ^ t[4][p[3]] ^
			t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]]
		p = p[8:]
	}
	for _, b := range p {
		fcs = fcs>>8 ^ t[0][byte(fcs)^b]
	}
	return fcs
}

// baseAppendFrame appends one complete frame carrying payload as protocol proto
// to dst and returns the extended slice. It allocates only when dst lacks
// room for MaxEncodedLen(len(payload)) more bytes.
func baseAppendFrame(dst []byte, proto uint16, payload []byte, o TxOptions) []byte {
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
	fcs := baseFCS16(fcsInit, h)
	fcs = baseFCS16(fcs, payload)
	fcs ^= 0xFFFF
	trailer := [2]byte{byte(fcs), byte(fcs >> 8)}

	dst = append(dst, flagSeq)
	dst = baseAppendEscaped(dst, h, o.ACCM)
	dst = baseAppendEscaped(dst, payload, o.ACCM)
	dst = baseAppendEscaped(dst, trailer[:], o.ACCM)
	return append(dst, flagSeq)
}

// baseAppendEscaped copies p to dst escaping what must be. With an ACCM of 0 —
// what every peer negotiates on an 8-bit-clean link such as ssh — only 0x7D
// and 0x7E need escaping, and runs between them are found with
// bytes.IndexByte (vectorised) and copied whole.
func baseAppendEscaped(dst, p []byte, accm uint32) []byte {
	if accm != 0 {
		return baseAppendEscapedACCM(dst, p, accm)
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

// baseAppendEscapedACCM is baseAppendEscaped for a map with control characters in it.
func baseAppendEscapedACCM(dst, p []byte, accm uint32) []byte {
	start := 0
	for i, b := range p {
		if b == flagSeq || b == escapeSeq || (b < 0x20 && accm&(1<<b) != 0) {
			dst = append(dst, p[start:i]...)
			dst = append(dst, escapeSeq, b^0x20)
			start = i + 1
		}
	}
	return append(dst, p[start:]...)
}

// baseDecoder turns a byte stream into frames. It is not safe for concurrent use.
type baseDecoder struct {
	buf     []byte // unescaped bytes of the frame being read
	max     int
	escaped bool // the previous byte was 0x7D
	inFrame bool // a flag has been seen: bytes before the first flag are noise
	over    bool // the current frame overflowed; drop it at the next flag
	rxACCM  uint32
	stats   DecoderStats
}

// newBaseDecoder returns a decoder that accepts frames of up to maxFrame bytes
// after unescaping (address, control, protocol, information and FCS).
func newBaseDecoder(maxFrame int) *baseDecoder {
	if maxFrame < 8 {
		maxFrame = 8
	}
	return &baseDecoder{buf: make([]byte, 0, maxFrame), max: maxFrame}
}

// Feed consumes p, calling fn for every intact frame with its protocol and
// information field. payload aliases the decoder's buffer: it is valid only
// during the call. Frames may span calls; anything before the first flag is
// skipped (an ssh banner, say).
func (d *baseDecoder) Feed(p []byte, fn func(proto uint16, payload []byte)) {
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
		// Fast path: copy a run of plain bytes in one go.
		if !d.escaped {
			n := d.plainRun(p)
			if n > 0 {
				d.appendBytes(p[:n])
				p = p[n:]
				continue
			}
		}
		b := p[0]
		p = p[1:]
		switch {
		case b == flagSeq:
			if d.escaped {
				d.stats.Aborts++
			} else if len(d.buf) > 0 || d.over {
				d.frame(fn)
			}
			d.reset()
		case d.escaped:
			d.escaped = false
			d.appendBytes([]byte{b ^ 0x20})
		case b == escapeSeq:
			d.escaped = true
		default:
			// An unescaped control character we asked to have escaped: noise.
		}
	}
}

// plainRun returns how many leading bytes of p are ordinary frame content.
func (d *baseDecoder) plainRun(p []byte) int {
	if d.rxACCM == 0 {
		n := len(p)
		if i := bytes.IndexByte(p, flagSeq); i >= 0 {
			n = i
		}
		if i := bytes.IndexByte(p[:n], escapeSeq); i >= 0 {
			n = i
		}
		return n
	}
	for n, b := range p {
		if b == flagSeq || b == escapeSeq || (b < 0x20 && d.rxACCM&(1<<b) != 0) {
			return n
		}
	}
	return len(p)
}

func (d *baseDecoder) reset() {
	d.buf = d.buf[:0]
	d.escaped = false
	d.over = false
}

func (d *baseDecoder) appendBytes(b []byte) {
	if d.over {
		return
	}
	if len(d.buf)+len(b) > d.max {
		d.over = true
		return
	}
	d.buf = append(d.buf, b...)
}

// frame checks and hands on the frame in d.buf.
func (d *baseDecoder) frame(fn func(uint16, []byte)) {
	f := d.buf
	switch {
	case d.over:
		d.stats.TooLong++
		return
	case len(f) < 3: // a compressed protocol (1) and the FCS (2), at the least
		d.stats.Runts++
		return
	case baseFCS16(fcsInit, f) != fcsGood:
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
