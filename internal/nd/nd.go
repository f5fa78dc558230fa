// Package nd is IPv6 router discovery (RFC 4861) over a point-to-point
// link that carries bare IPv6 packets: a PPP link. The far end advertises a
// /64 prefix (and DNS servers, RFC 8106) in router advertisements; the
// laptop solicits them and forms its address from the prefix and its IPv6CP
// interface identifier, as SLAAC over PPP does (RFC 5072 §5). Messages are
// built and parsed with mdlayher/ndp; this package adds the IPv6 header,
// the checksum check ndp leaves out, and the rules for what to believe.
package nd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
)

// ICMPv6 types of router discovery.
const (
	TypeRS = 133 // router solicitation
	TypeRA = 134 // router advertisement
)

const (
	ipv6HeaderLen = 40
	protoICMPv6   = 58
)

// Multicast destinations of router discovery.
var (
	AllNodes   = netip.MustParseAddr("ff02::1")
	AllRouters = netip.MustParseAddr("ff02::2")
)

// RouterMessage returns TypeRS or TypeRA when pkt is an IPv6 packet carrying
// a router solicitation or advertisement directly (no extension headers, as
// neither ever has one), and 0 for anything else. It reads three header
// bytes and allocates nothing: it runs on every packet of the data path.
func RouterMessage(pkt []byte) byte {
	if len(pkt) < ipv6HeaderLen+8 || pkt[0]>>4 != 6 || pkt[6] != protoICMPv6 {
		return 0
	}
	if t := pkt[ipv6HeaderLen]; t == TypeRS || t == TypeRA {
		return t
	}
	return 0
}

// LinkLocal is the link-local address with interface identifier id
// (RFC 5072 §5), the address each end of a PPP link has from IPv6CP.
func LinkLocal(id [8]byte) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	copy(a[8:], id[:])
	return netip.AddrFrom16(a)
}

// Packet returns m as an IPv6 packet from src to dst with hop limit 255
// (RFC 4861 §6.1: receivers drop anything else) and its checksum set.
func Packet(m ndp.Message, src, dst netip.Addr) ([]byte, error) {
	body, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return nil, fmt.Errorf("building %T: %w", m, err)
	}
	p := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(body))
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:], uint16(len(body)))
	p[6], p[7] = protoICMPv6, 255
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	return append(p, body...), nil
}

// Solicitation is a router solicitation from the link-local address with
// interface identifier id to all routers. A PPP link has no link-layer
// address, so it carries no options.
func Solicitation(id [8]byte) []byte {
	p, err := Packet(&ndp.RouterSolicitation{}, LinkLocal(id), AllRouters)
	if err != nil {
		panic(err) // an empty solicitation always marshals
	}
	return p
}

// Lifetimes the advertiser uses: it repeats itself every Interval, well
// inside RouterLifetime, so that a host which does not solicit (a kernel
// doing SLAAC behind stock pppd) keeps its default route.
const (
	Interval       = 10 * time.Minute
	RouterLifetime = 30 * time.Minute
	validLifetime  = 24 * time.Hour
	prefLifetime   = 4 * time.Hour
)

// Advertisement is what a far end advertises: itself as the default
// router, prefix (a /64) for addresses (A flag) on the link (L flag), the
// link's MTU, and dns as recursive DNS servers when there are any.
func Advertisement(prefix netip.Prefix, dns []netip.Addr, mtu int) *ndp.RouterAdvertisement {
	ra := &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  RouterLifetime,
		Options: []ndp.Option{
			&ndp.PrefixInformation{PrefixLength: uint8(prefix.Bits()), OnLink: true,
				AutonomousAddressConfiguration: true, ValidLifetime: validLifetime,
				PreferredLifetime: prefLifetime, Prefix: prefix.Masked().Addr()},
			ndp.NewMTU(uint32(mtu)),
		},
	}
	if len(dns) > 0 {
		ra.Options = append(ra.Options, &ndp.RecursiveDNSServer{Lifetime: RouterLifetime, Servers: dns})
	}
	return ra
}

// ParseRA checks pkt as a router advertisement received over the link
// (RFC 4861 §6.1.2: hop limit 255, a link-local source, code 0, a good
// checksum) and parses it. It returns the router's address too.
func ParseRA(pkt []byte) (*ndp.RouterAdvertisement, netip.Addr, error) {
	icmp, src, err := checkPacket(pkt, TypeRA)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("router advertisement: %w", err)
	}
	ra, ok := m.(*ndp.RouterAdvertisement)
	if !ok {
		return nil, netip.Addr{}, errors.New("router advertisement: parsed as another message")
	}
	return ra, src, nil
}

// IsSolicitation reports whether pkt is a valid router solicitation
// (RFC 4861 §6.1.1; its source may be unspecified).
func IsSolicitation(pkt []byte) bool {
	_, _, err := checkPacket(pkt, TypeRS)
	return err == nil
}

// checkPacket returns pkt's ICMPv6 message if pkt is one of type typ fit
// to believe, and its source address.
func checkPacket(pkt []byte, typ byte) ([]byte, netip.Addr, error) {
	if RouterMessage(pkt) != typ {
		return nil, netip.Addr{}, fmt.Errorf("not an ICMPv6 message of type %d", typ)
	}
	n := int(binary.BigEndian.Uint16(pkt[4:]))
	if n < 8 || ipv6HeaderLen+n > len(pkt) {
		return nil, netip.Addr{}, fmt.Errorf("bad IPv6 payload length %d in a packet of %d bytes", n, len(pkt))
	}
	icmp := pkt[ipv6HeaderLen : ipv6HeaderLen+n]
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	switch {
	case pkt[7] != 255:
		return nil, src, fmt.Errorf("hop limit %d, not 255: it was routed here", pkt[7])
	case icmp[1] != 0:
		return nil, src, fmt.Errorf("ICMPv6 code %d, not 0", icmp[1])
	case typ == TypeRA && !src.IsLinkLocalUnicast():
		return nil, src, fmt.Errorf("source %s is not link-local", src)
	case checksum(icmp, src, dst) != 0:
		return nil, src, errors.New("bad ICMPv6 checksum")
	}
	return icmp, src, nil
}

// checksum is the ones' complement sum of the IPv6 pseudo-header and msg
// (RFC 4443 §2.3): 0 for a message whose checksum field is right.
func checksum(msg []byte, src, dst netip.Addr) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(b[0])<<8 | uint32(b[1])
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	sum += uint32(len(msg)) + protoICMPv6
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
