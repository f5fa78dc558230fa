package tunnel_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// BenchmarkLinkThroughput measures TCP throughput between two namespaces
// through roamtun connect ⇄ roamtun serve (PPP framing, two TUNs, a pipe in
// between) and, in the same run, over a plain veth between the same kind of
// namespaces, and reports the ratio. Compare figures only side by side.
func BenchmarkLinkThroughput(b *testing.B) {
	p := startPair(b)
	if err := p.lab.Veth(p.laptop, "v0", "10.77.0.1/24", p.home, "v1", "10.77.0.2/24"); err != nil {
		b.Fatal(err)
	}
	const chunk = 32 << 20
	var link, veth time.Duration
	b.SetBytes(chunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := lab.Transfer(p.laptop, p.home, "10.9.0.1:5001", chunk)
		if err != nil {
			b.Fatal(err)
		}
		link += d
		if d, err = lab.Transfer(p.laptop, p.home, "10.77.0.2:5002", chunk); err != nil {
			b.Fatal(err)
		}
		veth += d
	}
	b.StopTimer()
	mbit := func(d time.Duration) float64 { return float64(chunk) * float64(b.N) * 8 / d.Seconds() / 1e6 }
	b.ReportMetric(mbit(link), "link-Mbit/s")
	b.ReportMetric(mbit(veth), "veth-Mbit/s")
	b.ReportMetric(mbit(link)/mbit(veth), "link/veth")
	p.stop(b)
}

// BenchmarkLinkMTU: TCP through connect⇄serve (no ssh) at several link MTUs,
// side by side in one run — what a larger MTU would buy when both ends are
// roamtun. (Traffic leaving the server to the internet meets MTUs of 1500
// or less, behind tunnels often less: 1200 stays the default.)
func BenchmarkLinkMTU(b *testing.B) {
	const chunk = 32 << 20
	mtus := []int{1200, 1500, 4000, 9000}
	took := make([]time.Duration, len(mtus))
	for i := 0; i < b.N; i++ {
		for j, mtu := range mtus {
			p := startPairMTU(b, mtu)
			d, err := lab.Transfer(p.laptop, p.home, "10.9.0.1:5001", chunk)
			if err != nil {
				b.Fatal(err)
			}
			took[j] += d
			p.stop(b)
			p.lab.Close()
		}
	}
	for j, mtu := range mtus {
		mbit := float64(chunk) * float64(b.N) * 8 / took[j].Seconds() / 1e6
		b.ReportMetric(mbit, fmt.Sprintf("mtu%d-Mbit/s", mtu))
	}
}
