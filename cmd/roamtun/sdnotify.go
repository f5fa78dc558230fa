package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/daemon"
)

// sdNotify sends a state to systemd (sd_notify(3)) if it listens
// (NOTIFY_SOCKET, set for Type=notify); without it, it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// sdStatus is the STATUS= line systemctl status shows for s.
func sdStatus(s daemon.Status) string {
	// One line: a newline would end the assignment early.
	reason := strings.ReplaceAll(s.Reason, "\n", " ")
	return "STATUS=" + string(s.State) + ": " + reason
}

// sdReloading is what a service says when it starts to reload (systemd
// 253+ wants the time, to tell this reload from an earlier one; 252 ignores
// both lines but shows the state).
func sdReloading() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// watchdogInterval is how often to tell systemd we are alive: half of
// WATCHDOG_USEC (sd_watchdog_enabled(3)), when it is set for this process.
func watchdogInterval() (time.Duration, bool) {
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false // meant for another process (we were started by the service's main process)
	}
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0, false
	}
	return time.Duration(usec) * time.Microsecond / 2, true
}

// runWatchdog sends WATCHDOG=1 every interval until ctx ends, but only
// after ping has gone through the state machine's goroutine: a daemon whose
// loop is stuck stops the pings, and systemd restarts it (WatchdogSec=).
func runWatchdog(ctx context.Context, every time.Duration, ping func(context.Context) error, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		err := ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("watchdog: the state machine did not answer; systemd restarts the daemon if this goes on", "err", err)
		default:
			if err := sdNotify("WATCHDOG=1"); err != nil {
				log.Warn("watchdog", "err", err)
			}
		}
	}
}

// reportStatus sends STATUS= on every change of state or reason until ctx
// ends.
func reportStatus(ctx context.Context, d *daemon.Daemon, log *slog.Logger) {
	ch, cancel := d.Subscribe()
	defer cancel()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-ch:
			line := sdStatus(s)
			if line == last {
				continue
			}
			last = line
			if err := sdNotify(line); err != nil {
				log.Debug("status not sent to systemd", "err", err)
			}
		}
	}
}
