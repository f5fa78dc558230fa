package serveraddr

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeDNS answers every name with its addresses, or fails; calls (if set)
// counts the questions.
type fakeDNS struct {
	addrs []netip.Addr
	err   error
	calls *int
}

func (f fakeDNS) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	if f.calls != nil {
		*f.calls++
	}
	return f.addrs, f.err
}

var (
	real1    = netip.MustParseAddr("198.51.100.10")
	real6    = netip.MustParseAddr("2001:db8::10")
	poisoned = netip.MustParseAddr("203.0.113.66")
)

// TestCandidates: pinned addresses alone; an IP host itself; remembered
// addresses alone, without asking the current network (a roam must not
// wait on a DNS the standby firewall holds back); else the network's
// answers, IPv4 first.
func TestCandidates(t *testing.T) {
	dir := t.TempDir()
	book, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := book.Remember("vpn.example.net", real1, real6); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		host   string
		pinned []netip.Addr
		book   *Book
		dns    fakeDNS
		want   []netip.Addr
		err    string
	}{
		{"pinned beats DNS and book", "vpn.example.net", []netip.Addr{poisoned}, book, fakeDNS{addrs: []netip.Addr{real1}}, []netip.Addr{poisoned}, ""},
		{"literal host", "192.0.2.1", nil, book, fakeDNS{err: errors.New("no DNS")}, []netip.Addr{netip.MustParseAddr("192.0.2.1")}, ""},
		{"poisoned answer not asked for while remembered", "vpn.example.net", nil, book, fakeDNS{addrs: []netip.Addr{poisoned}}, []netip.Addr{real1, real6}, ""},
		{"DNS blocked, book knows", "vpn.example.net", nil, book, fakeDNS{err: errors.New("refused")}, []netip.Addr{real1, real6}, ""},
		{"nothing known, DNS answers", "other.example.net", nil, book, fakeDNS{addrs: []netip.Addr{poisoned}}, []netip.Addr{poisoned}, ""},
		{"nothing known, DNS answers nothing", "other.example.net", nil, book, fakeDNS{}, nil, "no address"},
		{"nothing known, DNS fails", "other.example.net", nil, book, fakeDNS{err: errors.New("refused")}, nil, "refused"},
		{"no book", "vpn.example.net", nil, nil, fakeDNS{addrs: []netip.Addr{real6, real1}}, []netip.Addr{real1, real6}, ""},
	} {
		calls := 0
		c.dns.calls = &calls
		got, err := Candidates(ctx, c.host, c.pinned, c.book, c.dns)
		if asked := calls > 0; asked != (c.pinned == nil && c.host == "other.example.net" || c.book == nil) {
			t.Errorf("%s: DNS asked %d times", c.name, calls)
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, %v; want error %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, c.want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// TestBookPersistsAndRefusesOthersFiles: what is remembered survives a
// restart, newest first and bounded; a book file another user could write
// is not believed.
func TestBookPersistsAndRefusesOthersFiles(t *testing.T) {
	dir := t.TempDir()
	b, _ := Open(dir)
	for i := range 12 {
		b.Remember("h", netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	b.Remember("192.0.2.200", netip.MustParseAddr("192.0.2.201")) // an address names itself
	b2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := b2.Known("h")
	if len(got) != perHost || got[0] != netip.MustParseAddr("192.0.2.11") {
		t.Errorf("after reopening: %v", got)
	}
	if k := b2.Known("192.0.2.200"); k != nil {
		t.Errorf("an address host was remembered: %v", k)
	}
	os.Chmod(filepath.Join(dir, fileName), 0o666)
	b3, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "writable by group or others") || b3.Known("h") != nil {
		t.Errorf("a book others may write: %v, %v", err, b3.Known("h"))
	}
}

// TestRotation: the first attempt (and the first after a session that came
// up) keeps the address; failed attempts move on, wrapping around.
func TestRotation(t *testing.T) {
	r := NewRotation([]netip.Addr{real1, poisoned})
	var got []netip.Addr
	for _, attempt := range []int{1, 2, 3, 1, 1, 2} {
		got = append(got, r.Next(attempt))
	}
	want := []netip.Addr{real1, poisoned, real1, real1, real1, poisoned}
	if !cmp.Equal(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("rotation %v, want %v", got, want)
	}
}

// TestRotationRefresh: once every candidate has failed, the network is
// asked again and new answers are tried next (one known already is not
// repeated); a failed lookup is reported and the rotation wraps around;
// pinned addresses and literal hosts are never looked up.
func TestRotationRefresh(t *testing.T) {
	eq := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	ctx := context.Background()
	calls := 0
	dns := fakeDNS{addrs: []netip.Addr{real6, real1}, calls: &calls}
	r := NewRotation([]netip.Addr{poisoned})
	r.Refresh(ctx, "vpn.example.net", nil, &dns, nil)
	var got []netip.Addr
	for _, attempt := range []int{1, 2, 3, 4, 1} {
		got = append(got, r.Next(attempt))
	}
	// attempt 2 leaves the last (only) candidate: lookup, real1 and real6
	// join (IPv4 first); attempt 4 leaves the last again: lookup, nothing
	// new, wrap.
	want := []netip.Addr{poisoned, real1, real6, poisoned, poisoned}
	if !cmp.Equal(got, want, eq) || calls != 2 {
		t.Errorf("rotation %v after %d lookups, want %v after 2", got, calls, want)
	}
	if !cmp.Equal(r.Addrs(), []netip.Addr{poisoned, real1, real6}, eq) {
		t.Errorf("candidates %v", r.Addrs())
	}

	var reported []error
	dns = fakeDNS{err: errors.New("refused")}
	r = NewRotation([]netip.Addr{real1, real6})
	r.Refresh(ctx, "vpn.example.net", nil, dns, func(err error) { reported = append(reported, err) })
	got = got[:0]
	for _, attempt := range []int{2, 3} {
		got = append(got, r.Next(attempt))
	}
	if !cmp.Equal(got, []netip.Addr{real6, real1}, eq) || len(reported) != 1 || !strings.Contains(reported[0].Error(), "refused") {
		t.Errorf("failed refresh: rotation %v, reported %v", got, reported)
	}

	for _, c := range []struct {
		host   string
		pinned []netip.Addr
	}{{"vpn.example.net", []netip.Addr{real1}}, {"192.0.2.1", nil}} {
		calls = 0
		dns = fakeDNS{addrs: []netip.Addr{poisoned}, calls: &calls}
		r = NewRotation([]netip.Addr{real1})
		r.Refresh(ctx, c.host, c.pinned, dns, nil)
		r.Next(2)
		if calls != 0 || len(r.Addrs()) != 1 {
			t.Errorf("%s %v: looked up %d times, candidates %v", c.host, c.pinned, calls, r.Addrs())
		}
	}
}
