package ppp

import (
	"bytes"
	"testing"
)

// FuzzDecoder feeds arbitrary streams at arbitrary split points: the decoder
// must never panic, and must never hand on a frame whose FCS did not check.
func FuzzDecoder(f *testing.F) {
	f.Add(AppendFrame(nil, ProtoLCP, []byte{1, 1, 0, 4}, TxOptions{}), uint8(3))
	f.Add([]byte("\x7e\x7d\x7e\x7e\xff\x03\x7d"), uint8(1))
	f.Add([]byte("banner\r\n\x7e\xff\x03\xc0\x21\x01\x01\x00\x04\x00\x00\x7e"), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		d := NewDecoder(1504)
		cut := int(split) % (len(data) + 1)
		var frames uint64
		check := func(proto uint16, p []byte) {
			frames++
			if proto&1 == 0 {
				t.Fatalf("even protocol %#x handed on", proto)
			}
			if len(p) > 1504 {
				t.Fatalf("payload of %d bytes exceeds the limit", len(p))
			}
		}
		d.Feed(data[:cut], check)
		d.Feed(data[cut:], check)
		if s := d.Stats(); s.Frames != frames {
			t.Fatalf("stats say %d frames, handed on %d", s.Frames, frames)
		}
	})
}

// FuzzRoundTrip: any payload, protocol and options encode and decode back exactly.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("\x45\x00\x7e\x7d\x11"), uint16(0x21), uint32(0), true, true)
	f.Add([]byte{1, 1, 0, 4}, uint16(0xc021), uint32(0xffffffff), false, false)
	f.Fuzz(func(t *testing.T, payload []byte, proto uint16, accm uint32, acfc, pfc bool) {
		proto |= 1 // protocol numbers are odd
		proto &^= 0x100
		if len(payload) > 1500 {
			payload = payload[:1500]
		}
		enc := AppendFrame(nil, proto, payload, TxOptions{ACCM: accm, ACFC: acfc, PFC: pfc})
		d := NewDecoder(1508)
		n := 0
		d.Feed(enc, func(p uint16, b []byte) {
			n++
			if p != proto || !bytes.Equal(b, payload) {
				t.Fatalf("got %#x % x, want %#x % x", p, b, proto, payload)
			}
		})
		if n != 1 {
			t.Fatalf("decoded %d frames, want 1 (stats %+v)", n, d.Stats())
		}
	})
}
