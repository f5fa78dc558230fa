package ppp

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"testing"
)

type gotFrame struct {
	proto   uint16
	payload string
}

func decodeAll(d *Decoder, chunks ...[]byte) []gotFrame {
	var out []gotFrame
	for _, c := range chunks {
		d.Feed(c, func(proto uint16, p []byte) { out = append(out, gotFrame{proto, string(p)}) })
	}
	return out
}

// pppd 2.4.9's first LCP Configure-Request (ACCM 0, magic number), as captured
// from a real pppd on the wire (shared/lab recipe 3, stage "wire").
const pppdConfReq = "7eff7d23c0217d217d217d207d34" + "7d227d267d207d207d207d20" + // header, asyncmap 0
	"7d257d2651af31ca" + "7d277d22" + "7d287d22" + "57967e" // magic, pcomp, accomp, FCS

func TestDecodeRealPPPDFrame(t *testing.T) {
	wire, _ := hex.DecodeString(pppdConfReq)
	d := NewDecoder(1500)
	got := decodeAll(d, []byte("SSH-2.0 banner junk\r\n"), wire)
	if len(got) != 1 {
		t.Fatalf("frames = %d (stats %+v), want 1", len(got), d.Stats())
	}
	want := []byte{1, 1, 0, 0x14, 2, 6, 0, 0, 0, 0, 5, 6, 0x51, 0xaf, 0x31, 0xca, 7, 2, 8, 2}
	if got[0].proto != ProtoLCP || got[0].payload != string(want) {
		t.Errorf("got proto %#x payload % x", got[0].proto, got[0].payload)
	}
	// And our encoder produces the same bytes (LCP goes out with the full ACCM).
	enc := AppendFrame(nil, ProtoLCP, want, TxOptions{ACCM: 0, ACFC: true, PFC: true})
	if !bytes.Equal(enc, wire) {
		t.Errorf("encoded\n% x\nwant\n% x", enc, wire)
	}
}

func TestRoundTripOptions(t *testing.T) {
	payload := make([]byte, 300)
	for i := range payload {
		payload[i] = byte(i)
	}
	for _, proto := range []uint16{ProtoIPv4, ProtoIPv6, ProtoIPCP, ProtoLCP, ProtoCHAP, 0x0201} {
		for _, o := range []TxOptions{{}, {ACCM: DefaultACCM}, {ACCM: 0x000A0000, ACFC: true}, {PFC: true}, {ACFC: true, PFC: true}} {
			t.Run(fmt.Sprintf("%#04x/%+v", proto, o), func(t *testing.T) {
				enc := AppendFrame(nil, proto, payload, o)
				if bytes.IndexByte(enc[1:len(enc)-1], flagSeq) >= 0 {
					t.Fatal("flag byte inside the frame")
				}
				for _, b := range enc[1 : len(enc)-1] {
					if b < 0x20 && o.ACCM&(1<<b) != 0 && proto != ProtoLCP {
						t.Fatalf("control byte %#x not escaped with ACCM %#x", b, o.ACCM)
					}
				}
				// Split at every position, two frames back to back.
				stream := append(append([]byte{}, enc...), enc...)
				for cut := 0; cut <= len(stream); cut++ {
					got := decodeAll(NewDecoder(1500), stream[:cut], stream[cut:])
					if len(got) != 2 || got[0].proto != proto || got[0].payload != string(payload) || got[1] != got[0] {
						t.Fatalf("cut %d: got %d frames", cut, len(got))
					}
				}
			})
		}
	}
}

func TestDecoderDrops(t *testing.T) {
	good := AppendFrame(nil, ProtoIPv4, []byte("hello, world"), TxOptions{})
	badFCS := append([]byte{}, good...)
	badFCS[5] ^= 0x01
	long := AppendFrame(nil, ProtoIPv4, make([]byte, 2000), TxOptions{})
	badHdr := frameRaw([]byte{0xFF, 0x05, 0x00, 0x21, 'x'}) // control field not 0x03
	abort := []byte{flagSeq, 0xFF, 0x03, escapeSeq, flagSeq}
	runt := frameRaw(nil) // nothing but an FCS
	evenProto := frameRaw([]byte{0xFF, 0x03, 0x00, 0x20, 'x'})

	d := NewDecoder(1500)
	got := decodeAll(d, []byte("garbage\x7d"), good, badFCS, good, long, good, badHdr, abort, good, runt, evenProto, good)
	if len(got) != 5 {
		t.Errorf("good frames = %d, want 5", len(got))
	}
	s := d.Stats()
	want := DecoderStats{Frames: 5, BadFCS: 1, TooLong: 1, BadHeader: 2, Aborts: 1, Runts: 1}
	if s != want {
		t.Errorf("stats = %+v, want %+v", s, want)
	}
}

// frameRaw frames raw bytes (header included) with a correct FCS.
func frameRaw(b []byte) []byte {
	fcs := FCS16(fcsInit, b) ^ 0xFFFF
	b = append(append([]byte{}, b...), byte(fcs), byte(fcs>>8))
	return append(appendEscaped([]byte{flagSeq}, b, DefaultACCM), flagSeq)
}

func TestRxACCMDropsNoise(t *testing.T) {
	enc := AppendFrame(nil, ProtoIPv4, []byte{1, 2, 0x11, 0x13, 4}, TxOptions{ACCM: DefaultACCM})
	// A path inserting XON/XOFF (0x11, 0x13) into the stream.
	at := 4
	for enc[at-1] == escapeSeq {
		at++
	}
	noisy := append([]byte{}, enc[:at]...)
	noisy = append(noisy, 0x11, 0x13)
	noisy = append(noisy, enc[at:]...)
	d := NewDecoder(100)
	d.SetRxACCM(0x000A0000)
	if got := decodeAll(d, noisy); len(got) != 1 || got[0].payload != "\x01\x02\x11\x13\x04" {
		t.Errorf("got %v, stats %+v", got, d.Stats())
	}
}

func TestFCS16Vector(t *testing.T) {
	// RFC 1662 appendix C.2: the good final value over data plus its FCS.
	data := []byte("123456789")
	fcs := FCS16(fcsInit, data) ^ 0xFFFF
	if fcs != 0x906E {
		t.Errorf("FCS16(\"123456789\") = %#04x, want 0x906e (CRC-16/X-25)", fcs)
	}
	if FCS16(fcsInit, append(data, byte(fcs), byte(fcs>>8))) != fcsGood {
		t.Error("residue is not 0xF0B8")
	}
}

func TestAppendFrameNoAlloc(t *testing.T) {
	payload := make([]byte, 1200)
	buf := make([]byte, 0, MaxEncodedLen(len(payload)))
	if n := testing.AllocsPerRun(100, func() { buf = AppendFrame(buf[:0], ProtoIPv4, payload, TxOptions{}) }); n != 0 {
		t.Errorf("AppendFrame allocates %v times per call", n)
	}
	d := NewDecoder(1500)
	fn := func(uint16, []byte) {}
	if n := testing.AllocsPerRun(100, func() { d.Feed(buf, fn) }); n != 0 {
		t.Errorf("Feed allocates %v times per frame", n)
	}
}

func TestFCS16SlicingMatchesReference(t *testing.T) {
	p := make([]byte, 300)
	for i := range p {
		p[i] = byte(i*131 + 17)
	}
	for n := 0; n <= len(p); n++ {
		if a, b := FCS16(0x1234, p[:n]), fcs16Slow(0x1234, p[:n]); a != b {
			t.Fatalf("len %d: slicing %#04x, reference %#04x", n, a, b)
		}
	}
}
