package route

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	mdnetlink "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftTimeout bounds one netlink transaction: a stuck one must not hold the
// next roam.
const nftTimeout = 10 * time.Second

// NewFirewall returns the kernel's nftables, through netlink (no nft
// binary). Each operation opens its own socket, in the network namespace
// of the calling thread, and sends one batch: one transaction.
func NewFirewall() Firewall { return nlFirewall{} }

type nlFirewall struct{}

// conn is a fresh batch; its socket is dialed by Flush, on the calling
// thread (so in its network namespace), with a deadline.
func (nlFirewall) conn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithSockOptions(func(c *mdnetlink.Conn) error {
		return c.SetDeadline(time.Now().Add(nftTimeout))
	}))
}

func inet(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
}

func (f nlFirewall) Replace(t *Table) error {
	if err := t.Check(); err != nil {
		return err
	}
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf("nftables: replacing table inet %s: %w", t.Name, err)
	}
	// Add (a no-op if it is there), delete, make anew: one batch, so
	// deleting a table that was not there is no error and the kernel
	// applies all of it or nothing.
	b := &batch{c: c, t: inet(t.Name), sets: map[string]*nftables.Set{}}
	c.AddTable(b.t)
	c.DelTable(b.t)
	c.AddTable(b.t)
	for _, s := range t.Sets {
		if err := b.addSet(s); err != nil {
			return fmt.Errorf("nftables: table inet %s: %w", t.Name, err)
		}
	}
	for _, ch := range t.Chains {
		if err := b.addChain(ch); err != nil {
			return fmt.Errorf("nftables: table inet %s: %w", t.Name, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: replacing table inet %s: %w", t.Name, err)
	}
	return nil
}

func (f nlFirewall) Delete(table string) error {
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf("nftables: deleting table inet %s: %w", table, err)
	}
	c.DelTable(inet(table))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: deleting table inet %s: %w", table, err)
	}
	return nil
}

func (f nlFirewall) AddElements(table, set string, elems ...Elem) error {
	return f.elements(table, set, elems, true)
}

func (f nlFirewall) DeleteElements(table, set string, elems ...Elem) error {
	return f.elements(table, set, elems, false)
}

func (f nlFirewall) elements(table, set string, elems []Elem, add bool) error {
	verb := "deleting"
	if add {
		verb = "adding"
	}
	what := fmt.Sprintf("%s { %s } in set inet %s %s", verb, joinElems(elems), table, set)
	vals, err := setElements(elems)
	if err != nil {
		return fmt.Errorf("nftables: %s: %w", what, err)
	}
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf("nftables: %s: %w", what, err)
	}
	s := &nftables.Set{Table: inet(table), Name: set}
	if add {
		err = c.SetAddElements(s, vals)
	} else {
		err = c.SetDeleteElements(s, vals)
	}
	if err == nil {
		err = c.Flush()
	}
	if err != nil {
		return fmt.Errorf("nftables: %s: %w", what, err)
	}
	return nil
}

func (f nlFirewall) ResetSets(table string, sets ...SetElems) error {
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf("nftables: resetting sets of table inet %s: %w", table, err)
	}
	for _, se := range sets {
		s := &nftables.Set{Table: inet(table), Name: se.Set}
		c.FlushSet(s)
		if len(se.Elems) == 0 {
			continue
		}
		vals, err := setElements(se.Elems)
		if err == nil {
			err = c.SetAddElements(s, vals)
		}
		if err != nil {
			return fmt.Errorf("nftables: set inet %s %s: %w", table, se.Set, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: resetting sets of table inet %s: %w", table, err)
	}
	return nil
}

func setElements(elems []Elem) ([]nftables.SetElement, error) {
	vals := make([]nftables.SetElement, len(elems))
	for i, e := range elems {
		k, err := e.key()
		if err != nil {
			return nil, err
		}
		vals[i] = nftables.SetElement{Key: k}
	}
	return vals, nil
}

// setKeyTypes are the kernel's key types of SetType.
var setKeyTypes = map[SetType]nftables.SetDatatype{
	SetIfname:          nftables.TypeIFName,
	SetIPv4AddrService: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService),
	SetIPv6AddrService: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService),
}

// batch is one table being made in one transaction.
type batch struct {
	c      *nftables.Conn
	t      *nftables.Table
	sets   map[string]*nftables.Set
	lastID uint32
}

// newSet adds s to the batch. Set IDs are ours: the library's own counter
// is a global that concurrent batches would race on.
func (b *batch) newSet(s *nftables.Set, vals []nftables.SetElement) error {
	b.lastID++
	s.Table, s.ID = b.t, b.lastID
	return b.c.AddSet(s, vals)
}

func (b *batch) addSet(s Set) error {
	kt, ok := setKeyTypes[s.Type]
	if !ok {
		return fmt.Errorf("set %s: unknown type %v", s.Name, s.Type)
	}
	vals, err := setElements(s.Elems)
	if err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	ns := &nftables.Set{Name: s.Name, KeyType: kt}
	if s.Type == SetIfname {
		// Names are strings, in host order: nft prints the elements
		// (and "" for every one without this note).
		ns.KeyByteOrder = binaryutil.NativeEndian
	}
	if err := b.newSet(ns, vals); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	b.sets[s.Name] = ns
	return nil
}

var hooks = map[Hook]*nftables.ChainHook{
	HookOutput:  nftables.ChainHookOutput,
	HookForward: nftables.ChainHookForward,
}

func (b *batch) addChain(ch Chain) error {
	hook, ok := hooks[ch.Hook]
	if !ok {
		return fmt.Errorf("chain %s: unknown hook %v", ch.Name, ch.Hook)
	}
	accept := nftables.ChainPolicyAccept
	nc := b.c.AddChain(&nftables.Chain{Name: ch.Name, Table: b.t, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, r := range ch.Rules {
		exprs, err := b.ruleExprs(r)
		if err != nil {
			return fmt.Errorf("chain %s: rule %q: %w", ch.Name, r, err)
		}
		b.c.AddRule(&nftables.Rule{Table: b.t, Chain: nc, Exprs: exprs})
	}
	return nil
}

// ruleExprs compiles r to the expressions nft itself makes of the same
// rule (compare `nft --debug=netlink`), so that `nft list ruleset` prints
// it back as r.String().
func (b *batch) ruleExprs(r Rule) ([]expr.Any, error) {
	var out []expr.Any
	for _, m := range r.Match {
		e, err := b.matchExprs(m)
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	if r.Counter {
		out = append(out, &expr.Counter{})
	}
	switch r.Verdict {
	case Accept:
		out = append(out, &expr.Verdict{Kind: expr.VerdictAccept})
	case Drop:
		out = append(out, &expr.Verdict{Kind: expr.VerdictDrop})
	default:
		return nil, fmt.Errorf("unknown verdict %v", r.Verdict)
	}
	return out, nil
}

// Registers as nft allocates them: reg 1 (128 bits) for a single value;
// concatenations take 32-bit registers from NFT_REG32_00 (the same storage
// as reg 1) on, each field rounded up to whole registers.
const (
	reg1     = unix.NFT_REG_1
	reg2     = unix.NFT_REG_2
	reg32_01 = unix.NFT_REG32_01
)

func (b *batch) matchExprs(m Match) ([]expr.Any, error) {
	switch m := m.(type) {
	case OIFName:
		name, err := ifnameBytes(string(m))
		if err != nil {
			return nil, err
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: name},
		}, nil
	case OIFNameIn:
		s, ok := b.sets[string(m)]
		if !ok {
			return nil, fmt.Errorf("no set %s", string(m))
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID},
		}, nil
	case DAddrTCPDPort:
		ap := netip.AddrPort(m)
		addr, port := ap.Addr().Unmap(), ap.Port()
		out := nfproto(addr.Is6())
		off, n := daddrAt(addr.Is6())
		return append(out,
			&expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n, DestRegister: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: addr.AsSlice()},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2, DestRegister: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, port)},
		), nil
	case UDPPorts:
		// nft reads both ports as one 4-byte load.
		ports := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, m.Src), m.Dst)
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4, DestRegister: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ports},
		}, nil
	case ICMPv6Types:
		// An anonymous constant set, as nft makes of { … }: named
		// "__set%d", the kernel numbers it.
		s := &nftables.Set{Name: "__set%d", Anonymous: true, Constant: true, KeyType: nftables.TypeICMP6Type}
		vals := make([]nftables.SetElement, len(m))
		for i, typ := range m {
			vals[i] = nftables.SetElement{Key: []byte{byte(typ)}}
		}
		if err := b.newSet(s, vals); err != nil {
			return nil, err
		}
		return append(nfproto(true),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1, DestRegister: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID},
		), nil
	case MarkDPort:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, m.Mark)},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{m.Proto}},
			&expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2, DestRegister: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, m.Port)},
		}, nil
	case DAddrTCPDPortIn:
		s, ok := b.sets[m.Set]
		if !ok {
			return nil, fmt.Errorf("no set %s", m.Set)
		}
		off, n := daddrAt(m.IPv6)
		portReg := uint32(reg32_01) // after 4 bytes of IPv4 address
		if m.IPv6 {
			portReg = reg2 // after 16 bytes of IPv6 address
		}
		return append(nfproto(m.IPv6),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n, DestRegister: reg1},
			&expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2, DestRegister: portReg},
			&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID},
		), nil
	}
	return nil, fmt.Errorf("unknown match %T", m)
}

// nfproto matches the IP version in an inet table.
func nfproto(v6 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
	}
}

// daddrAt is where the destination address sits in the IP header.
func daddrAt(v6 bool) (offset, length uint32) {
	if v6 {
		return 24, 16
	}
	return 16, 4
}
