// Package serveraddr decides which addresses a named host — the ssh server,
// a verify target — is dialed at, without handing that choice to whatever
// DNS the current network offers.
//
// A café's resolver is hostile by assumption: one poisoned answer must not
// keep the tunnel down on every later network, nor open a hole in the
// standby firewall. So addresses are believed in three ways:
//
//   - pinned in the profile (addresses = [...]): those and nothing else;
//   - learnt where they can be believed, and kept in a Book in state_dir:
//     answers of a trusted network's DNS, and addresses at which the ssh
//     server proved itself with its pinned host key;
//   - fresh answers of the current network, tried after the remembered ones
//     (the pinned host key turns an impostor away; the next is tried).
package serveraddr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/roamtun/roamtun/internal/atomicfile"
	"github.com/roamtun/roamtun/internal/safefile"
)

// perHost bounds what is remembered for one name (newest first).
const perHost = 8

// fileName is the book's file in state_dir.
const fileName = "addresses.json"

// Book remembers believable addresses per host name. Its methods are safe
// for concurrent use; a nil *Book remembers nothing.
type Book struct {
	path  string
	mu    sync.Mutex
	hosts map[string][]netip.Addr
}

// Open reads the book in stateDir (none yet is an empty book). The file
// must be roamtun's own (see safefile): one another user could write would
// let them choose where the laptop dials.
func Open(stateDir string) (*Book, error) {
	b := &Book{path: filepath.Join(stateDir, fileName), hosts: map[string][]netip.Addr{}}
	data, err := safefile.ReadOwned(b.path, 1<<20)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return b, nil
	case err != nil:
		return b, fmt.Errorf("address book %s: %w", b.path, err)
	}
	if err := json.Unmarshal(data, &b.hosts); err != nil {
		b.hosts = map[string][]netip.Addr{}
		return b, fmt.Errorf("address book %s: %w (starting afresh)", b.path, err)
	}
	return b, nil
}

// Known returns the addresses remembered for host, newest first.
func (b *Book) Known(host string) []netip.Addr {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.hosts[host])
}

// Remember notes addrs for host (most believable first) and writes the book.
func (b *Book) Remember(host string, addrs ...netip.Addr) error {
	if b == nil || host == "" || len(addrs) == 0 {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil // an address names itself
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.hosts[host]
	next := make([]netip.Addr, 0, perHost)
	for _, a := range append(slices.Clone(addrs), cur...) {
		a = a.Unmap()
		if a.IsValid() && !slices.Contains(next, a) && len(next) < perHost {
			next = append(next, a)
		}
	}
	if slices.Equal(next, cur) {
		return nil
	}
	b.hosts[host] = next
	data, err := json.MarshalIndent(b.hosts, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(b.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("address book: %w", err)
	}
	return nil
}

// Resolver looks a name up (net.DefaultResolver in production).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// lookupTimeout bounds one lookup: a roam waits for it.
const lookupTimeout = 5 * time.Second

// Lookup asks r for host's addresses, IPv4 first, with a deadline.
func Lookup(ctx context.Context, r Resolver, host string) ([]netip.Addr, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
		switch {
		case a.Is4() && !b.Is4():
			return -1
		case !a.Is4() && b.Is4():
			return 1
		}
		return 0
	})
	return addrs, nil
}

// Candidates returns the addresses to dial host at, in order: the pinned
// ones alone if any; host itself if it is an address; else those the book
// remembers, without asking the current network (whose DNS may be poisoned
// or, behind the standby firewall, unreachable: a roam does not wait for
// it); else the current network's answers. Rotation.Refresh asks the
// network again once every remembered address has failed.
func Candidates(ctx context.Context, host string, pinned []netip.Addr, b *Book, r Resolver) ([]netip.Addr, error) {
	if len(pinned) > 0 {
		return slices.Clone(pinned), nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if known := b.Known(host); len(known) > 0 {
		return known, nil
	}
	out, err := Lookup(ctx, r, host)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("resolving %s: no address", host)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Rotation walks a list of candidates across dial attempts: it stays on the
// address that last carried a session, and moves to the next after an
// attempt that never came up.
type Rotation struct {
	mu      sync.Mutex
	addrs   []netip.Addr
	i       int
	refresh func() []netip.Addr
}

// NewRotation starts at the first candidate. addrs must not be empty.
func NewRotation(addrs []netip.Addr) *Rotation { return &Rotation{addrs: slices.Clone(addrs)} }

// Refresh makes Next, when every candidate has failed, look host up again
// (bounded by Lookup's deadline and ctx) and add the answers it does not
// hold yet, tried after those. A failed lookup is passed to onErr (may be
// nil) and the rotation wraps around as before. Pinned addresses and a
// literal host are never looked up.
func (r *Rotation) Refresh(ctx context.Context, host string, pinned []netip.Addr, res Resolver, onErr func(error)) {
	if len(pinned) > 0 {
		return
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh = func() []netip.Addr {
		addrs, err := Lookup(ctx, res, host)
		if err != nil && onErr != nil {
			onErr(err)
		}
		return addrs
	}
}

// Next returns the address for a dial attempt: attempt 1 (the first dial,
// or the first after a session that came up) keeps the current address,
// later attempts move on. Moving on from the last candidate refreshes the
// list first (see Refresh); the lookup runs without the lock held.
func (r *Rotation) Next(attempt int) netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if attempt <= 1 {
		return r.addrs[r.i]
	}
	if r.i == len(r.addrs)-1 && r.refresh != nil {
		refresh := r.refresh
		r.mu.Unlock()
		fresh := refresh()
		r.mu.Lock()
		for _, a := range fresh {
			if !slices.Contains(r.addrs, a) {
				r.addrs = append(r.addrs, a)
			}
		}
	}
	r.i = (r.i + 1) % len(r.addrs)
	return r.addrs[r.i]
}

// Addrs returns every candidate.
func (r *Rotation) Addrs() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.addrs)
}
