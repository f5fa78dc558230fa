package tun

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// superPacket builds what a TSO-capable TUN hands over: a virtio header
// asking for TCP segmentation at mss, then one IPv4 or IPv6 TCP packet
// carrying payload, flags PSH|ACK (|CWR).
func superPacket(v6 bool, payload []byte, mss int) []byte {
	iph := 20
	if v6 {
		iph = 40
	}
	pkt := make([]byte, iph+20+len(payload))
	if v6 {
		pkt[0] = 0x60
		pkt[6], pkt[7] = unix.IPPROTO_TCP, 64
		copy(pkt[8:], bytes.Repeat([]byte{0xfd, 1}, 8))
		copy(pkt[24:], bytes.Repeat([]byte{0xfd, 2}, 8))
	} else {
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[4:], 7000) // identification
		pkt[8], pkt[9] = 64, unix.IPPROTO_TCP
		copy(pkt[12:], []byte{10, 9, 0, 2, 10, 9, 0, 1})
	}
	th := pkt[iph:]
	binary.BigEndian.PutUint16(th[0:], 40000)
	binary.BigEndian.PutUint16(th[2:], 5001)
	binary.BigEndian.PutUint32(th[4:], 0xfffff000) // wraps around mid-packet
	th[12] = 5 << 4
	th[13] = tcpPSH | 0x10 | tcpCWR
	copy(th[20:], payload)
	hdr := make([]byte, vnetHdrLen)
	hdr[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	hdr[1] = unix.VIRTIO_NET_HDR_GSO_TCPV4
	if v6 {
		hdr[1] = unix.VIRTIO_NET_HDR_GSO_TCPV6
	}
	binary.NativeEndian.PutUint16(hdr[2:], uint16(iph+20))
	binary.NativeEndian.PutUint16(hdr[4:], uint16(mss))
	binary.NativeEndian.PutUint16(hdr[6:], uint16(iph))
	binary.NativeEndian.PutUint16(hdr[8:], 16)
	return append(hdr, pkt...)
}

// tcpChecksumOK checks a segment's IPv4 header and TCP checksums the slow
// way, byte pair by byte pair.
func tcpChecksumOK(t *testing.T, seg []byte, v6 bool) {
	t.Helper()
	sum := func(b []byte, acc uint32) uint32 {
		for i := 0; i+1 < len(b); i += 2 {
			acc += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			acc += uint32(b[len(b)-1]) << 8
		}
		for acc>>16 != 0 {
			acc = acc>>16 + acc&0xffff
		}
		return acc
	}
	var pseudo uint32
	iph := 40
	if v6 {
		pseudo = sum(seg[8:40], 0)
	} else {
		iph = 20
		if s := sum(seg[:20], 0); s != 0xffff {
			t.Errorf("IPv4 header checksum wrong (sum %#x)", s)
		}
		pseudo = sum(seg[12:20], 0)
	}
	tcpLen := len(seg) - iph
	pseudo += unix.IPPROTO_TCP + uint32(tcpLen)
	if s := sum(seg[iph:], pseudo); s != 0xffff {
		t.Errorf("TCP checksum wrong (sum %#x)", s)
	}
}

func TestTSOSegments(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		payload := make([]byte, 5001)
		for i := range payload {
			payload[i] = byte(i*31 + 7)
		}
		const mss = 1160
		tun := &Device{}
		p := make([]byte, 1500)
		var got []byte
		var segs [][]byte
		n := tun.takeVnet(p, superPacket(v6, payload, mss))
		for n > 0 {
			segs = append(segs, append([]byte(nil), p[:n]...))
			n = tun.nextSegment(p)
		}
		if len(segs) != 5 {
			t.Fatalf("v6=%v: %d segments, want 5", v6, len(segs))
		}
		iph := 20
		if v6 {
			iph = 40
		}
		for i, seg := range segs {
			tcpChecksumOK(t, seg, v6)
			th := seg[iph:]
			if seq := binary.BigEndian.Uint32(th[4:]); seq != 0xfffff000+uint32(i*mss) {
				t.Errorf("v6=%v segment %d: seq %#x", v6, i, seq)
			}
			last := i == len(segs)-1
			if (th[13]&tcpPSH != 0) != last || th[13]&tcpFIN != 0 || (th[13]&tcpCWR != 0) != (i == 0) {
				t.Errorf("v6=%v segment %d: flags %#x", v6, i, th[13])
			}
			if v6 {
				if pl := int(binary.BigEndian.Uint16(seg[4:])); pl != len(seg)-40 {
					t.Errorf("segment %d: payload length %d of %d", i, pl, len(seg)-40)
				}
			} else {
				if tl := int(binary.BigEndian.Uint16(seg[2:])); tl != len(seg) {
					t.Errorf("segment %d: total length %d of %d", i, tl, len(seg))
				}
				if id := binary.BigEndian.Uint16(seg[4:]); id != 7000+uint16(i) {
					t.Errorf("segment %d: identification %d", i, id)
				}
			}
			if !last && len(seg) != iph+20+mss {
				t.Errorf("segment %d: %d bytes", i, len(seg))
			}
			got = append(got, th[20:]...)
		}
		if !bytes.Equal(got, payload) {
			t.Errorf("v6=%v: the segments' payloads do not add up to the packet's", v6)
		}
	}
}

// A packet whose checksum the kernel left to us (NEEDS_CSUM, no GSO) comes
// out with it filled in.
func TestVnetCompletesChecksum(t *testing.T) {
	frame := superPacket(false, []byte("hello, checksum"), 1160)
	frame[1] = unix.VIRTIO_NET_HDR_GSO_NONE
	pkt := frame[vnetHdrLen:]
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[10:], ^fold(sum16(pkt[:20], 0)))
	// What the kernel leaves in the field: the pseudo-header sum.
	binary.BigEndian.PutUint16(pkt[36:], fold(sum16(pkt[12:20], unix.IPPROTO_TCP+uint64(len(pkt)-20))))
	p := make([]byte, 1500)
	n := (&Device{}).takeVnet(p, frame)
	if n != len(pkt) {
		t.Fatalf("got %d bytes, want %d", n, len(pkt))
	}
	tcpChecksumOK(t, p[:n], false)
}

// segments cuts a super-packet as the pump does, without the CWR flag
// superPacket sets (a segment with it goes alone).
func segments(t testing.TB, frame []byte) [][]byte {
	t.Helper()
	th := vnetHdrLen + int(binary.NativeEndian.Uint16(frame[6:]))
	frame[th+13] &^= tcpCWR
	tun := &Device{}
	p := make([]byte, 1500)
	var segs [][]byte
	for n := tun.takeVnet(p, frame); n > 0; n = tun.nextSegment(p) {
		segs = append(segs, append([]byte(nil), p[:n]...))
	}
	return segs
}

// GRO joins what TSO cut: the segments of a super-packet, written in order,
// are held back as one packet that cuts into the same segments again.
func TestGROJoinsWhatTSOCut(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		payload := make([]byte, 30000)
		for i := range payload {
			payload[i] = byte(i*13 + 1)
		}
		segs := segments(t, superPacket(v6, payload, 1160))
		tun := &Device{vnet: true}
		tun.gro.buf = make([]byte, vnetHdrLen, vnetHdrLen+groMax)
		for _, s := range segs {
			if err := tun.WriteCoalesce(s); err != nil {
				t.Fatal(err)
			}
		}
		// The last segment is short (and has PSH): it closes the packet.
		if tun.gro.n != len(segs) || !tun.gro.closed {
			t.Fatalf("v6=%v: %d of %d segments joined (closed %v)", v6, tun.gro.n, len(segs), tun.gro.closed)
		}
		again := segments(t, tun.gro.packet())
		if len(again) != len(segs) {
			t.Fatalf("v6=%v: the joined packet cuts into %d segments, want %d", v6, len(again), len(segs))
		}
		for i := range segs {
			if !bytes.Equal(again[i], segs[i]) {
				t.Errorf("v6=%v: segment %d differs after joining and cutting again", v6, i)
			}
		}
	}
}

// What must not be joined is not: a corrupt checksum, a gap in the
// sequence, another flow, a segment after a short one.
func TestGROKeepsApart(t *testing.T) {
	segs := segments(t, superPacket(false, make([]byte, 5000), 1160))
	for _, c := range []struct {
		name   string
		mangle func(s []byte)
	}{
		{"bad checksum", func(s []byte) { s[len(s)-1] ^= 1 }},
		{"sequence gap", func(s []byte) {
			binary.BigEndian.PutUint32(s[24:], binary.BigEndian.Uint32(s[24:])+1)
			fixTCPChecksum(s)
		}},
		{"other port", func(s []byte) { s[21]++; fixTCPChecksum(s) }},
		{"SYN", func(s []byte) { s[33] |= 0x02; fixTCPChecksum(s) }},
	} {
		second := append([]byte(nil), segs[1]...)
		c.mangle(second)
		tun := &Device{vnet: true}
		tun.gro.buf = make([]byte, vnetHdrLen, vnetHdrLen+groMax)
		tun.WriteCoalesce(segs[0])
		if iph, hl, v6, ok := groCandidate(second); ok && tun.gro.joins(second, iph, hl, v6) {
			t.Errorf("%s: joined", c.name)
		}
	}
}

func fixTCPChecksum(s []byte) {
	s[36], s[37] = 0, 0
	binary.BigEndian.PutUint16(s[36:], ^fold(sum16(s[20:], sum16(s[12:20], 0)+unix.IPPROTO_TCP+uint64(len(s)-20))))
}

// nullTUN is a TUN with offloads whose writes go to /dev/null.
func nullTUN(tb testing.TB) *Device {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	raw, err := f.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	t := &Device{file: f, raw: raw, vnet: true}
	t.gro.buf = make([]byte, vnetHdrLen, vnetHdrLen+groMax)
	t.writeRaw = t.writeVnet
	t.wiov[0].Base = &t.whdr[0]
	t.wiov[0].SetLen(vnetHdrLen)
	return t
}

// BenchmarkTSOSegments: cutting 64 KiB super-packets into 1200-byte
// packets (copy and checksums), per packet; nothing allocated.
func BenchmarkTSOSegments(b *testing.B) {
	frame := superPacket(false, make([]byte, 1160*56), 1160)
	tun := &Device{}
	p := make([]byte, 1500)
	work := make([]byte, len(frame))
	b.ReportAllocs()
	b.SetBytes(1200)
	n := 0
	for b.Loop() {
		if n == 0 {
			copy(work, frame) // the cut changes the header in place
			n = tun.takeVnet(p, work)
		} else {
			n = tun.nextSegment(p)
		}
	}
}

// BenchmarkGROWrite: 1200-byte segments of one stream joined 48 at a time
// (one read of the stream) and written; nothing allocated per packet.
func BenchmarkGROWrite(b *testing.B) {
	segs := segments(b, superPacket(false, make([]byte, 1160*48), 1160))
	for _, s := range segs {
		s[33] &^= tcpPSH
		fixTCPChecksum(s)
	}
	tun := nullTUN(b)
	b.ReportAllocs()
	b.SetBytes(1200)
	i := 0
	for b.Loop() {
		if err := tun.WriteCoalesce(segs[i]); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(segs) {
			tun.Flush()
			i = 0
		}
	}
}

// Written through writev behind a zero header, a packet arrives whole.
func TestVnetWrite(t *testing.T) {
	tun := nullTUN(t)
	n, err := tun.Write(make([]byte, 1200))
	if err != nil || n != 1200 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	pkt := make([]byte, 1200)
	if n := testing.AllocsPerRun(100, func() { tun.Write(pkt) }); n != 0 {
		t.Errorf("Write allocates %v times", n)
	}
}
