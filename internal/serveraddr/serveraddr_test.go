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

// fakeDNS answers every name with its addresses, or fails.
type fakeDNS struct {
	addrs []netip.Addr
	err   error
}

func (f fakeDNS) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return f.addrs, f.err
}

var (
	real1    = netip.MustParseAddr("198.51.100.10")
	real6    = netip.MustParseAddr("2001:db8::10")
	poisoned = netip.MustParseAddr("203.0.113.66")
)

// TestCandidates: pinned addresses alone; an IP host itself; remembered
// addresses before the current network's answers, which are still tried;
// a failed lookup is no error while something is remembered.
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
		{"poisoned answer tried after the remembered", "vpn.example.net", nil, book, fakeDNS{addrs: []netip.Addr{poisoned}}, []netip.Addr{real1, real6, poisoned}, ""},
		{"answer known already is not repeated", "vpn.example.net", nil, book, fakeDNS{addrs: []netip.Addr{real6, real1}}, []netip.Addr{real1, real6}, ""},
		{"DNS blocked, book knows", "vpn.example.net", nil, book, fakeDNS{err: errors.New("refused")}, []netip.Addr{real1, real6}, ""},
		{"nothing known, DNS fails", "other.example.net", nil, book, fakeDNS{err: errors.New("refused")}, nil, "refused"},
		{"no book", "vpn.example.net", nil, nil, fakeDNS{addrs: []netip.Addr{real6, real1}}, []netip.Addr{real1, real6}, ""},
	} {
		got, err := Candidates(ctx, c.host, c.pinned, c.book, c.dns)
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
