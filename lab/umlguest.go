package lab

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

//go:embed guest_init.sh
var guestInit []byte

// Guest is a user-mode-linux guest: a Linux kernel running as a process,
// with the host's / as its read-only root. Its first serial line (ttyS0)
// is wired to two FIFOs on the host — one per direction, because a
// socketpair under load has panicked the guest kernel — so that stock
// pppd in the guest talks to whatever the host connects to them.
type Guest struct {
	Name    string
	ToGuest string // FIFO the guest's ttyS0 reads
	ToHost  string // FIFO the guest's ttyS0 writes
	Console string // file holding the guest's console output

	cmd  *exec.Cmd
	done chan struct{}
}

// UMLAvailable reports whether user-mode-linux is installed.
func UMLAvailable() bool {
	_, err := exec.LookPath("linux.uml")
	return err == nil
}

// StartGuest boots a guest that runs script (POSIX sh, sourced by its
// init after the PPP modules are loaded; console output goes to
// g.Console). The lab stops it at Close.
func (l *Lab) StartGuest(name, script string) (*Guest, error) {
	return l.StartGuestIn(nil, name, script)
}

// StartGuestIn is StartGuest with the guest process in namespace ns (nil:
// the caller's) and extra kernel parameters, e.g. a network device
// "vec0:transport=tap,ifname=TAP" whose tap appears in ns.
func (l *Lab) StartGuestIn(ns *Namespace, name, script string, extra ...string) (*Guest, error) {
	if !UMLAvailable() {
		return nil, errors.New("linux.uml not found: apt-get install user-mode-linux")
	}
	dir := filepath.Join(l.dir, "uml-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	initPath := filepath.Join(l.dir, "guest-init.sh")
	if err := os.WriteFile(initPath, guestInit, 0o755); err != nil {
		return nil, err
	}
	scriptPath := filepath.Join(dir, "role.sh")
	if err := os.WriteFile(scriptPath, []byte(script), 0o755); err != nil {
		return nil, err
	}
	g := &Guest{Name: name, ToGuest: filepath.Join(dir, "to-guest"), ToHost: filepath.Join(dir, "to-host"),
		Console: filepath.Join(dir, "console"), done: make(chan struct{})}
	for _, f := range []string{g.ToGuest, g.ToHost} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			return nil, fmt.Errorf("mkfifo %s: %w", f, err)
		}
	}
	// O_RDWR: neither open blocks waiting for the other end, and the guest
	// never sees EOF when the host side restarts.
	in, err := os.OpenFile(g.ToGuest, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(g.ToHost, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	console, err := os.Create(g.Console)
	if err != nil {
		return nil, err
	}
	defer console.Close()
	umid := l.prefix + "-" + name
	argv := append([]string{"linux.uml", "mem=128M", "rootfstype=hostfs", "rootflags=/", "ro",
		"init=" + initPath, "quiet", "con=null", "con0=fd:0,fd:1", "ssl=null", "ssl0=fd:3,fd:4",
		"uml_dir=" + dir, "umid=" + umid, "rt_script=" + scriptPath}, extra...)
	if ns != nil {
		argv = ns.Exec(argv...)
	}
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Stdin, g.cmd.Stdout, g.cmd.Stderr = nil, console, console
	g.cmd.ExtraFiles = []*os.File{in, out}
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("booting guest %s: %w", name, err)
	}
	l.Track(g.cmd.Process)
	go func() {
		g.cmd.Wait()
		close(g.done)
	}()
	l.Defer(func() { g.Stop() })
	return g, nil
}

// Done is closed when the guest has halted.
func (g *Guest) Done() <-chan struct{} { return g.done }

// Stop halts the guest (all of its host processes) and waits for it.
func (g *Guest) Stop() {
	select {
	case <-g.done:
		return
	default:
	}
	syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
	}
}

// Output returns the console output so far.
func (g *Guest) Output() string {
	b, _ := os.ReadFile(g.Console)
	return string(b)
}

// WaitFor polls the console until a line matches re and returns the
// first submatch group (or the line). It fails after timeout, or when
// the guest halts first.
func (g *Guest) WaitFor(re string, timeout time.Duration) (string, error) {
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := matchLine(g.Output(), rx); m != nil {
			if len(m) > 1 {
				return m[1], nil
			}
			return m[0], nil
		}
		select {
		case <-g.done:
			if m := matchLine(g.Output(), rx); m != nil {
				return m[len(m)-1], nil
			}
			return "", fmt.Errorf("guest %s halted before %q appeared; console:\n%s", g.Name, re, tail(g.Output(), 40))
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("guest %s: %q did not appear within %s; console:\n%s", g.Name, re, timeout, tail(g.Output(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func matchLine(s string, rx *regexp.Regexp) []string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if m := rx.FindStringSubmatch(sc.Text()); m != nil {
			return m
		}
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Signal creates the file name beside the guest's role script. The guest's
// root is the host's /, so a script can wait for it:
//
//	while [ ! -e "$(dirname "$rt_script")/NAME" ]; do sleep 0.1; done
func (g *Guest) Signal(name string) error {
	return os.WriteFile(filepath.Join(filepath.Dir(g.Console), name), nil, 0o644)
}
