// Package journal records every change roamtun makes to the system before it
// is made, so that whatever a crashed or killed run left behind can be undone
// by the next one (`roamtun cleanup`, daemon start).
//
// Each entry is one small JSON file in STATE_DIR/journal, written to a
// temporary name, fsynced, renamed into place and its directory fsynced:
// an entry is either wholly there or not there at all, and one corrupt file
// cannot hide the others. An entry is removed once its change is undone.
// Replay undoes the entries newest first.
//
// A journal is held by one process at a time (an exclusive flock on
// STATE_DIR/lock): two runs undoing each other's changes would be worse than
// either alone.
//
// Replay runs as root and does what the entries say, so only entries that
// no one but roamtun's own user could have written are believed: STATE_DIR,
// the journal directory and each entry must be owned by that user and not
// writable by group or others, entries must be regular files (never
// symlinks), and no directory above STATE_DIR may let another user swap it.
// Anything else is refused by name and left in place for inspection.
package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/internal/atomicfile"
	"github.com/roamtun/roamtun/internal/safefile"
)

// ErrBusy is returned by Open when another process holds the journal.
var ErrBusy = errors.New("another roamtun process holds the journal")

// Entry is one recorded change.
type Entry struct {
	Seq  uint64          `json:"seq"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
	PID  int             `json:"pid"`
	Time time.Time       `json:"time"`
	// File is where the entry is stored (not serialised).
	File string `json:"-"`
}

// Decode unmarshals the entry's data into v, naming the file on error.
func (e *Entry) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("%s: %s entry: %w", e.File, e.Kind, err)
	}
	return nil
}

// Journal is an open journal. Its methods are safe for concurrent use.
type Journal struct {
	dir  string
	lock *os.File
	mu   sync.Mutex
	seq  uint64
}

// Open opens (creating, mode 0700) the journal in stateDir and takes its
// lock. A stateDir, journal directory or lock that another user could have
// planted or changed is refused, naming it.
func Open(stateDir string) (*Journal, error) {
	stateDir = filepath.Clean(stateDir)
	if !filepath.IsAbs(stateDir) {
		return nil, fmt.Errorf("journal: state_dir %q is not an absolute path", stateDir)
	}
	dir := filepath.Join(stateDir, "journal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := safefile.CheckAncestors(filepath.Dir(stateDir)); err != nil {
		return nil, fmt.Errorf("journal: refusing state_dir %s: %w", stateDir, err)
	}
	for _, d := range []string{stateDir, dir} {
		if err := safefile.CheckOwned(d, true); err != nil {
			return nil, fmt.Errorf("journal: refusing %w", err)
		}
	}
	lockPath := filepath.Join(stateDir, "lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: opening the lock (a symlink is refused): %w", err)
	}
	if err := safefile.CheckOpen(f, lockPath); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: refusing %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lockPath)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (pid %s)", lockPath, ErrBusy, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("journal: locking %s: %w", lockPath, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	j := &Journal{dir: dir, lock: f}
	// New entries number on from every file there, even those Pending
	// refuses (they are reported by Replay, and must not be overwritten).
	names, err := os.ReadDir(dir)
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	for _, d := range names {
		digits, _, _ := strings.Cut(d.Name(), "-")
		if n, err := strconv.ParseUint(digits, 10, 64); err == nil {
			j.seq = max(j.seq, n)
		}
	}
	return j, nil
}

// Dir is the directory holding the entries.
func (j *Journal) Dir() string { return j.dir }

// Close releases the lock. Entries stay.
func (j *Journal) Close() error {
	if j.lock == nil {
		return nil
	}
	err := j.lock.Close() // closing drops the flock
	j.lock = nil
	return err
}

// Record durably writes an entry of kind holding data. Call it before making
// the change it describes.
func (j *Journal) Record(kind string, data any) (*Entry, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("journal: %s: %w", kind, err)
	}
	j.mu.Lock()
	j.seq++
	e := &Entry{Seq: j.seq, Kind: kind, Data: raw, PID: os.Getpid(), Time: time.Now().UTC()}
	j.mu.Unlock()
	e.File = filepath.Join(j.dir, fmt.Sprintf("%010d-%s.json", e.Seq, kind))
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(e.File, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return e, nil
}

// Rewrite replaces an entry's data in place (same sequence number, so the
// same place in the undo order), durably, and returns the new entry.
func (j *Journal) Rewrite(e *Entry, data json.RawMessage) (*Entry, error) {
	n := *e
	n.Data, n.Time = data, time.Now().UTC()
	b, err := json.Marshal(&n)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(n.File, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &n, nil
}

// Done removes an entry whose change has been undone (or never happened).
func (j *Journal) Done(e *Entry) error {
	if err := os.Remove(e.File); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return atomicfile.SyncDir(j.dir)
}

// Pending returns the entries on disk, oldest first. A file that cannot be
// read or parsed is returned as an entry of kind "" with File set and an
// error explaining it, so that nothing is silently dropped.
func (j *Journal) Pending() ([]Entry, error) {
	names, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []Entry
	var errs []error
	for _, d := range names {
		if !strings.HasSuffix(d.Name(), ".json") || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		path := filepath.Join(j.dir, d.Name())
		var e Entry
		b, err := safefile.ReadOwned(path, maxEntry)
		if err == nil {
			err = json.Unmarshal(b, &e)
		}
		if err == nil && (e.Kind == "" || e.Seq == 0) {
			err = errors.New("entry has no kind or sequence number")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("journal: %s: %w", path, err))
			continue
		}
		e.File = path
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out, errors.Join(errs...)
}

// Undoer undoes one kind of change. Undoing a change that is already gone
// must return nil.
type Undoer func(ctx context.Context, e *Entry) error

// Replay undoes every pending entry, newest first, with the undoer for its
// kind, removing each entry that was undone. Entries that fail (or have no
// undoer) stay for a later try; their errors are joined in the result.
func (j *Journal) Replay(ctx context.Context, undo map[string]Undoer) (undone int, err error) {
	pending, perr := j.Pending()
	errs := []error{perr}
	for i := len(pending) - 1; i >= 0; i-- {
		e := &pending[i]
		u, ok := undo[e.Kind]
		if !ok {
			errs = append(errs, fmt.Errorf("journal: %s: no undo for kind %q; left in place", e.File, e.Kind))
			continue
		}
		if err := u(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("journal: undoing %s: %w", e.File, err))
			continue
		}
		if err := j.Done(e); err != nil {
			errs = append(errs, err)
			continue
		}
		undone++
	}
	return undone, errors.Join(errs...)
}

// maxEntry bounds an entry's size: roamtun's are a few hundred bytes.
const maxEntry = 1 << 20
