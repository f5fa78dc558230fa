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

// framing is one implementation of the framing: the current code, and the
// earlier one (frame_baseline_test.go) that each benchmark runs beside it.
type framing struct {
	name    string
	append  func(dst []byte, proto uint16, payload []byte, o TxOptions) []byte
	decoder func(maxFrame int) func(p []byte, fn func(proto uint16, payload []byte))
}

var framings = []framing{
	{"current", AppendFrame, func(n int) func([]byte, func(uint16, []byte)) { return NewDecoder(n).Feed }},
	{"earlier", baseAppendFrame, func(n int) func([]byte, func(uint16, []byte)) { return newBaseDecoder(n).Feed }},
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{64, 576, 1200, 1500} {
		for _, accm := range []uint32{0, DefaultACCM} {
			for _, f := range framings {
				b.Run(fmt.Sprintf("%d/accm=%x/%s", n, accm, f.name), func(b *testing.B) {
					p := benchPayload(n)
					buf := make([]byte, 0, MaxEncodedLen(n))
					b.ReportAllocs()
					b.SetBytes(int64(n))
					for b.Loop() {
						buf = f.append(buf[:0], ProtoIPv4, p, TxOptions{ACCM: accm, ACFC: true, PFC: true})
					}
				})
			}
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{64, 576, 1200, 1500} {
		for _, f := range framings {
			b.Run(fmt.Sprintf("%d/%s", n, f.name), func(b *testing.B) {
				enc := AppendFrame(nil, ProtoIPv4, benchPayload(n), TxOptions{ACFC: true, PFC: true})
				feed := f.decoder(1600)
				fn := func(uint16, []byte) {}
				b.ReportAllocs()
				b.SetBytes(int64(n))
				for b.Loop() {
					feed(enc, fn)
				}
			})
		}
	}
}

// BenchmarkEncodeDecode is the per-packet framing cost of the link: one frame
// built and parsed back, as the two ends of a link do.
func BenchmarkEncodeDecode(b *testing.B) {
	for _, n := range []int{64, 576, 1200, 1500} {
		for _, f := range framings {
			b.Run(fmt.Sprintf("%d/%s", n, f.name), func(b *testing.B) {
				p := benchPayload(n)
				buf := make([]byte, 0, MaxEncodedLen(n))
				feed := f.decoder(1600)
				frames := 0
				fn := func(uint16, []byte) { frames++ }
				b.ReportAllocs()
				b.SetBytes(int64(n))
				for b.Loop() {
					buf = f.append(buf[:0], ProtoIPv4, p, TxOptions{ACFC: true, PFC: true})
					feed(buf, fn)
				}
				if frames != b.N {
					b.Fatalf("decoded %d of %d", frames, b.N)
				}
			})
		}
	}
}
