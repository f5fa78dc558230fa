package ppp

// ForceOpenForTest marks a link's IPv4 path open without negotiating, so
// that other packages can measure the data path (benchmarks, pump tests).
// It is not for production use: a real link opens through IPCP.
func ForceOpenForTest(l *Link) {
	l.v4open.Store(true)
	l.setTxOptions(TxOptions{ACFC: true, PFC: true}, 1500)
}
