package dial

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/config"
)

func TestSSHCommand(t *testing.T) {
	p := &config.Profile{Host: "vpn.example.net", Port: 2222, User: "ppp-link", IdentityFile: "/k/id",
		KnownHosts: "/k/known_hosts", RemoteCommand: "/usr/sbin/pppd notty", SSHOptions: []string{"Ciphers=aes128-gcm@openssh.com"}}
	argv, env := SSHCommand(p)
	s := strings.Join(argv, " ")
	for _, w := range []string{"-T -e none", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/k/known_hosts",
		"GlobalKnownHostsFile=/dev/null", "BatchMode=yes", "IdentitiesOnly=yes -i /k/id", "IdentityAgent=none",
		"-p 2222 -l ppp-link -- vpn.example.net /usr/sbin/pppd notty"} {
		if !strings.Contains(s, w) {
			t.Errorf("argv lacks %q:\n%s", w, s)
		}
	}
	// ssh uses the first value of an option: the profile's must precede our default.
	if mine, def := slices.Index(argv, "Ciphers=aes128-gcm@openssh.com"), slices.Index(argv, "Ciphers="+DefaultCiphers); mine < 0 || def < mine {
		t.Errorf("ssh_options Ciphers at %d, default at %d: the profile's must come first", mine, def)
	}
	if known, mine := slices.Index(argv, "StrictHostKeyChecking=yes"), slices.Index(argv, "Ciphers=aes128-gcm@openssh.com"); known > mine {
		t.Errorf("pinning options must come before ssh_options")
	}
	if len(env) != 0 {
		t.Errorf("env = %q", env)
	}
	p.AgentSocket, p.IdentityFile = "/run/user/1000/agent", ""
	argv, env = SSHCommand(p)
	if !slices.Contains(env, "SSH_AUTH_SOCK=/run/user/1000/agent") || slices.Contains(argv, "-i") ||
		!slices.Contains(argv, "IdentityAgent=/run/user/1000/agent") {
		t.Errorf("agent: argv %q env %q", argv, env)
	}
}

func TestClassifySSH(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  error
	}{
		{[]string{"No ED25519 host key is known for [10.0.0.1]:22 and you have requested strict checking.", "Host key verification failed."}, ErrHostKey},
		{[]string{"@@@@@@@", "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @"}, ErrHostKey},
		{[]string{"ppp-link@10.0.0.1: Permission denied (publickey)."}, ErrAuthRefused},
		{[]string{"ssh: connect to host 10.0.0.1 port 22: Connection refused"}, ErrUnreachable},
		{[]string{"ssh: connect to host 10.0.0.1 port 22: Connection timed out"}, ErrUnreachable},
		{[]string{"something else"}, nil},
	} {
		got := ClassifySSH(tc.lines)
		if tc.want == nil {
			if got != nil {
				t.Errorf("%q: %v, want nil", tc.lines, got)
			}
			continue
		}
		if !errors.Is(got, tc.want) {
			t.Errorf("%q: %v, want %v", tc.lines, got, tc.want)
		}
	}
}
