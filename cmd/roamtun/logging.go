package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// newLogger returns the logger of every subcommand: slog's text format on
// w, or, when w is the journal's stream (systemd started us with stderr
// connected to journald), one line per record with a syslog priority prefix
// ("<4>" for a warning) and no timestamp, which journald parses and stamps
// itself — so `journalctl -p warning -u roamtun` shows roamtun's warnings.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	f, ok := w.(*os.File)
	if ok && onJournal(f, os.Getenv("JOURNAL_STREAM")) {
		return slog.New(newJournalHandler(w, level))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// onJournal tells whether f is the stream journald handed us: systemd sets
// JOURNAL_STREAM to "DEV:INODE" of it (sd-daemon(3), systemd.exec(5)). A
// stderr redirected elsewhere by a child or a shell no longer matches, so
// the variable alone proves nothing.
func onJournal(f *os.File, stream string) bool {
	var dev, ino uint64
	if _, err := fmt.Sscanf(stream, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// journalHandler is slog's text handler with a syslog priority in front of
// each line and without the time. Handlers made by WithAttrs and WithGroup
// share one journalOut, so their lines never interleave.
type journalHandler struct {
	inner slog.Handler
	out   *journalOut
}

// journalOut puts the record's priority in front of the line the inner
// handler writes (slog's handlers write each record in one Write).
type journalOut struct {
	mu   sync.Mutex
	w    io.Writer
	prio string
}

func (o *journalOut) Write(p []byte) (int, error) {
	// One Write: a line reaches journald whole.
	b := make([]byte, 0, len(o.prio)+len(p))
	b = append(append(b, o.prio...), p...)
	if _, err := o.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

func newJournalHandler(w io.Writer, level slog.Leveler) *journalHandler {
	out := &journalOut{w: w}
	noTime := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	return &journalHandler{out: out,
		inner: slog.NewTextHandler(out, &slog.HandlerOptions{Level: level, ReplaceAttr: noTime})}
}

// priority is the syslog priority (syslog(3)) of a level: err, warning,
// info, debug.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.prio = priority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), out: h.out}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &journalHandler{inner: h.inner.WithGroup(name), out: h.out}
}
