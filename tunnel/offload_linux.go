package tunnel

// TCP segmentation offload on the TUN (IFF_VNET_HDR). Without it the
// kernel hands the pump one MTU-sized packet per read, and every one of them
// has gone alone through the sending TCP stack, the qdisc and the TUN: at
// an MTU of 1200 that per-packet work is most of what moving a bulk upload
// costs. With TUN_F_TSO4/6 the kernel hands over TCP "super-packets" of up
// to 64 KiB instead, with a virtio_net_hdr saying how to cut them; the pump
// cuts them into MTU-sized segments itself (as a NIC would), which costs a
// copy and a checksum per segment — far less. The layout follows
// include/uapi/linux/virtio_net.h; the segmentation is what the kernel's
// tcp_gso_segment does, and what wireguard-go's tun/offload_linux.go does.

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vnetHdrLen is sizeof(struct virtio_net_hdr): flags, gso_type, hdr_len,
// gso_size, csum_start, csum_offset (the last four little-endian on x86 and
// arm64: host order).
const vnetHdrLen = 10

// tunOffloads are what we ask the kernel to leave to us: checksums, and
// TCP segmentation over IPv4 and IPv6. Not TSO_ECN: a CWR-marked stream is
// then segmented by the kernel, which is rare and fine.
const tunOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// gsoState is a super-packet being cut into segments by nextSegment.
type gsoState struct {
	pkt      []byte // the whole packet (after the virtio header); nil when none
	v6       bool
	iphLen   int // IP header length, the start of the TCP header
	hdrLen   int // IP and TCP headers: where the payload starts
	mss      int // payload bytes per segment
	next     int // offset in pkt of the next segment's payload
	i        int // index of the next segment
	firstSeq uint32
}

// takeVnet makes sense of one read of a vnet-header TUN, frame: a packet
// with nothing to do is copied to p at once (its checksum completed if the
// kernel left that to us); a TCP super-packet is set up for nextSegment,
// which gives its first segment. It returns 0 for a frame it drops
// (malformed, a GSO type not asked for).
func (t *TUN) takeVnet(p, frame []byte) int {
	if len(frame) <= vnetHdrLen {
		return 0
	}
	flags, gsoType := frame[0], frame[1]
	gsoSize := int(binary.NativeEndian.Uint16(frame[4:]))
	csumStart := int(binary.NativeEndian.Uint16(frame[6:]))
	csumOffset := int(binary.NativeEndian.Uint16(frame[8:]))
	pkt := frame[vnetHdrLen:]
	switch gsoType {
	case unix.VIRTIO_NET_HDR_GSO_NONE:
		if flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
			// The field holds the pseudo-header sum; add the rest.
			at := csumStart + csumOffset
			if at+2 > len(pkt) || csumStart > len(pkt) {
				return 0
			}
			initial := uint64(binary.BigEndian.Uint16(pkt[at:]))
			pkt[at], pkt[at+1] = 0, 0
			binary.BigEndian.PutUint16(pkt[at:], ^fold(sum16(pkt[csumStart:], initial)))
		}
		if len(pkt) > len(p) {
			return 0
		}
		return copy(p, pkt)
	case unix.VIRTIO_NET_HDR_GSO_TCPV4, unix.VIRTIO_NET_HDR_GSO_TCPV6:
		// hdr_len is only a hint (it may include nothing but the IP header
		// on some kernels): the TCP header says its own length.
		if csumStart+20 > len(pkt) || gsoSize == 0 {
			return 0
		}
		hdrLen := csumStart + int(pkt[csumStart+12]>>4)*4
		if hdrLen > len(pkt) || hdrLen+gsoSize > len(p) {
			return 0
		}
		t.gso = gsoState{pkt: pkt, v6: gsoType == unix.VIRTIO_NET_HDR_GSO_TCPV6, iphLen: csumStart,
			hdrLen: hdrLen, mss: gsoSize, next: hdrLen, firstSeq: binary.BigEndian.Uint32(pkt[csumStart+4:])}
		return t.nextSegment(p)
	}
	return 0
}

// nextSegment writes the next segment of the super-packet being cut into p
// and returns its length, or 0 when there is none. Each segment gets the
// headers of the whole with its own IP length (and, IPv4, identification
// and header checksum), sequence number and TCP checksum; FIN and PSH stay
// on the last segment only, CWR on the first only.
func (t *TUN) nextSegment(p []byte) int {
	g := &t.gso
	if g.pkt == nil {
		return 0
	}
	in := g.pkt
	end := min(g.next+g.mss, len(in))
	total := g.hdrLen + end - g.next
	out := p[:total]
	copy(out, in[:g.hdrLen])
	copy(out[g.hdrLen:], in[g.next:end])
	var src, dst []byte
	if g.v6 {
		binary.BigEndian.PutUint16(out[4:], uint16(total-40)) // payload length
		src, dst = out[8:24], out[24:40]
	} else {
		binary.BigEndian.PutUint16(out[2:], uint16(total))
		binary.BigEndian.PutUint16(out[4:], binary.BigEndian.Uint16(in[4:])+uint16(g.i))
		out[10], out[11] = 0, 0
		binary.BigEndian.PutUint16(out[10:], ^fold(sum16(out[:g.iphLen], 0)))
		src, dst = out[12:16], out[16:20]
	}
	th := out[g.iphLen:]
	binary.BigEndian.PutUint32(th[4:], g.firstSeq+uint32(g.i*g.mss))
	if end < len(in) {
		th[13] &^= tcpFIN | tcpPSH
	}
	if g.i > 0 {
		th[13] &^= tcpCWR
	}
	th[16], th[17] = 0, 0
	s := sum16(src, 0)
	s = sum16(dst, s)
	s += unix.IPPROTO_TCP + uint64(len(th))
	binary.BigEndian.PutUint16(th[16:], ^fold(sum16(th, s)))
	g.i++
	g.next = end
	if end == len(in) {
		g.pkt = nil
	}
	return total
}

// sum16 adds b to acc as big-endian 16-bit words, the Internet checksum's
// one's-complement sum before folding (RFC 1071). acc must stay well below
// 2^63: it does for anything up to gigabytes.
func sum16(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		acc += v>>32 + v&0xffffffff
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold folds a sum16 accumulator to 16 bits.
func fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// writeVnet is the raw write of one packet behind an all-zero virtio header
// (no offload asked for: the kernel checks the packet's checksums as for
// any received packet), as one writev so that the packet is not copied.
// Called by RawConn.Write with t.wmu held.
func (t *TUN) writeVnet(fd uintptr) bool {
	n, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.wiov[0])), 2)
	if e == unix.EAGAIN {
		return false // wait until writable
	}
	t.wn, t.werr = int(n), nil
	if e != 0 {
		t.werr = e
	}
	return true
}
