package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/lab"
)

// generated writes what "roamtun ARGS" prints to a file and returns its path.
func generated(t *testing.T, name string, args ...string) string {
	t.Helper()
	code, out, stderr := runCLI(t, args...)
	if code != 0 || stderr != "" {
		t.Fatalf("roamtun %q: exit %d, %s", args, code, stderr)
	}
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, out, 0o644)
	return p
}

// TestCompletionScripts: each script parses in its shell and names every
// command and every flag of each.
func TestCompletionScripts(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			script := generated(t, "roamtun."+sh, "completion", sh)
			data, _ := os.ReadFile(script)
			for _, c := range cliCommands() {
				if !bytes.Contains(data, []byte(c.name)) {
					t.Errorf("command %s missing", c.name)
				}
				for _, f := range c.flags {
					want := "--" + f.name
					if sh == "fish" {
						want = "-l " + f.name
					}
					if !bytes.Contains(data, []byte(want)) {
						t.Errorf("%s: flag %s missing", c.name, want)
					}
				}
			}
			lab.RequireCommand(t, sh)
			if out, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("%s -n: %v\n%s", sh, err, out)
			}
		})
	}
	if code, _, stderr := runCLI(t, "completion", "tcsh"); code != 2 || !strings.Contains(stderr, `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d, %q", code, stderr)
	}
}

// completionCases are command lines, the last word being completed, and
// words that must be offered.
var completionCases = []struct {
	line string
	want []string
}{
	{"roamtun con", []string{"connect"}},
	{"roamtun s", []string{"serve", "server-setup", "status"}},
	{"roamtun connect --o", []string{"--once"}},
	{"roamtun connect home --o", []string{"--once"}},
	{"roamtun trust --ver", []string{"--verify"}},
	{"roamtun explain --interface ", []string{"wifi", "ethernet"}},
	{"roamtun server-setup --far-end ", []string{"pppd", "roamtun"}},
	{"roamtun help tru", []string{"trust"}},
	{"roamtun completion ", []string{"bash", "zsh", "fish"}},
	{"roamtun networks --", []string{"--json", "--config", "--help"}},
	{"roamtun explain --interface=", []string{"wifi", "ethernet"}},
	{"roamtun explain --interface=w", []string{"wifi"}},
}

func TestBashCompletes(t *testing.T) {
	script := generated(t, "roamtun.bash", "completion", "bash")
	lab.RequireCommand(t, "bash")
	for _, tc := range completionCases {
		words := strings.Fields(strings.ReplaceAll(tc.line, "=", " = ")) // readline splits at "="
		if strings.HasSuffix(tc.line, " ") {
			words = append(words, "")
		}
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := `source "$1"; COMP_WORDS=(` + strings.Join(quoted, " ") + `); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); ` +
			`_roamtun 2>/dev/null; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", "-c", prog, "bash", script).Output()
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		got := strings.Fields(string(out))
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("bash %q: %q not offered in %q", tc.line, w, got)
			}
		}
	}
}

func TestFishCompletes(t *testing.T) {
	script := generated(t, "roamtun.fish", "completion", "fish")
	lab.RequireCommand(t, "fish")
	home := t.TempDir()
	for _, tc := range completionCases {
		cmd := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, script, tc.line)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home, "XDG_CACHE_HOME="+home)
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		var got []string
		for _, l := range strings.Split(string(out), "\n") {
			w := strings.SplitN(l, "\t", 2)[0]
			if i := strings.Index(w, "="); i >= 0 {
				w = w[i+1:] // fish offers "--interface=wifi"
			}
			got = append(got, w)
		}
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("fish %q: %q not offered in %q", tc.line, w, got)
			}
		}
	}
}

// TestManPage: the page has its sections, every command and flag, and
// man(1) formats it without a warning (what lintian checks).
func TestManPage(t *testing.T) {
	page := generated(t, "roamtun.1", "man")
	data, _ := os.ReadFile(page)
	for _, s := range []string{".SH NAME\nroamtun \\- ", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", ".SH COMMANDS",
		".SH EXIT STATUS", ".SH ENVIRONMENT", ".SH FILES", ".SH SEE ALSO", "/etc/roamtun/roamtun.toml",
		"/etc/roamtun/networks.d", "/var/lib/roamtun", "/run/roamtun/roamtun.sock", ".B 3\n"} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("no %q", s)
		}
	}
	for _, c := range cliCommands() {
		name := strings.ReplaceAll(c.name, "-", `\-`)
		if !bytes.Contains(data, []byte(".SS "+name+"\n")) {
			t.Errorf("command %s missing", c.name)
		}
		for _, f := range c.flags {
			if !bytes.Contains(data, []byte(`\fB\-\-`+strings.ReplaceAll(f.name, "-", `\-`))) {
				t.Errorf("%s: flag --%s missing", c.name, f.name)
			}
		}
	}
	lab.RequireCommand(t, "man")
	lab.RequireCommand(t, "groff")
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANWIDTH=80")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 || len(out) == 0 {
		t.Errorf("man --warnings -l: %v\n%s", err, stderr.String())
	}
}
