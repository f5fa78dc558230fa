package watcher

import "context"

// Source is one event source (nl80211, NetworkManager, rtnetlink, DHCP,
// the captive-portal probe).
//
// Events are hints: a source calls hint whenever what it knows may have
// changed; the Watcher debounces hints, then asks every source for a fresh
// Observe and merges the results into Network snapshots. A source that cannot
// run here (no Wi-Fi, no NetworkManager) returns an error wrapping
// ErrUnavailable from Run; the Watcher logs that once and carries on without it.
type Source interface {
	// Name is the source's name as in the config's sources list.
	Name() string
	// Run watches until ctx is done and calls hint on every possible change.
	// It owns its goroutines and returns only after they have ended.
	Run(ctx context.Context, hint func()) error
	// Observe returns what the source knows now: one partial Network per
	// interface, holding only the fields this source can fill in.
	Observe(ctx context.Context) ([]Network, error)
}

// Follower is a Source that acts on the merged view rather than on the
// system alone: the portal probe needs the interface, its gateway and the
// DNS servers DHCP gave, which other sources know. After every read of
// the sources the Watcher hands a Follower all networks; Follow must not
// block (keep the newest and wake Run).
type Follower interface {
	Source
	Follow(all []Network)
}
