// Package nl80211 is the watcher's Wi-Fi source: which access point each
// station interface is associated with (SSID, BSSID, frequency) and how it
// is protected, read over nl80211 with mdlayher/genetlink, and the mlme
// multicast group's CONNECT / ROAM / DISCONNECT events, which
// mdlayher/wifi has no API for.
//
// SSIDs are kept as the raw bytes broadcast: a hidden network's (learnt
// from the association request) and a non-UTF-8 one stay exact.
package nl80211

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/wifi"
	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/watcher"
)

// Source is the "nl80211" watcher source.
type Source struct {
	// Dial opens a generic netlink connection (default genetlink.Dial).
	Dial func() (*genetlink.Conn, error)
	// SkipJoin does not subscribe to the mlme group, for connections that
	// deliver events without one (genltest).
	SkipJoin bool
	Log      *slog.Logger
	// OnEvent, if set, is called from Run with every association event
	// (CONNECT, ROAM, DISCONNECT) after the source has noted it.
	OnEvent func(Event)
	// RoamGrace is how long an interface keeps reporting the network it
	// was associated with after a DISCONNECT, unless a CONNECT (or ROAM)
	// ends the wait sooner: 0 means DefaultRoamGrace, a negative value no
	// wait. See DefaultRoamGrace.
	RoamGrace time.Duration

	mu    sync.Mutex
	assoc map[uint32]Event           // per ifindex: the last CONNECT/ROAM
	last  map[uint32]watcher.Network // per ifindex: what Observe last reported associated
	held  map[uint32]*hold           // per ifindex: a DISCONNECT waiting for its CONNECT

	// afterFunc is time.AfterFunc (tests replace it).
	afterFunc func(time.Duration, func()) (stop func() bool)
}

// DefaultRoamGrace: with mac80211 and wpa_supplicant (every soft-MAC
// driver) a roam between access points of one network is not a ROAM
// event but a DISCONNECT and then a CONNECT to the new access point, tens
// of milliseconds later (21-99 ms in the user-mode-linux lab; more with
// SAE or on a loaded machine). Reported as it happens, the moment between
// the two is "no Wi-Fi": past the watcher's debounce, a trusted network
// would blink to untrusted (a tunnel dialled and dropped again) and an
// untrusted one lose its SSID. So the source holds the association a
// DISCONNECT ended for this long, reporting it still, and hints again when
// the hold ends without a new association. Any CONNECT ends the hold at
// once, to whatever network it joined, so a different network is never
// hidden; a real disconnect is reported this much later, while no frame
// can leave over the radio anyway.
const DefaultRoamGrace = time.Second

// hold is the wait after a DISCONNECT.
type hold struct{ stop func() bool }

func (s *Source) grace() time.Duration {
	if s.RoamGrace == 0 {
		return DefaultRoamGrace
	}
	return s.RoamGrace
}

// Name implements watcher.Source.
func (s *Source) Name() string { return "nl80211" }

func (s *Source) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Source) dial() (*genetlink.Conn, genetlink.Family, error) {
	d := s.Dial
	if d == nil {
		d = func() (*genetlink.Conn, error) { return genetlink.Dial(nil) }
	}
	c, err := d()
	if err != nil {
		return nil, genetlink.Family{}, fmt.Errorf("generic netlink: %w", err)
	}
	fam, err := c.GetFamily(unix.NL80211_GENL_NAME)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fam, fmt.Errorf("no nl80211 in this kernel (no Wi-Fi): %w", watcher.ErrUnavailable)
		}
		return nil, fam, fmt.Errorf("nl80211 family: %w", err)
	}
	return c, fam, nil
}

// Event is one mlme event.
type Event struct {
	Cmd       uint8 // unix.NL80211_CMD_CONNECT, _ROAM or _DISCONNECT
	IfIndex   uint32
	BSSID     net.HardwareAddr
	SSID      string // from the association request's SSID element; may be absent
	HasSSID   bool
	Status    uint16 // CONNECT: 0 is success
	Reason    uint16 // DISCONNECT
	ByAP      bool   // DISCONNECT: the access point ended it
	Frequency uint32
}

// Run implements watcher.Source: it follows the mlme group and hints on
// every association change.
func (s *Source) Run(ctx context.Context, hint func()) error {
	c, fam, err := s.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	if !s.SkipJoin {
		joined := false
		for _, g := range fam.Groups {
			if g.Name == unix.NL80211_MULTICAST_GROUP_MLME {
				if err := c.JoinGroup(g.ID); err != nil {
					return fmt.Errorf("joining nl80211 mlme: %w", err)
				}
				joined = true
			}
		}
		if !joined {
			return fmt.Errorf("nl80211 has no mlme group: %w", watcher.ErrUnavailable)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer s.endHolds()
	for ctx.Err() == nil {
		msgs, _, err := c.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("nl80211 events: %w", err)
		}
		for _, m := range msgs {
			ev, err := DecodeEvent(m)
			if err != nil {
				s.log().Warn("nl80211: bad event", "err", err)
				continue
			}
			if ev.Cmd == 0 {
				continue // not an association event
			}
			s.note(ev, hint)
			if s.OnEvent != nil {
				s.OnEvent(ev)
			}
			hint()
		}
	}
	return nil
}

func (s *Source) note(ev Event, hint func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.assoc == nil {
		s.assoc, s.held = map[uint32]Event{}, map[uint32]*hold{}
	}
	switch ev.Cmd {
	case unix.NL80211_CMD_CONNECT:
		s.endHoldLocked(ev.IfIndex)
		if ev.Status != 0 {
			delete(s.assoc, ev.IfIndex)
			return
		}
		s.assoc[ev.IfIndex] = ev
	case unix.NL80211_CMD_ROAM:
		s.endHoldLocked(ev.IfIndex)
		prev := s.assoc[ev.IfIndex]
		if !ev.HasSSID { // a roam stays within the network
			ev.SSID, ev.HasSSID = prev.SSID, prev.HasSSID
		}
		s.assoc[ev.IfIndex] = ev
	case unix.NL80211_CMD_DISCONNECT:
		delete(s.assoc, ev.IfIndex)
		s.endHoldLocked(ev.IfIndex)
		if _, was := s.last[ev.IfIndex]; was && s.grace() > 0 {
			af := s.afterFunc
			if af == nil {
				af = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
			}
			h := &hold{}
			s.held[ev.IfIndex] = h
			idx := ev.IfIndex
			h.stop = af(s.grace(), func() {
				s.mu.Lock()
				mine := s.held[idx] == h
				if mine {
					delete(s.held, idx)
				}
				s.mu.Unlock()
				if mine {
					s.log().Debug("nl80211: no new association after a disconnect; the network is gone", "ifindex", idx)
					hint()
				}
			})
		}
	}
	s.log().Debug("nl80211 event", "cmd", ev.Cmd, "ifindex", ev.IfIndex, "bssid", ev.BSSID, "ssid", watcher.EscapeSSID(ev.SSID))
}

// endHoldLocked ends the wait after a DISCONNECT on ifindex, if any.
func (s *Source) endHoldLocked(ifindex uint32) {
	if h := s.held[ifindex]; h != nil {
		h.stop()
		delete(s.held, ifindex)
	}
}

// endHolds ends every wait (Run returning: its hint goes nowhere).
func (s *Source) endHolds() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for idx := range s.held {
		s.endHoldLocked(idx)
	}
}

// DecodeEvent decodes an mlme event; other commands give Cmd 0.
func DecodeEvent(m genetlink.Message) (Event, error) {
	var ev Event
	switch m.Header.Command {
	case unix.NL80211_CMD_CONNECT, unix.NL80211_CMD_ROAM, unix.NL80211_CMD_DISCONNECT:
	default:
		return ev, nil
	}
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return ev, fmt.Errorf("event %d: %w", m.Header.Command, err)
	}
	ev.Cmd = m.Header.Command
	for ad.Next() {
		switch ad.Type() {
		case unix.NL80211_ATTR_IFINDEX:
			ev.IfIndex = ad.Uint32()
		case unix.NL80211_ATTR_MAC:
			if b := ad.Bytes(); len(b) == 6 {
				ev.BSSID = net.HardwareAddr(b)
			} else {
				return ev, fmt.Errorf("event %d: MAC of %d bytes", ev.Cmd, len(b))
			}
		case unix.NL80211_ATTR_REQ_IE:
			ies, err := ParseIEs(ad.Bytes())
			if err != nil {
				return ev, fmt.Errorf("event %d: request IEs: %w", ev.Cmd, err)
			}
			ev.SSID, ev.HasSSID = ies.SSID, ies.HasSSID
		case unix.NL80211_ATTR_STATUS_CODE:
			ev.Status = ad.Uint16()
		case unix.NL80211_ATTR_REASON_CODE:
			ev.Reason = ad.Uint16()
		case unix.NL80211_ATTR_DISCONNECTED_BY_AP:
			ev.ByAP = true
		case unix.NL80211_ATTR_WIPHY_FREQ:
			ev.Frequency = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return ev, fmt.Errorf("event %d: %w", ev.Cmd, err)
	}
	if ev.IfIndex == 0 {
		return ev, fmt.Errorf("event %d: no interface index", ev.Cmd)
	}
	return ev, nil
}

// IEs is what roamtun reads from 802.11 information elements.
type IEs struct {
	SSID    string
	HasSSID bool
	RSN     []byte // element 48's body
	WPA     bool   // the WPA1 vendor element (00:50:f2 type 1)
}

// ParseIEs walks a buffer of information elements.
func ParseIEs(b []byte) (IEs, error) {
	var ie IEs
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			return ie, fmt.Errorf("information element truncated (%d bytes left)", len(b))
		}
		id, body := b[0], b[2:2+int(b[1])]
		switch id {
		case 0:
			if !ie.HasSSID {
				ie.SSID, ie.HasSSID = string(body), true
			}
		case 48:
			ie.RSN = body
		case 221:
			if len(body) >= 4 && body[0] == 0x00 && body[1] == 0x50 && body[2] == 0xf2 && body[3] == 1 {
				ie.WPA = true
			}
		}
		b = b[2+int(b[1]):]
	}
	return ie, nil
}

// Security judges protection from the elements and the capability field,
// reporting the weakest mode a client may use: a WPA2/WPA3 transition
// network is "wpa2", WPA1 is "wpa", privacy without either is "wep".
func Security(ie IEs, capability uint16) (watcher.Security, error) {
	if ie.RSN != nil {
		akms, err := rsnAKMs(ie.RSN)
		if err != nil {
			return watcher.SecurityOpen, err
		}
		var psk, sae, eap, owe bool
		for _, a := range akms {
			switch a {
			case 1, 3, 5, 11, 12, 13: // 802.1X variants (incl. FT, SHA-256, Suite B)
				eap = true
			case 2, 4, 6: // PSK, FT-PSK, PSK-SHA256
				psk = true
			case 8, 9, 24, 25: // SAE, FT-SAE, SAE-EXT
				sae = true
			case 18: // OWE: encrypted but unauthenticated
				owe = true
			}
		}
		switch {
		case psk:
			return watcher.SecurityWPA2, nil
		case sae:
			return watcher.SecurityWPA3, nil
		case eap:
			return watcher.Security8021X, nil
		case owe:
			return watcher.SecurityOpen, nil
		}
		return watcher.SecurityOpen, fmt.Errorf("RSN element with no known key management (%v)", akms)
	}
	if ie.WPA {
		return watcher.SecurityWPA, nil
	}
	if capability&0x0010 != 0 { // Privacy
		return watcher.SecurityWEP, nil
	}
	return watcher.SecurityOpen, nil
}

// rsnAKMs reads the AKM suite types (00-0F-AC:n) of an RSN element body.
func rsnAKMs(b []byte) ([]uint8, error) {
	// version(2) group cipher(4) pairwise count(2) pairwise(4n) akm count(2) akm(4n)
	if len(b) < 8 {
		return nil, errors.New("RSN element too short")
	}
	n := int(binary.LittleEndian.Uint16(b[6:8]))
	off := 8 + 4*n
	if len(b) < off+2 {
		return nil, errors.New("RSN element truncated in the pairwise ciphers")
	}
	m := int(binary.LittleEndian.Uint16(b[off : off+2]))
	off += 2
	if len(b) < off+4*m {
		return nil, errors.New("RSN element truncated in the AKM suites")
	}
	var out []uint8
	for i := 0; i < m; i++ {
		s := b[off+4*i : off+4*i+4]
		if s[0] == 0x00 && s[1] == 0x0f && s[2] == 0xac {
			out = append(out, s[3])
		}
	}
	return out, nil
}

// Iface is a wireless interface from NL80211_CMD_GET_INTERFACE.
type Iface struct {
	Index     uint32
	Name      string
	Type      wifi.InterfaceType
	SSID      string
	HasSSID   bool
	Frequency uint32
}

// DecodeInterface decodes one GET_INTERFACE reply.
func DecodeInterface(m genetlink.Message) (Iface, error) {
	var it Iface
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return it, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NL80211_ATTR_IFINDEX:
			it.Index = ad.Uint32()
		case unix.NL80211_ATTR_IFNAME:
			it.Name = ad.String()
		case unix.NL80211_ATTR_IFTYPE:
			it.Type = wifi.InterfaceType(ad.Uint32())
		case unix.NL80211_ATTR_SSID:
			it.SSID, it.HasSSID = string(ad.Bytes()), true
		case unix.NL80211_ATTR_WIPHY_FREQ:
			it.Frequency = ad.Uint32()
		}
	}
	return it, ad.Err()
}

// station reports whether an interface type is a client of an access point.
// P2P clients and devices (Wi-Fi Direct), access points, monitors and mesh
// points are not networks the laptop joins.
func station(t wifi.InterfaceType) bool { return t == wifi.InterfaceTypeStation }

// BSS is one scan result.
type BSS struct {
	BSSID      net.HardwareAddr
	Frequency  uint32
	Capability uint16
	IEs        IEs
	Associated bool
}

// DecodeBSS decodes one GET_SCAN reply.
func DecodeBSS(m genetlink.Message) (BSS, error) {
	var b BSS
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return b, err
	}
	for ad.Next() {
		if ad.Type() != unix.NL80211_ATTR_BSS {
			continue
		}
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			for nad.Next() {
				switch nad.Type() {
				case unix.NL80211_BSS_BSSID:
					if v := nad.Bytes(); len(v) == 6 {
						b.BSSID = net.HardwareAddr(v)
					}
				case unix.NL80211_BSS_FREQUENCY:
					b.Frequency = nad.Uint32()
				case unix.NL80211_BSS_CAPABILITY:
					b.Capability = nad.Uint16()
				case unix.NL80211_BSS_INFORMATION_ELEMENTS:
					ies, err := ParseIEs(nad.Bytes())
					if err != nil {
						return fmt.Errorf("BSS elements: %w", err)
					}
					b.IEs = ies
				case unix.NL80211_BSS_STATUS:
					st := nad.Uint32()
					b.Associated = st == unix.NL80211_BSS_STATUS_ASSOCIATED || st == unix.NL80211_BSS_STATUS_IBSS_JOINED
				}
			}
			return nil
		})
	}
	return b, ad.Err()
}

// Observe implements watcher.Source: one Network per associated station.
func (s *Source) Observe(ctx context.Context) ([]watcher.Network, error) {
	c, fam, err := s.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msgs, err := c.Execute(genetlink.Message{Header: genetlink.Header{Command: unix.NL80211_CMD_GET_INTERFACE, Version: fam.Version}},
		fam.ID, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("nl80211 interfaces: %w", err)
	}
	var out []watcher.Network
	for _, m := range msgs {
		it, err := DecodeInterface(m)
		if err != nil {
			return nil, fmt.Errorf("nl80211 interface: %w", err)
		}
		if !station(it.Type) || it.Name == "" {
			continue
		}
		n, ok, err := s.observeIface(c, fam, it)
		if err != nil {
			s.log().Debug("nl80211: scan results", "interface", it.Name, "err", err)
			continue
		}
		s.mu.Lock()
		if s.last == nil {
			s.last = map[uint32]watcher.Network{}
		}
		switch {
		case ok:
			s.last[it.Index] = n
		case s.held[it.Index] != nil:
			// Between the DISCONNECT and the CONNECT of a roam: still
			// the network it was (DefaultRoamGrace).
			n, ok = s.last[it.Index]
		default:
			delete(s.last, it.Index)
		}
		s.mu.Unlock()
		if ok {
			out = append(out, n)
		}
	}
	return out, nil
}

func (s *Source) observeIface(c *genetlink.Conn, fam genetlink.Family, it Iface) (watcher.Network, bool, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.NL80211_ATTR_IFINDEX, it.Index)
	data, err := ae.Encode()
	if err != nil {
		return watcher.Network{}, false, err
	}
	msgs, err := c.Execute(genetlink.Message{Header: genetlink.Header{Command: unix.NL80211_CMD_GET_SCAN, Version: fam.Version}, Data: data},
		fam.ID, netlink.Request|netlink.Dump)
	if err != nil {
		return watcher.Network{}, false, err
	}
	for _, m := range msgs {
		b, err := DecodeBSS(m)
		if err != nil {
			return watcher.Network{}, false, err
		}
		if !b.Associated {
			continue
		}
		n := watcher.Network{Interface: it.Name, Kind: watcher.KindWifi, BSSID: strings.ToLower(b.BSSID.String()),
			Frequency: int(b.Frequency)}
		// The SSID: what the interface says it joined, else what the
		// association request named (a hidden network's beacon has none),
		// else the beacon's.
		s.mu.Lock()
		ev, seen := s.assoc[it.Index]
		s.mu.Unlock()
		switch {
		case it.HasSSID:
			n.SSID = it.SSID
		case seen && ev.HasSSID:
			n.SSID = ev.SSID
		default:
			n.SSID = b.IEs.SSID
		}
		sec, err := Security(b.IEs, b.Capability)
		if err != nil {
			s.log().Warn("nl80211: security not understood; treating the network as open", "bssid", n.BSSID, "err", err)
		}
		n.Security = sec
		return n, true, nil
	}
	return watcher.Network{}, false, nil
}
