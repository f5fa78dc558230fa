package policy

import (
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// dirWatch is inotify on a directory that may not exist yet: while it is
// missing, its nearest existing ancestor is watched instead, so that its
// creation (or its parent's) is an event too.
type dirWatch struct {
	dir string
	w   *fsnotify.Watcher
	cur string // what is watched now: dir or an ancestor
}

func newDirWatch(dir string) (*dirWatch, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	d := &dirWatch{dir: abs, w: w}
	if err := d.rewatch(); err != nil {
		w.Close()
		return nil, err
	}
	return d, nil
}

// rewatch watches dir, or its nearest existing ancestor. The watch is added
// again even when the path is the same: a directory removed and made again
// under the same name is a new inode, whose watch the kernel dropped. A
// directory made below the old target before the new watch was in place
// sent its events nowhere: so it looks again until the target holds still.
func (d *dirWatch) rewatch() error {
	for {
		prev := d.cur
		if err := d.watchOnce(); err != nil {
			return err
		}
		if d.cur == prev || d.cur == d.dir {
			return nil
		}
	}
}

func (d *dirWatch) watchOnce() error {
	target := d.dir
	for {
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			break
		}
		parent := filepath.Dir(target)
		if parent == target {
			break
		}
		target = parent
	}
	if d.cur != "" && d.cur != target {
		d.w.Remove(d.cur) // may be gone already
	}
	if err := d.w.Add(target); err != nil {
		d.cur = ""
		return err
	}
	d.cur = target
	return nil
}

func (d *dirWatch) events() <-chan fsnotify.Event {
	if d == nil {
		return nil
	}
	return d.w.Events
}

func (d *dirWatch) errors() <-chan error {
	if d == nil {
		return nil
	}
	return d.w.Errors
}

func (d *dirWatch) close() { d.w.Close() }
