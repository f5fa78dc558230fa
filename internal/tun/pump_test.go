package tun

import (
	"io"
	"testing"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// fakeDev is a TUN (or a stream of frames) that yields the same packet
// (chunk) n times, then EOF.
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

// burstDev is a TUN that has burst packets ready at a time: ReadNoWait
// hands over the rest of a burst, then says nothing is ready.
type burstDev struct {
	fakeDev
	burst, left int
}

func (d *burstDev) Read(p []byte) (int, error) {
	d.left = d.burst - 1
	return d.fakeDev.Read(p)
}

func (d *burstDev) ReadNoWait(p []byte) (int, error) {
	if d.left == 0 || d.n == 0 {
		return 0, nil
	}
	d.left--
	return d.fakeDev.Read(p)
}

// countingWriter counts the writes to the stream.
type countingWriter struct{ writes, max int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	w.max = max(w.max, len(p))
	return len(p), nil
}

// BenchmarkPumpBatched: TUN → link with the device draining 64 packets at a
// time, framed into one write: nothing allocated per packet (the two
// buffers of a Pump call are all), and 64 packets per write.
func BenchmarkPumpBatched(b *testing.B) {
	pkt := make([]byte, 1200)
	pkt[0] = 0x45
	w := &countingWriter{}
	l := ppp.NewLink(struct {
		io.Reader
		io.Writer
	}{nil, w}, ppp.Config{})
	ppp.ForceOpenForTest(l)
	dev := &burstDev{fakeDev: fakeDev{pkt: pkt, n: b.N}, burst: 64}
	var st PumpStats
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	if err := Pump(dev, l, 1200, &st); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if got := st.ToLink.Load(); got != uint64(b.N) {
		b.Fatalf("pumped %d of %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/float64(w.writes), "pkts/write")
}

func TestPumpBatchesWhatIsReady(t *testing.T) {
	pkt := make([]byte, 1200)
	pkt[0] = 0x45
	w := &countingWriter{}
	l := ppp.NewLink(struct {
		io.Reader
		io.Writer
	}{nil, w}, ppp.Config{})
	ppp.ForceOpenForTest(l)
	var st PumpStats
	// 200 packets ready at a time: batches stop at MaxBatch bytes.
	if err := Pump(&burstDev{fakeDev: fakeDev{pkt: pkt, n: 400}, burst: 200}, l, 1200, &st); err != nil {
		t.Fatal(err)
	}
	if st.ToLink.Load() != 400 {
		t.Fatalf("sent %d of 400", st.ToLink.Load())
	}
	// A batch closes at the first frame that takes it to MaxBatch bytes.
	frame := len(ppp.AppendFrame(nil, ppp.ProtoIPv4, pkt, ppp.TxOptions{ACFC: true, PFC: true}))
	perBatch := (MaxBatch + frame - 1) / frame
	want := 2 * ((200 + perBatch - 1) / perBatch)
	if w.writes != want || w.max > perBatch*frame {
		t.Errorf("%d writes of up to %d bytes for 2 bursts of 200 packets, want %d of up to %d", w.writes, w.max, want, perBatch*frame)
	}
	// One packet at a time: one write each, nothing held back.
	w.writes = 0
	st = PumpStats{}
	if err := Pump(&burstDev{fakeDev: fakeDev{pkt: pkt, n: 5}, burst: 1}, l, 1200, &st); err != nil {
		t.Fatal(err)
	}
	if w.writes != 5 || st.ToLink.Load() != 5 {
		t.Errorf("lone packets: %d writes for %d packets, want one each", w.writes, st.ToLink.Load())
	}
}

// sinkDev is a TUN that counts the packets written to it; reading it says
// the pump is running (its handler set), then waits until it is closed.
type sinkDev struct {
	pkts            int
	reading, closed chan struct{}
}

func (d *sinkDev) Read(p []byte) (int, error) {
	close(d.reading)
	<-d.closed
	return 0, io.EOF
}

func (d *sinkDev) Write(p []byte) (int, error) {
	d.pkts++
	return len(p), nil
}

// BenchmarkPumpReceive: link → TUN, the link's reader decoding 64 KiB reads
// of the stream (48 frames each) and handing each packet to the TUN:
// nothing allocated per packet.
func BenchmarkPumpReceive(b *testing.B) {
	pkt := make([]byte, 1200)
	pkt[0] = 0x45
	var chunk []byte
	const perChunk = 48
	for range perChunk {
		chunk = ppp.AppendFrame(chunk, ppp.ProtoIPv4, pkt, ppp.TxOptions{ACFC: true, PFC: true})
	}
	chunks := (b.N + perChunk - 1) / perChunk
	stream := &fakeDev{pkt: chunk, n: chunks}
	l := ppp.NewLink(struct {
		io.Reader
		io.Writer
	}{stream, io.Discard}, ppp.Config{})
	ppp.ForceOpenForTest(l)
	dev := &sinkDev{reading: make(chan struct{}), closed: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- Pump(dev, l, 1200, nil) }()
	<-dev.reading
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	l.Run(b.Context()) // ends when the stream does
	b.StopTimer()
	close(dev.closed)
	<-done
	if dev.pkts != chunks*perChunk {
		b.Fatalf("%d packets to the TUN, want %d", dev.pkts, chunks*perChunk)
	}
}
