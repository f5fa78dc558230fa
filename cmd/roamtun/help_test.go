package main

import (
	"encoding/json"
	"flag"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/daemon"
)

// TestHelpEveryCommand: "help CMD", "CMD --help" and "CMD -h" print the
// same help, on stdout, with the usage, the description, every flag and
// the exit statuses (3 for the commands that talk to the daemon).
func TestHelpEveryCommand(t *testing.T) {
	for _, c := range sortedCommands() {
		fs := flagsOf(c)
		if fs == nil {
			t.Errorf("%s: no flag set from running it with --help", c.name)
			continue
		}
		code, want, stderr := runCLI(t, "help", c.name)
		if code != 0 || stderr != "" {
			t.Errorf("help %s: exit %d, stderr %q", c.name, code, stderr)
		}
		has := []string{"usage: roamtun " + c.name + " " + c.usage, c.help, "exit status:", "0  success", "2  usage error"}
		fs.VisitAll(func(f *flag.Flag) { has = append(has, "--"+f.Name) })
		for _, h := range has {
			if !strings.Contains(want, h) {
				t.Errorf("help %s: no %q in\n%s", c.name, h, want)
			}
		}
		if got := strings.Contains(want, "3  the daemon is not running"); got != daemonCommands[c.name] {
			t.Errorf("help %s: exit status 3 listed: %v, want %v", c.name, got, daemonCommands[c.name])
		}
		for _, h := range []string{"--help", "-h", "-help"} {
			code, out, stderr := runCLI(t, c.name, h)
			if code != 0 || out != want || stderr != "" {
				t.Errorf("%s %s: exit %d, stderr %q, stdout differs from help %s:\n%s", c.name, h, code, stderr, c.name, out)
			}
		}
	}
}

func TestHelpList(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout bool // the list goes to stdout (asked for) or stderr (a usage error)
	}{
		{[]string{"help"}, 0, true},
		{[]string{"--help"}, 0, true},
		{[]string{"-h"}, 0, true},
		{nil, 2, false},
		{[]string{"frobnicate"}, 2, false},
	} {
		code, out, stderr := runCLI(t, tc.args...)
		list := stderr
		if tc.stdout {
			list = out
		}
		if code != tc.code {
			t.Errorf("roamtun %q: exit %d, want %d", tc.args, code, tc.code)
		}
		for _, c := range sortedCommands() {
			if !strings.Contains(list, "\n  "+c.name+" ") || !strings.Contains(list, c.help) {
				t.Errorf("roamtun %q: %s not listed in\n%s", tc.args, c.name, list)
			}
		}
	}
	if code, _, stderr := runCLI(t, "help", "frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("help frobnicate: exit %d, %q", code, stderr)
	}
}

func TestInterleave(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Bool("once", false, "")
	fs.String("config", "", "")
	var pin pinFlag
	fs.Var(&pin, "bssid", "")
	for _, tc := range []struct {
		in, want string
	}{
		{"", ""},
		{"home", "-- home"},
		{"--once home", "--once -- home"},
		{"home --once", "--once -- home"},
		{"home --config f --once", "--config f --once -- home"},
		{"--config=f home -once", "--config=f -once -- home"},
		{"home --config --once", "--config --once -- home"}, // --once is the value
		{"a -- --once b", "-- a --once b"},
		{"- --once", "--once -- -"},
		{"x --bssid y", "--bssid -- x y"}, // a boolean flag takes no value
		{"x --bogus y", "--bogus -- x y"},
		{"x --config", "--config -- x"}, // the flag package reports the missing value
	} {
		got := interleave(fs, strings.Fields(tc.in))
		if want := strings.Fields(tc.want); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
			t.Errorf("interleave(%q) = %q, want %q", tc.in, got, want)
		}
	}
}

// TestFlagsAfterArguments: flags after positional arguments reach their
// command, whichever it is.
func TestFlagsAfterArguments(t *testing.T) {
	cfg, _ := policySetup(t, map[string]string{"10-home.toml": cliHome})
	for _, tc := range []struct {
		args []string
		code int
		has  string // in stdout+stderr
	}{
		{[]string{"connect", "home", "--config", "/nonexistent/roamtun.toml"}, 1, "reading config"},
		{[]string{"connect", "home", "--once", "--config", "/nonexistent/roamtun.toml"}, 1, "reading config"},
		{[]string{"connect", "--", "home", "--once"}, 2, "want exactly one PROFILE"},
		{[]string{"serve", "--local", "10.0.0.1", "extra", "--peer", "10.0.0.2"}, 2, "unexpected arguments: extra"},
		{[]string{"explain", "--ssid", "HomeNet", "--config", cfg, "--json", "--bssid", "aa:bb:cc:dd:ee:01"}, 0, `"action":"trust"`},
		{[]string{"explain", "--bssid", "aa:bb:cc:dd:ee:01", "--json", "--config", cfg, "--ssid", "HomeNet", "--security", "wpa2"}, 0, `"action":"trust"`},
		{[]string{"trust", "Cafe", "--config", cfg, "--bssid", "aa:11:22:33:44:55"}, 0, "trusting Cafe"},
		{[]string{"untrust", "Cafe", "--config", cfg}, 0, "removed the trust rule for Cafe"},
		{[]string{"check", "--config", cfg, "--json"}, 0, "[]"},
		{[]string{"help", "connect", "--config", cfg}, 0, "usage: roamtun connect"},
		{[]string{"completion", "bash", "--config", cfg}, 0, "complete -F _roamtun roamtun"},
		{[]string{"status", "extra", "--json"}, 2, "status takes no arguments"},
	} {
		code, out, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out+stderr, tc.has) {
			t.Errorf("roamtun %q: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, code, out, stderr, tc.code, tc.has)
		}
	}
}

// TestDaemonNotRunning: every command that talks to the daemon exits 3
// when its socket is missing or nothing listens on it.
func TestDaemonNotRunning(t *testing.T) {
	dir := t.TempDir()
	refused := filepath.Join(dir, "refused.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: refused, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the socket stays, nobody listens: ECONNREFUSED
	for _, sock := range []string{filepath.Join(dir, "missing", "roamtun.sock"), refused} {
		cfg := filepath.Join(dir, "roamtun.toml")
		writeFile(t, cfg, "[daemon]\nsocket = \""+sock+"\"\npolicy_dir = \""+dir+"\"\n", 0o644)
		var cmds [][]string
		for name := range daemonCommands {
			if commands[name] != nil {
				cmds = append(cmds, []string{name})
			}
		}
		cmds = append(cmds, []string{"status", "--watch"}, []string{"status", "--json"}, []string{"up", "home"},
			[]string{"trust", "--bssid", "--gateway"})
		for _, args := range cmds {
			code, out, stderr := runCLI(t, append(args, "--config", cfg)...)
			if code != exitNotRunning || !strings.Contains(stderr, "roamtun daemon is not running") || out != "" {
				t.Errorf("%s with %s: exit %d, stdout %q, stderr %q; want exit 3", args, filepath.Base(sock), code, out, stderr)
			}
		}
		// A config that cannot be read is a failure, not a daemon that is not running.
		if code, _, stderr := runCLI(t, "status", "--config", filepath.Join(dir, "none.toml")); code != 1 {
			t.Errorf("status with no config: exit %d, %q; want 1", code, stderr)
		}
	}
}

func TestNetworksJSON(t *testing.T) {
	cfg, pdir := policySetup(t, map[string]string{"10-home.toml": cliHome})
	code, out, stderr := runCLI(t, "networks", "--json", "--config", cfg)
	if code != 0 {
		t.Fatalf("networks --json: exit %d, %s", code, stderr)
	}
	var got struct {
		Rules   []networkRuleJSON    `json:"rules"`
		Default networkRuleJSON      `json:"default"`
		Seen    []daemon.SeenNetwork `json:"seen"` // empty: no daemon runs here
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("networks --json: %v\n%s", err, out)
	}
	if len(got.Rules) == 0 || got.Rules[0].File != filepath.Join(pdir, "10-home.toml") || got.Rules[0].Line != 1 ||
		got.Rules[0].Action != "trust" || got.Rules[0].Match == "" {
		t.Errorf("rules: %+v", got.Rules)
	}
	if got.Default.Rule != "default" || got.Default.Action == "" {
		t.Errorf("default: %+v", got.Default)
	}
	for _, key := range []string{`"file"`, `"line"`, `"rule"`, `"match"`, `"action"`, `"profile"`, `"default"`} {
		if !strings.Contains(out, key) {
			t.Errorf("no key %s in %s", key, out)
		}
	}
}
