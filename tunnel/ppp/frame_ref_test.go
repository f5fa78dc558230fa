package ppp

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// A byte-at-a-time reference of the framing, written for clarity only, that
// the fast paths of frame.go are checked against.

// refNeedsEscape is RFC 1662 §7.1 for one byte.
func refNeedsEscape(b byte, accm uint32) bool {
	return b == flagSeq || b == escapeSeq || (b < 0x20 && accm&(1<<b) != 0)
}

// refAppendFrame is AppendFrame one byte at a time.
func refAppendFrame(dst []byte, proto uint16, payload []byte, o TxOptions) []byte {
	if proto == ProtoLCP {
		o.ACFC, o.PFC = false, false
		if len(payload) > 0 && payload[0] >= 1 && payload[0] <= 7 {
			o.ACCM = DefaultACCM
		}
	}
	var raw []byte
	if !o.ACFC {
		raw = append(raw, addrAll, ctrlUI)
	}
	if o.PFC && proto < 0x100 && proto&1 == 1 && proto != 0xFF {
		raw = append(raw, byte(proto))
	} else {
		raw = append(raw, byte(proto>>8), byte(proto))
	}
	raw = append(raw, payload...)
	fcs := fcs16Slow(fcsInit, raw) ^ 0xFFFF
	raw = append(raw, byte(fcs), byte(fcs>>8))
	dst = append(dst, flagSeq)
	for _, b := range raw {
		if refNeedsEscape(b, o.ACCM) {
			dst = append(dst, escapeSeq, b^0x20)
		} else {
			dst = append(dst, b)
		}
	}
	return append(dst, flagSeq)
}

// refDecoder is Decoder one byte at a time.
type refDecoder struct {
	buf                    []byte
	max                    int
	escaped, inFrame, over bool
	rxACCM                 uint32
	stats                  DecoderStats
}

func (d *refDecoder) feed(p []byte, fn func(uint16, []byte)) {
	for _, b := range p {
		switch {
		case !d.inFrame:
			if b == flagSeq {
				d.inFrame = true
				d.buf, d.escaped, d.over = d.buf[:0], false, false
			}
		case b == flagSeq:
			if d.escaped {
				d.stats.Aborts++
			} else if len(d.buf) > 0 || d.over {
				d.frame(fn)
			}
			d.buf, d.escaped, d.over = d.buf[:0], false, false
		case d.escaped:
			d.escaped = false
			d.add(b ^ 0x20)
		case b == escapeSeq:
			d.escaped = true
		case b < 0x20 && d.rxACCM&(1<<b) != 0:
			// noise
		default:
			d.add(b)
		}
	}
}

func (d *refDecoder) add(b byte) {
	if len(d.buf) >= d.max {
		d.over = true
	}
	if !d.over {
		d.buf = append(d.buf, b)
	}
}

func (d *refDecoder) frame(fn func(uint16, []byte)) {
	f := d.buf
	switch {
	case d.over:
		d.stats.TooLong++
		return
	case len(f) < 3:
		d.stats.Runts++
		return
	case fcs16Slow(fcsInit, f) != fcsGood:
		d.stats.BadFCS++
		return
	}
	f = f[:len(f)-2]
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
	if f[0]&1 == 1 {
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

// checkEncodeMatchesRef compares AppendFrame with refAppendFrame, appending
// to a prefix so that dst's existing bytes are seen to be kept.
func checkEncodeMatchesRef(t *testing.T, proto uint16, payload []byte, o TxOptions) {
	t.Helper()
	prefix := []byte("prefix")
	got := AppendFrame(prefix[:len(prefix):len(prefix)], proto, payload, o)
	want := refAppendFrame(append([]byte{}, prefix...), proto, payload, o)
	if !bytes.Equal(got, want) {
		t.Fatalf("proto %#x options %+v payload % x:\ngot  % x\nwant % x", proto, o, payload, got, want)
	}
}

// checkDecodeMatchesRef feeds stream, cut at the given points, to a Decoder
// and to a refDecoder: they must hand on the same frames and count the same.
func checkDecodeMatchesRef(t *testing.T, stream []byte, cuts []int, maxFrame int, rxACCM uint32) {
	t.Helper()
	type frame struct {
		proto   uint16
		payload string
	}
	var got, want []frame
	d := NewDecoder(maxFrame)
	d.SetRxACCM(rxACCM)
	r := &refDecoder{max: max(maxFrame, 8), rxACCM: rxACCM}
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		c = max(prev, min(c, len(stream)))
		d.Feed(stream[prev:c], func(proto uint16, p []byte) { got = append(got, frame{proto, string(p)}) })
		r.feed(stream[prev:c], func(proto uint16, p []byte) { want = append(want, frame{proto, string(p)}) })
		prev = c
	}
	if len(got) != len(want) || d.Stats() != r.stats {
		t.Fatalf("stream % x cuts %v max %d rxACCM %#x:\ngot %d frames, %+v\nwant %d frames, %+v",
			stream, cuts, maxFrame, rxACCM, len(got), d.Stats(), len(want), r.stats)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("frame %d: got %#x % x, want %#x % x", i, got[i].proto, got[i].payload, want[i].proto, want[i].payload)
		}
	}
}

// randACCM picks the maps that matter most often, and random ones.
func randACCM(r *rand.Rand) uint32 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return DefaultACCM
	case 2:
		return 1 << r.IntN(32)
	default:
		return r.Uint32()
	}
}

// randBytes makes payloads rich in the bytes framing cares about.
func randBytes(r *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		switch r.IntN(8) {
		case 0:
			p[i] = flagSeq
		case 1:
			p[i] = escapeSeq
		case 2:
			p[i] = byte(r.IntN(0x20))
		default:
			p[i] = byte(r.Uint32())
		}
	}
	return p
}

func TestFramingMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	protos := []uint16{ProtoIPv4, ProtoIPv6, ProtoLCP, ProtoIPCP, ProtoCHAP, 0x00FF, 0x0201, 0x7D7D, 0x7E7E}
	for range 3000 {
		n := r.IntN(100)
		if r.IntN(10) == 0 {
			n = r.IntN(1600)
		}
		payload := randBytes(r, n)
		if r.IntN(3) == 0 { // mostly plain, as real traffic is
			for i := range payload {
				payload[i] |= 0x80
			}
		}
		proto := protos[r.IntN(len(protos))]
		if r.IntN(4) == 0 {
			proto = uint16(r.Uint32())
		}
		o := TxOptions{ACCM: randACCM(r), ACFC: r.IntN(2) == 0, PFC: r.IntN(2) == 0}
		checkEncodeMatchesRef(t, proto, payload, o)

		// A stream of frames, junk and aborts, cut at random points.
		var stream []byte
		for range r.IntN(4) + 1 {
			switch r.IntN(5) {
			case 0:
				stream = append(stream, randBytes(r, r.IntN(40))...)
			case 1:
				stream = append(stream, flagSeq, 0xFF, escapeSeq, flagSeq)
			default:
				stream = AppendFrame(stream, proto, payload, TxOptions{ACCM: randACCM(r), ACFC: r.IntN(2) == 0, PFC: r.IntN(2) == 0})
			}
		}
		if r.IntN(4) == 0 && len(stream) > 0 { // a path inserting a byte
			i := r.IntN(len(stream))
			stream = append(stream[:i], append([]byte{byte(r.IntN(0x20))}, stream[i:]...)...)
		}
		var cuts []int
		for range r.IntN(4) {
			cuts = append(cuts, r.IntN(len(stream)+1))
		}
		if len(cuts) > 1 && cuts[0] > cuts[1] {
			cuts[0], cuts[1] = cuts[1], cuts[0]
		}
		maxFrame := 1600
		if r.IntN(4) == 0 {
			maxFrame = r.IntN(n + 10)
		}
		rx := uint32(0)
		if r.IntN(3) == 0 {
			rx = randACCM(r)
		}
		checkDecodeMatchesRef(t, stream, cuts, maxFrame, rx)
	}
}

// FuzzEncodeMatchesReference: AppendFrame gives byte for byte what the
// reference encoder gives, for any protocol, payload and options.
func FuzzEncodeMatchesReference(f *testing.F) {
	f.Add([]byte("\x45\x00\x7e\x7d\x11\x13\x00"), uint16(0x21), uint32(0), true, true)
	f.Add([]byte{1, 1, 0, 4}, uint16(0xc021), uint32(0), true, true)
	f.Add(bytes.Repeat([]byte("\x7d\x7e\x00\x1f\x20\xff"), 40), uint16(0x7d7e), uint32(0x000A0000), false, true)
	f.Fuzz(func(t *testing.T, payload []byte, proto uint16, accm uint32, acfc, pfc bool) {
		checkEncodeMatchesRef(t, proto, payload, TxOptions{ACCM: accm, ACFC: acfc, PFC: pfc})
	})
}

// FuzzDecodeMatchesReference: for any stream, cut in up to three places,
// receive ACCM and frame limit, the Decoder hands on what the reference
// decoder does and counts the same.
func FuzzDecodeMatchesReference(f *testing.F) {
	f.Add(AppendFrame(nil, ProtoIPv4, []byte("\x45\x7e\x7d\x00"), TxOptions{}), uint16(3), uint16(9), uint16(1500), uint32(0))
	f.Add(AppendFrame([]byte("junk\x7d"), ProtoLCP, []byte{1, 1, 0, 4}, TxOptions{}), uint16(5), uint16(6), uint16(20), uint32(DefaultACCM))
	f.Add([]byte("\x7e\x7d\x7e\x7e\xff\x03\x7d\x7d\x11\x7e"), uint16(2), uint16(7), uint16(4), uint32(0x000A0000))
	f.Fuzz(func(t *testing.T, stream []byte, cut1, cut2 uint16, maxFrame uint16, rxACCM uint32) {
		cuts := []int{int(cut1) % (len(stream) + 1), int(cut2) % (len(stream) + 1)}
		if cuts[0] > cuts[1] {
			cuts[0], cuts[1] = cuts[1], cuts[0]
		}
		checkDecodeMatchesRef(t, stream, cuts, int(maxFrame), rxACCM)
	})
}
