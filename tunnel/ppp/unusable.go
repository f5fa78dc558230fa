package ppp

import "net/netip"

// Unusable says why a, handed over by a far end, is no address for either
// end of a link or a DNS server behind it — loopback, multicast, broadcast,
// link-local, reserved, or in one of forbidden — or "" when it is usable.
// It is the check IPCP makes, for an engine that negotiates elsewhere (the
// system pppd) and learns the addresses afterwards.
func Unusable(a netip.Addr, forbidden []Forbidden) string { return unusableAddr(a, forbidden) }
