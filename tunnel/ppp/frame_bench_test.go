package ppp

import (
	"fmt"
	"testing"
)

// A 1200-byte IPv4-like packet: mostly plain bytes with the odd flag/escape.
func benchPayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 0x40)
	}
	p[0] = 0x45
	return p
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{64, 576, 1200, 1500} {
		for _, accm := range []uint32{0, DefaultACCM} {
			b.Run(fmt.Sprintf("%d/accm=%x", n, accm), func(b *testing.B) {
				p := benchPayload(n)
				buf := make([]byte, 0, MaxEncodedLen(n))
				b.ReportAllocs()
				b.SetBytes(int64(n))
				for b.Loop() {
					buf = AppendFrame(buf[:0], ProtoIPv4, p, TxOptions{ACCM: accm, ACFC: true, PFC: true})
				}
			})
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{64, 576, 1200, 1500} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			enc := AppendFrame(nil, ProtoIPv4, benchPayload(n), TxOptions{ACFC: true, PFC: true})
			d := NewDecoder(1600)
			fn := func(uint16, []byte) {}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				d.Feed(enc, fn)
			}
		})
	}
}

// BenchmarkEncodeDecode is the per-packet framing cost of the link: one frame
// built and parsed back, as the two ends of a link do.
func BenchmarkEncodeDecode(b *testing.B) {
	for _, n := range []int{64, 576, 1200, 1500} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p := benchPayload(n)
			buf := make([]byte, 0, MaxEncodedLen(n))
			d := NewDecoder(1600)
			frames := 0
			fn := func(uint16, []byte) { frames++ }
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				buf = AppendFrame(buf[:0], ProtoIPv4, p, TxOptions{ACFC: true, PFC: true})
				d.Feed(buf, fn)
			}
			if frames != b.N {
				b.Fatalf("decoded %d of %d", frames, b.N)
			}
		})
	}
}
