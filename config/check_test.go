package config

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func write(t *testing.T, name, data string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
	return name
}

func hostKeyLine(t *testing.T, addr string) string {
	pub, _, _ := ed25519.GenerateKey(nil)
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return knownhosts.Line([]string{addr}, k) + "\n"
}

// TestCheck: the files and programs a config names, one problem each.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bin := t.TempDir()
	write(t, filepath.Join(bin, "ssh"), "#!/bin/sh\n", 0o755)
	write(t, filepath.Join(bin, "mydial"), "#!/bin/sh\n", 0o755)
	write(t, filepath.Join(bin, "notexec"), "", 0o644)
	t.Setenv("PATH", bin)
	key := write(t, filepath.Join(dir, "id"), "k", 0o600)
	openKey := write(t, filepath.Join(dir, "id-open"), "k", 0o640)
	kh := write(t, filepath.Join(dir, "known_hosts"), hostKeyLine(t, "vpn.example.net:22")+hostKeyLine(t, "other:2222"), 0o644)
	badKH := write(t, filepath.Join(dir, "bad_known_hosts"), "this is not a known_hosts line\n", 0o644)
	sec := write(t, filepath.Join(dir, "secrets"), "client server a\nserver client b\n", 0o600)
	oneWay := write(t, filepath.Join(dir, "oneway"), "client server a\n", 0o600)
	wild := write(t, filepath.Join(dir, "wild"), "* * a\n", 0o600)
	groupSec := write(t, filepath.Join(dir, "group"), "client server a\nserver client b\n", 0o640)
	brokenSec := write(t, filepath.Join(dir, "broken"), "client server\n", 0o600)
	profile := func(extra string) string {
		return "[daemon]\npolicy_dir = \"" + dir + "\"\n[profile.p]\nhost = \"vpn.example.net\"\nuser = \"u\"\nidentity_file = \"" + key +
			"\"\nknown_hosts = \"" + kh + "\"\nsecrets = \"" + sec + "\"\n" + extra
	}
	tests := []struct {
		name, src string
		want      []string // "LINE: substring"
	}{
		{"good", profile(""), nil},
		{"good, port in known_hosts", strings.Replace(profile("port = 2222\n"), "vpn.example.net", "other", 1), nil},
		{"no profile", "[daemon]\npolicy_dir = \"" + dir + "\"\n", []string{"1: warning: no [profile.NAME] table"}},
		{"policy_dir missing", strings.Replace(profile(""), dir+"\"\n", dir+"/nope\"\n", 1), []string{"2: daemon.policy_dir: " + dir + "/nope does not exist"}},
		{"policy_dir a file", strings.Replace(profile(""), dir+"\"\n", key+"\"\n", 1), []string{"2: daemon.policy_dir: " + key + " is not a directory"}},
		{"key open", strings.Replace(profile(""), key, openKey, 1), []string{"6: profile.p.identity_file: " + openKey + " is accessible by group or others (mode 0640)"}},
		{"key missing", strings.Replace(profile(""), key, dir+"/none", 1), []string{"6: profile.p.identity_file: " + dir + "/none does not exist"}},
		{"host not pinned", strings.Replace(profile(""), "vpn.example.net", "elsewhere", 1), []string{"7: profile.p.known_hosts: " + kh + " holds no host key for elsewhere"}},
		{"port not pinned", profile("port = 2222\n"), []string{"7: profile.p.known_hosts: " + kh + " holds no host key for [vpn.example.net]:2222"}},
		{"known_hosts unreadable", strings.Replace(profile(""), kh, badKH, 1), []string{"7: profile.p.known_hosts: reading " + badKH}},
		{"known_hosts default missing", strings.Replace(profile(""), "known_hosts = \""+kh+"\"\n", "", 1), []string{"3: profile.p.known_hosts: /etc/roamtun/known_hosts does not exist"}},
		{"secrets one way", strings.Replace(profile(""), sec, oneWay, 1), []string{"8: profile.p.secrets: " + oneWay + " has no secret for server to authenticate to client"}},
		{"secrets one way, no require_chap", strings.Replace(profile("require_chap = false\n"), sec, oneWay, 1), nil},
		{"secrets wildcard", strings.Replace(profile(""), sec, wild, 1), nil},
		{"secrets names", profile("name = \"me\"\n"), []string{"8: profile.p.secrets: " + sec + " has no secret for me to authenticate to server", "8: has no secret for server to authenticate to me"}},
		{"secrets group", strings.Replace(profile(""), sec, groupSec, 1), []string{"8: warning: profile.p.secrets: " + groupSec + " is accessible by its group"}},
		{"secrets broken", strings.Replace(profile(""), sec, brokenSec, 1), []string{"1: want \"client server secret"}},
		{"no ssh", profile(""), []string{`3: profile.p: "ssh": not found on PATH`}},
		{"dial_command", "[daemon]\npolicy_dir = \"" + dir + "\"\n[profile.p]\ndial_command = [\"mydial\", \"-x\"]\nsecrets = \"" + sec + "\"\n", nil},
		{"dial_command missing", "[daemon]\npolicy_dir = \"" + dir + "\"\n[profile.p]\ndial_command = [\"nodial\"]\nsecrets = \"" + sec + "\"\n", []string{`4: profile.p.dial_command: "nodial": not found on PATH`}},
		{"dial_command not executable", "[daemon]\npolicy_dir = \"" + dir + "\"\n[profile.p]\ndial_command = [\"" + bin + "/notexec\"]\nsecrets = \"" + sec + "\"\n", []string{`4: profile.p.dial_command: "` + bin + `/notexec": permission denied`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "no ssh" {
				t.Setenv("PATH", t.TempDir())
			}
			c, problems, _ := Inspect("c.toml", []byte(tt.src))
			if len(problems) > 0 {
				t.Fatalf("parse: %v", problems)
			}
			got := Check(c)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				line, sub, _ := strings.Cut(w, ": ")
				if g := got[i].Error(); !strings.Contains(g, ":"+line+": ") || !strings.Contains(g, sub) {
					t.Errorf("problem %q, want line %s and %q", g, line, sub)
				}
			}
		})
	}
}
