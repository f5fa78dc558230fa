package lab

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"sync"
	"time"
)

// Proc is a process started in a namespace whose output is kept for
// inspection.
type Proc struct {
	Cmd  *exec.Cmd
	out  SyncBuffer
	err  SyncBuffer
	done chan struct{}
	werr error
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers
// (logs and process output captured in tests).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartProc starts argv inside the namespace, capturing stdout and stderr
// (unless the caller set cmd.Stdin/Stdout via setup).
func (ns *Namespace) StartProc(setup func(*exec.Cmd), argv ...string) (*Proc, error) {
	p := &Proc{Cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.err
	if setup != nil {
		setup(p.Cmd)
	}
	if err := ns.Start(p.Cmd); err != nil {
		return nil, err
	}
	go func() {
		p.werr = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Stdout and Stderr return what the process wrote so far.
func (p *Proc) Stdout() string { return p.out.String() }

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.err.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still running after %s", p.Cmd.Args, timeout)
	}
}

// WaitOutput polls stdout+stderr until re matches and returns the match.
func (p *Proc) WaitOutput(re string, timeout time.Duration) (string, error) {
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindString(p.Stdout() + p.Stderr()); m != "" {
			return m, nil
		}
		select {
		case <-p.done:
			if m := rx.FindString(p.Stdout() + p.Stderr()); m != "" {
				return m, nil
			}
			return "", fmt.Errorf("process exited (%v) before %q appeared; stdout:\n%s\nstderr:\n%s", p.werr, re, p.Stdout(), tail(p.Stderr(), 30))
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%q did not appear within %s; stdout:\n%s\nstderr:\n%s", re, timeout, p.Stdout(), tail(p.Stderr(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
