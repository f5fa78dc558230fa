package tunnel

import (
	"io"
	"testing"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// fakeDev is a TUN that yields the same packet n times, then EOF.
type fakeDev struct {
	pkt []byte
	n   int
}

func (d *fakeDev) Read(p []byte) (int, error) {
	if d.n == 0 {
		return 0, io.EOF
	}
	d.n--
	return copy(p, d.pkt), nil
}

func (d *fakeDev) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkPump: the TUN → link direction of the copy, through a real
// ppp.Link framing onto a stream, allocates nothing per packet.
func BenchmarkPump(b *testing.B) {
	pkt := make([]byte, 1200)
	pkt[0] = 0x45
	l := ppp.NewLink(struct {
		io.Reader
		io.Writer
	}{nil, io.Discard}, ppp.Config{})
	ppp.ForceOpenForTest(l)
	dev := &fakeDev{pkt: pkt, n: b.N}
	var st PumpStats
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	if err := Pump(dev, l, 1200, &st); err != nil {
		b.Fatal(err)
	}
	if got := st.ToLink.Load(); got != uint64(b.N) {
		b.Fatalf("pumped %d of %d", got, b.N)
	}
}

func TestPumpCountsDrops(t *testing.T) {
	pkt := []byte{0x45, 0, 0, 20}
	l := ppp.NewLink(struct {
		io.Reader
		io.Writer
	}{nil, io.Discard}, ppp.Config{})
	var st PumpStats
	if err := Pump(&fakeDev{pkt: pkt, n: 3}, l, 1200, &st); err != nil {
		t.Fatal(err)
	}
	if st.DroppedNotUp.Load() != 3 || st.ToLink.Load() != 0 {
		t.Errorf("before the link is up: dropped %d, sent %d", st.DroppedNotUp.Load(), st.ToLink.Load())
	}
	ppp.ForceOpenForTest(l)
	st = PumpStats{}
	if err := Pump(&fakeDev{pkt: pkt, n: 3}, l, 1200, &st); err != nil {
		t.Fatal(err)
	}
	if st.ToLink.Load() != 3 {
		t.Errorf("once up: sent %d of 3", st.ToLink.Load())
	}
}
