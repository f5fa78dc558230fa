package ppp

import "flag"

// ForceOpenForTest marks a link's IPv4 path open without negotiating, so
// that other packages can measure the data path (benchmarks, pump tests).
// It panics outside a test binary: a real link opens through IPCP.
func ForceOpenForTest(l *Link) {
	if flag.Lookup("test.v") == nil {
		panic("ppp.ForceOpenForTest called outside a test")
	}
	l.v4open.Store(true)
	l.setTxOptions(TxOptions{ACFC: true, PFC: true}, 1500)
}
