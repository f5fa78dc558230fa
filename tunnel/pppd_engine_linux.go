package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/internal/dial"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// PPPD runs sessions with the system pppd (SuperviseOptions.Engine): the
// dial command — ssh exactly as the built-in engine runs it, host key
// pinned — is pppd's pty, and pppd's ppp interface takes the TUN's place.
// Supervision, routes, DNS, lockdown and the journal stay roamtun's.
type PPPD struct {
	// Program is pppd; "" means /usr/sbin/pppd, or pppd on PATH.
	Program string
	// Secrets is the chap-secrets file pppd sees as /etc/ppp/chap-secrets
	// (in a mount namespace of its own); missing means none.
	Secrets string
	// Linkname is pppd's linkname (its pid file /run/ppp-NAME.pid).
	Linkname string
	// StopWait bounds how long pppd may take to end after a stop (its LCP
	// Terminate-Request) before it and its pty are killed; 0 means 10 s.
	StopWait time.Duration
}

// NewPPPD is the pppd engine for a profile.
func NewPPPD(p *config.Profile) *PPPD {
	return &PPPD{Secrets: p.Secrets, Linkname: "roamtun-" + p.Name}
}

func (e *PPPD) program() string {
	if e.Program != "" {
		return e.Program
	}
	if _, err := os.Stat("/usr/sbin/pppd"); err == nil {
		return "/usr/sbin/pppd"
	}
	return "pppd"
}

// Run is one session: it starts pppd with argv/env as its pty, calls
// o.OnUp when pppd's ip-up hook reports the link up, and returns when pppd
// exits — with why (PPPDExitError, or ssh's own error), or ppp.ErrClosed
// after ctx is cancelled (pppd is sent SIGTERM: it terminates LCP
// cleanly and removes its interface).
func (e *PPPD) Run(ctx context.Context, argv, env []string, o SessionOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "roamtun-pppd-")
	if err != nil {
		return fmt.Errorf("pppd engine: %w", err)
	}
	defer os.RemoveAll(dir)
	setup := pppdSetup{Linkname: e.Linkname, Hook: dir, Events: filepath.Join(dir, "events")}
	events, secrets, err := prepareHookDir(dir, e.Secrets)
	if err != nil {
		return fmt.Errorf("pppd engine: %w", err)
	}
	defer events.Close()
	args, err := pppdArgs(argv, env, o, setup)
	if err != nil {
		return err
	}
	p, err := startPPPD(e.program(), secrets, args, log)
	if err != nil {
		return err
	}
	var (
		mu     sync.Mutex
		refuse error // the far end handed over what we may not use
	)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(events)
		for sc.Scan() {
			ev, err := parseHookLine(sc.Text())
			if err != nil {
				log.Warn("pppd hook", "err", err, "component", "pppd")
				continue
			}
			log.Debug("pppd hook", "event", ev.Kind, "interface", ev.Ifname, "component", "pppd")
			if ev.Kind != "ip-up" {
				continue
			}
			if err := checkSession(ev, o.Link.Forbidden); err != nil {
				mu.Lock()
				refuse = err
				mu.Unlock()
				p.signal(syscall.SIGTERM)
				continue
			}
			s := ppp.Session{LocalIP: ev.Local, PeerIP: ev.Remote, DNS: ev.DNS, PeerName: ev.PeerName,
				MTU: sysfsInt(ev.Ifname, "mtu")}
			if o.OnUp != nil {
				o.OnUp(s, ev.Ifname, func() ppp.Stats { return ifStats(ev.Ifname) })
			}
		}
	}()
	stopWait := e.StopWait
	if stopWait == 0 {
		stopWait = 10 * time.Second
	}
	stopped := false
	select {
	case <-p.exited:
	case <-ctx.Done():
		stopped = true
		p.stop(stopWait)
	}
	// A hook that runs after pppd is gone is of no use any more: the link
	// it would announce is down.
	events.Close()
	<-readerDone
	mu.Lock()
	defer mu.Unlock()
	switch {
	case stopped:
		return ppp.ErrClosed
	case refuse != nil:
		return refuse
	}
	return pppdEndReason(p.status(), p.log())
}

// prepareHookDir writes the ip-up/ip-down hook and makes the FIFO it
// writes to (opened here read-write: never EOF, never a blocked open), and
// returns the secrets file to give pppd (an empty one when there is none).
func prepareHookDir(dir, secrets string) (*os.File, string, error) {
	for _, name := range []string{"ip-up", "ip-down"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(pppdHook), 0o700); err != nil {
			return nil, "", err
		}
	}
	fifo := filepath.Join(dir, "events")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return nil, "", fmt.Errorf("mkfifo %s: %w", fifo, err)
	}
	if _, err := os.Stat(secrets); secrets == "" || errors.Is(err, os.ErrNotExist) {
		secrets = filepath.Join(dir, "no-secrets")
		if err := os.WriteFile(secrets, nil, 0o600); err != nil {
			return nil, "", err
		}
	}
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return nil, "", err
	}
	return f, secrets, nil
}

// pppdProc is a running pppd.
type pppdProc struct {
	cmd    *exec.Cmd
	exited chan struct{}

	mu   sync.Mutex
	tail []string
}

// startPPPD runs pppd with args in a mount namespace of its own (see
// pppdMounts), in its own process group, and ended by the kernel if we
// die. Its log (and its pty command's stderr) is logged line by line.
func startPPPD(program, secrets string, args []string, log *slog.Logger) (*pppdProc, error) {
	argv := append([]string{"/bin/sh", "-c", pppdMounts, "roamtun-pppd", secrets, program}, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	// Go makes / private (MS_REC|MS_PRIVATE) in a new mount namespace, so
	// the mounts there never reach the host's. Pdeathsig is tied to the
	// starting thread (golang/go#27505), as for StartCommand.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM,
		Unshareflags: syscall.CLONE_NEWNS}
	p := &pppdProc{cmd: cmd, exited: make(chan struct{})}
	lw := dial.NewLineWriter(func(line string) {
		log.Info("pppd: "+line, "component", "pppd")
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > 40 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
	})
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			// roamtun.service as shipped: no CAP_SYS_ADMIN, RestrictNamespaces.
			return nil, fmt.Errorf("starting pppd in a mount namespace of its own (engine = \"pppd\" needs CAP_SYS_ADMIN and unshare(CLONE_NEWNS)): %w", err)
		}
		return nil, fmt.Errorf("starting pppd: %w", err)
	}
	go func() {
		cmd.Wait()
		lw.Flush()
		close(p.exited)
	}()
	return p, nil
}

func (p *pppdProc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// stop asks pppd to end (SIGTERM: LCP Terminate-Request, its pty command
// ended, its interface removed) and kills its process group after wait.
func (p *pppdProc) stop(wait time.Duration) {
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.exited:
		return
	case <-t.C:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second): // bounded: WaitDelay ends Wait by then
	}
}

// status is pppd's exit status (-1 if a signal ended it).
func (p *pppdProc) status() int { return p.cmd.ProcessState.ExitCode() }

func (p *pppdProc) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tail...)
}

// ifStats reads an interface's counters from sysfs (pppd's interface
// counts IP payload and PPP headers alike; close enough for status).
func ifStats(ifname string) ppp.Stats {
	return ppp.Stats{
		RxBytes: uint64(sysfsInt(ifname, "statistics/rx_bytes")), TxBytes: uint64(sysfsInt(ifname, "statistics/tx_bytes")),
		RxPackets: uint64(sysfsInt(ifname, "statistics/rx_packets")), TxPackets: uint64(sysfsInt(ifname, "statistics/tx_packets")),
		Dropped: uint64(sysfsInt(ifname, "statistics/rx_dropped") + sysfsInt(ifname, "statistics/tx_dropped")),
	}
}

func sysfsInt(ifname, name string) int {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", ifname, name))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
