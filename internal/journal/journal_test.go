package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type rec struct {
	Name string `json:"name"`
}

func TestRecordReplayNewestFirst(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if _, err := j.Record("thing", rec{n}); err != nil {
			t.Fatal(err)
		}
	}
	e, err := j.Record("thing", rec{"undone-already"})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Done(e); err != nil {
		t.Fatal(err)
	}
	j.Close() // a crash: entries stay

	j2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	var order []string
	n, err := j2.Replay(context.Background(), map[string]Undoer{"thing": func(_ context.Context, e *Entry) error {
		var r rec
		if err := e.Decode(&r); err != nil {
			return err
		}
		order = append(order, r.Name)
		return nil
	}})
	if err != nil || n != 3 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	if !slices.Equal(order, []string{"c", "b", "a"}) {
		t.Fatalf("undo order %v, want newest first", order)
	}
	if p, _ := j2.Pending(); len(p) != 0 {
		t.Fatalf("still pending: %v", p)
	}
	// New entries continue after the highest entry seen at open.
	e2, _ := j2.Record("thing", rec{"d"})
	if e2.Seq != 4 {
		t.Fatalf("seq %d, want 4", e2.Seq)
	}
}

func TestFailedUndoStaysAndUnknownKindKept(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Record("ok", rec{"1"})
	j.Record("fails", rec{"2"})
	j.Record("mystery", rec{"3"})
	n, err := j.Replay(context.Background(), map[string]Undoer{
		"ok":    func(context.Context, *Entry) error { return nil },
		"fails": func(context.Context, *Entry) error { return errors.New("device busy") },
	})
	if n != 1 || err == nil || !strings.Contains(err.Error(), "device busy") || !strings.Contains(err.Error(), `no undo for kind "mystery"`) {
		t.Fatalf("replay: %d, %v", n, err)
	}
	p, _ := j.Pending()
	if len(p) != 2 {
		t.Fatalf("pending %d, want the 2 that were not undone", len(p))
	}
}

func TestCorruptEntryNamedNotDropped(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Record("ok", rec{"1"})
	bad := filepath.Join(j.Dir(), "0000000009-route.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	p, err := j.Pending()
	if len(p) != 1 || err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("pending %v, err %v; want the good entry and an error naming %s", p, err, bad)
	}
	if _, err := os.Stat(bad); err != nil {
		t.Fatal("corrupt entry was removed")
	}
}

func TestLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second open: %v, want ErrBusy naming the holder", err)
	}
	j.Close()
	j2, err := Open(dir)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	j2.Close()
	if fi, err := os.Stat(filepath.Join(dir, "journal")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("journal dir: %v %v", fi, err)
	}
}
