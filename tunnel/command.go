package tunnel

import (
	"bufio"
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	c := &Command{cmd: cmd, stdin: stdin, stdout: stdout, log: log, exited: make(chan struct{})}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			line := sc.Text()
			log.Info(logPrefix+": "+line, "component", logPrefix)
			c.mu.Lock()
			c.tail = append(c.tail, line)
			if len(c.tail) > 20 {
				c.tail = c.tail[1:]
			}
			c.mu.Unlock()
		}
	}()
	go func() {
		<-stderrDone // Wait closes the pipes: read stderr to the end first
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.exited)
	}()
	return c, nil
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
				<-c.exited
			}
		}
	})
	return nil
}
