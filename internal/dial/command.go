// Package dial starts the transports a PPP link runs over: the system
// OpenSSH client with its host key pinned (SSHCommand), or any dial
// command whose stdio carries PPP (StartCommand), with the backoff between
// attempts and the reading of ssh's own words (ClassifySSH).
package dial

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command is a running dial command whose stdin/stdout carry the PPP byte
// stream (pppd's "pty" option; ssh is one such command). Its stderr is
// logged line by line and the last lines kept to explain a failure.
type Command struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	log    *slog.Logger

	mu      sync.Mutex
	tail    []string // last stderr lines
	waitErr error
	exited  chan struct{}
	closeMu sync.Once
}

// StartCommand runs argv with extra environment env (KEY=VALUE). The
// process gets its own process group so that Close can end everything it
// started. logPrefix names the stderr lines (e.g. "ssh").
func StartCommand(argv, env []string, log *slog.Logger, logPrefix string) (*Command, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("dial command is empty")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	// Pdeathsig: if roamtun dies (even by SIGKILL) its ssh goes too. Linux
	// ties it to the starting thread (golang/go#27505), so StartCommand must
	// not be called from a goroutine that locked its OS thread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &Command{cmd: cmd, log: log, exited: make(chan struct{})}
	lw := &LineWriter{fn: func(line string) {
		log.Info(logPrefix+": "+line, "component", logPrefix)
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > 20 {
			c.tail = c.tail[1:]
		}
		c.mu.Unlock()
	}}
	cmd.Stderr = lw
	// A descendant that outlives the command (an ssh ControlPersist master,
	// say) could hold stderr open for ever; don't let it hold Wait.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	c.stdin, c.stdout = stdin, stdout
	go func() {
		err := cmd.Wait()
		lw.Flush()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.exited)
	}()
	return c, nil
}

// LineWriter hands complete lines to fn (a command's stderr, for logs).
type LineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(string)
}

// NewLineWriter returns a LineWriter handing lines to fn.
func NewLineWriter(fn func(line string)) *LineWriter { return &LineWriter{fn: fn} }

func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a line without end: hand it on in pieces
		w.fn(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// Flush hands on a last line without its newline.
func (w *LineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.fn(string(w.buf))
		w.buf = nil
	}
}

// Read reads from the command's stdout.
func (c *Command) Read(p []byte) (int, error) { return c.stdout.Read(p) }

// Write writes to the command's stdin.
func (c *Command) Write(p []byte) (int, error) { return c.stdin.Write(p) }

// Exited is closed when the command has exited.
func (c *Command) Exited() <-chan struct{} { return c.exited }

// Stderr returns the last lines the command wrote to stderr.
func (c *Command) Stderr() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tail...)
}

// ExitError says how the command ended, with its last stderr line; nil
// while it runs or if it exited 0.
func (c *Command) ExitError() error {
	select {
	case <-c.exited:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waitErr == nil {
		return nil
	}
	msg := c.waitErr.Error()
	if n := len(c.tail); n > 0 {
		msg += ": " + strings.TrimSpace(c.tail[n-1])
	}
	return fmt.Errorf("dial command exited: %s", msg)
}

// Close closes the command's stdin, gives it a moment to exit on its own,
// then ends its whole process group and waits for it.
// Abort kills the command at once (its process group): for a transport known
// to be dead — the address under its connection is gone — where a clean
// goodbye would only wait for answers that cannot come.
func (c *Command) Abort() {
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
}

func (c *Command) Close() error {
	c.closeMu.Do(func() {
		c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(500 * time.Millisecond):
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(2 * time.Second):
				syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
				select {
				case <-c.exited:
				case <-time.After(5 * time.Second): // bounded: WaitDelay ends Wait by then
				}
			}
		}
	})
	return nil
}
