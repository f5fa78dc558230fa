package tun

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
	"bytes"
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
func (t *Device) takeVnet(p, frame []byte) int {
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
func (t *Device) nextSegment(p []byte) int {
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
func (t *Device) writeVnet(fd uintptr) bool {
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

// Receive offload (GRO) on the TUN. Every packet written to a TUN goes
// alone through the receiving TCP stack, and every other one makes it send
// an ACK back through the tunnel. Consecutive in-order segments of one TCP
// stream that arrive in the same read of the transport are joined into one
// super-packet instead and written with a virtio header asking the kernel
// to treat it as segmented (as it treats what a NIC's GRO built): one trip
// up the stack, one ACK. The rules are the kernel's tcp_gro_receive ones,
// kept simple: same addresses, ports, ack, window and options; contiguous
// sequence numbers; every segment as long as the first, but the last; no
// flags but ACK (and PSH, which ends the packet); IPv4 without options or
// fragments, IPv6 without extension headers. Each segment's checksums are
// verified before it joins, since the kernel trusts the joined packet's.

// groState is the super-packet being built by WriteCoalesce.
type groState struct {
	buf     []byte // virtio header, then the packet
	n       int    // segments in it; 0: none
	v6      bool
	iphLen  int
	hdrLen  int
	mss     int    // payload length of the first segment
	nextSeq uint32 // the sequence number the next segment must have
	closed  bool   // a short or PSH segment was added: nothing may follow
}

// groMax bounds a super-packet: the IPv4 total length field.
const groMax = 65535

// groCandidate returns the IP and TCP header lengths of pkt if it may take
// part in GRO, and ok=false if it must go alone.
func groCandidate(pkt []byte) (iphLen, hdrLen int, v6, ok bool) {
	switch {
	case len(pkt) >= 20 && pkt[0] == 0x45: // IPv4 without options
		if pkt[9] != unix.IPPROTO_TCP || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 || // MF or an offset
			int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) || fold(sum16(pkt[:20], 0)) != 0xffff {
			return 0, 0, false, false
		}
		iphLen = 20
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		if pkt[6] != unix.IPPROTO_TCP || int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) {
			return 0, 0, false, false
		}
		iphLen, v6 = 40, true
	default:
		return 0, 0, false, false
	}
	if len(pkt) < iphLen+20 {
		return 0, 0, false, false
	}
	th := pkt[iphLen:]
	hdrLen = iphLen + int(th[12]>>4)*4
	if hdrLen < iphLen+20 || hdrLen >= len(pkt) || th[13]&^tcpPSH != 0x10 { // ACK (+PSH) only, and data
		return 0, 0, false, false
	}
	// The TCP checksum: the pseudo-header, then the segment, sum to 0xffff.
	var s uint64
	if v6 {
		s = sum16(pkt[8:40], 0)
	} else {
		s = sum16(pkt[12:20], 0)
	}
	s += unix.IPPROTO_TCP + uint64(len(th))
	if fold(sum16(th, s)) != 0xffff {
		return 0, 0, false, false
	}
	return iphLen, hdrLen, v6, true
}

// groJoins reports whether pkt (a candidate) continues the super-packet.
func (g *groState) joins(pkt []byte, iphLen, hdrLen int, v6 bool) bool {
	if g.n == 0 || g.closed || v6 != g.v6 || hdrLen != g.hdrLen ||
		vnetHdrLen+len(g.buf[vnetHdrLen:])+len(pkt)-hdrLen > vnetHdrLen+groMax || len(pkt)-hdrLen > g.mss {
		return false
	}
	first := g.buf[vnetHdrLen:]
	if v6 {
		// Version, traffic class, flow label; next header, hop limit; addresses.
		if !bytes.Equal(pkt[:4], first[:4]) || !bytes.Equal(pkt[6:40], first[6:40]) {
			return false
		}
	} else if pkt[1] != first[1] || pkt[6]&0x40 != first[6]&0x40 || // TOS, DF
		!bytes.Equal(pkt[8:10], first[8:10]) || !bytes.Equal(pkt[12:20], first[12:20]) { // TTL, protocol, addresses
		return false
	}
	th, fth := pkt[iphLen:hdrLen], first[iphLen:hdrLen]
	return bytes.Equal(th[0:4], fth[0:4]) && // ports
		binary.BigEndian.Uint32(th[4:]) == g.nextSeq &&
		bytes.Equal(th[8:13], fth[8:13]) && // ack, data offset
		th[13]&^tcpPSH == fth[13]&^tcpPSH &&
		bytes.Equal(th[14:16], fth[14:16]) && // window
		bytes.Equal(th[20:], fth[20:]) // options
}

// WriteCoalesce writes pkt to the device, or holds it back (copied) to join
// it with the TCP segments that follow it; Flush writes what is held back.
// Only one goroutine (the link's reader) may call it and Flush.
func (t *Device) WriteCoalesce(pkt []byte) error {
	if !t.vnet {
		_, err := t.Write(pkt)
		return err
	}
	iphLen, hdrLen, v6, ok := groCandidate(pkt)
	g := &t.gro
	if ok && g.joins(pkt, iphLen, hdrLen, v6) {
		payload := pkt[hdrLen:]
		g.buf = append(g.buf, payload...)
		g.n++
		g.nextSeq += uint32(len(payload))
		if len(payload) < g.mss || pkt[iphLen+13]&tcpPSH != 0 {
			g.buf[vnetHdrLen+iphLen+13] |= pkt[iphLen+13] & tcpPSH
			g.closed = true
		}
		return nil
	}
	err := t.Flush()
	if !ok {
		if _, werr := t.Write(pkt); werr != nil {
			err = werr
		}
		return err
	}
	payload := len(pkt) - hdrLen
	*g = groState{buf: append(g.buf[:vnetHdrLen], pkt...), n: 1, v6: v6, iphLen: iphLen, hdrLen: hdrLen,
		mss: payload, nextSeq: binary.BigEndian.Uint32(pkt[iphLen+4:]) + uint32(payload),
		closed: pkt[iphLen+13]&tcpPSH != 0}
	return err
}

// Flush writes the packet WriteCoalesce holds back, if any: a lone segment
// as it came, several as one super-packet (see groPacket).
func (t *Device) Flush() error {
	g := &t.gro
	switch g.n {
	case 0:
		return nil
	case 1:
		g.n = 0
		_, err := t.Write(g.buf[vnetHdrLen:])
		return err
	}
	_, err := t.file.Write(g.packet())
	clear(g.buf[:vnetHdrLen])
	g.n = 0
	return err
}

// packet finishes the super-packet of two segments or more and returns it
// with its virtio header: IP lengths (and the IPv4 header checksum) for the
// whole; the TCP checksum left to the kernel, which is told to take the
// packet as good (every part was verified) and the size of its segments.
func (g *groState) packet() []byte {
	hdr, pkt := g.buf[:vnetHdrLen], g.buf[vnetHdrLen:]
	if g.v6 {
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
	} else {
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^fold(sum16(pkt[:20], 0)))
	}
	// CHECKSUM_PARTIAL: the field holds the pseudo-header sum, the kernel
	// adds the rest if the packet ever leaves the machine.
	var s uint64
	if g.v6 {
		s = sum16(pkt[8:40], 0)
	} else {
		s = sum16(pkt[12:20], 0)
	}
	binary.BigEndian.PutUint16(pkt[g.iphLen+16:], fold(s+unix.IPPROTO_TCP+uint64(len(pkt)-g.iphLen)))
	hdr[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	hdr[1] = unix.VIRTIO_NET_HDR_GSO_TCPV4
	if g.v6 {
		hdr[1] = unix.VIRTIO_NET_HDR_GSO_TCPV6
	}
	binary.NativeEndian.PutUint16(hdr[2:], uint16(g.hdrLen))
	binary.NativeEndian.PutUint16(hdr[4:], uint16(g.mss))
	binary.NativeEndian.PutUint16(hdr[6:], uint16(g.iphLen))
	binary.NativeEndian.PutUint16(hdr[8:], 16)
	return g.buf
}
