package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/roamtun/roamtun/internal/tomlfile"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// Check looks at what a loaded configuration names outside itself, which
// Load leaves alone (tests load configs with made-up paths): that it defines
// a profile; that each profile's identity_file exists and is private,
// known_hosts pins the server's host key, the secrets file holds both CHAP
// entries and is not world-readable, and the programs it runs are on PATH;
// and that policy_dir exists. Each problem names the line of the key in the
// config file (the profile's header for a default value). It is what
// `roamtun check` adds to Load.
func Check(c *Config) []*tomlfile.Problem {
	ck := &checker{c: c}
	if len(c.Profiles) == 0 && ck.doc() != nil && ck.doc().Complete() && !ck.reported([]string{"profile"}) {
		// A fresh install has none yet: the daemon then blocks untrusted
		// networks (lockdown) instead of tunnelling. Worth saying, not an error.
		ck.warnf(nil, "no [profile.NAME] table: roamtun has no server to tunnel to, untrusted networks will be blocked")
	}
	ck.dir([]string{"daemon", "policy_dir"}, c.Daemon.PolicyDir)
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ck.profile(c.Profiles[n])
	}
	return ck.out
}

type checker struct {
	c   *Config
	out []*tomlfile.Problem
}

func (ck *checker) doc() *tomlfile.Doc { return ck.c.doc }

// reported: the value at key was wrong already, so its default stands in
// for it and checking that would only add noise.
func (ck *checker) reported(key []string) bool {
	return ck.doc() != nil && ck.doc().Reported(key...)
}

func (ck *checker) line(key []string) int {
	if ck.doc() == nil {
		return 0
	}
	return ck.doc().Line(key...)
}

func (ck *checker) add(sev tomlfile.Severity, key []string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(key) > 0 {
		msg = strings.Join(key, ".") + ": " + msg
	}
	ck.out = append(ck.out, &tomlfile.Problem{File: ck.c.Path, Line: max(ck.line(key), 1),
		Severity: sev, Message: msg})
}

func (ck *checker) errorf(key []string, format string, args ...any) {
	ck.add(tomlfile.SeverityError, key, format, args...)
}

func (ck *checker) warnf(key []string, format string, args ...any) {
	ck.add(tomlfile.SeverityWarning, key, format, args...)
}

func (ck *checker) dir(key []string, path string) {
	if ck.reported(key) {
		return
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		ck.errorf(key, "%s", describeStatErr(path, err))
	case !fi.IsDir():
		ck.errorf(key, "%s is not a directory", path)
	}
}

func describeStatErr(path string, err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return path + " does not exist"
	}
	return err.Error()
}

func (ck *checker) profile(p *Profile) {
	key := func(k string) []string { return []string{"profile", p.Name, k} }
	doc := ck.doc()
	if doc != nil && doc.Has(key("dial_command")...) {
		if len(p.DialCommand) > 0 && !doc.Reported(key("dial_command")...) {
			ck.program(key("dial_command"), p.DialCommand[0])
		}
	} else if len(p.DialCommand) > 0 {
		ck.program(key("dial_command"), p.DialCommand[0])
	} else {
		ck.program([]string{"profile", p.Name}, "ssh")
		if p.IdentityFile != "" {
			ck.private(key("identity_file"), p.IdentityFile, 0o077, "group or others")
		}
		ck.knownHosts(key("known_hosts"), p)
	}
	if p.Engine == EnginePPPD {
		if _, err := os.Stat("/usr/sbin/pppd"); err != nil {
			ck.program(key("engine"), "pppd")
		}
	}
	ck.secrets(key("secrets"), p)
}

// program checks that name (a path, or a command found on PATH) runs.
func (ck *checker) program(key []string, name string) {
	if _, err := exec.LookPath(name); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) && errors.Is(ee.Err, exec.ErrNotFound) {
			ck.errorf(key, "%q: not found on PATH (%s)", name, os.Getenv("PATH"))
			return
		}
		ck.errorf(key, "%q: %v", name, errors.Unwrap(err))
	}
}

// private checks that path is a regular file with no permission bits in
// mask (who names them), and returns whether it could be read.
func (ck *checker) private(key []string, path string, mask fs.FileMode, who string) bool {
	if ck.reported(key) {
		return false
	}
	fi, err := os.Stat(path)
	if err != nil {
		ck.errorf(key, "%s", describeStatErr(path, err))
		return false
	}
	if !fi.Mode().IsRegular() {
		ck.errorf(key, "%s is not a regular file", path)
		return false
	}
	if perm := fi.Mode().Perm(); perm&mask != 0 {
		ck.errorf(key, "%s is accessible by %s (mode %04o): chmod 600 %s", path, who, perm, path)
	}
	return true
}

// knownHosts checks that the file pins a key for the profile's host, in
// the form ssh looks it up: host, or [host]:port when the port is not 22.
func (ck *checker) knownHosts(key []string, p *Profile) {
	if ck.reported(key) {
		return
	}
	if _, err := os.Stat(p.KnownHosts); err != nil {
		ck.errorf(key, "%s", describeStatErr(p.KnownHosts, err))
		return
	}
	check, err := knownhosts.New(p.KnownHosts)
	if err != nil {
		ck.errorf(key, "reading %s: %v", p.KnownHosts, err)
		return
	}
	if p.Host == "" {
		return
	}
	addr := net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
	norm := knownhosts.Normalize(addr)
	// A key no line can hold: the error lists the keys pinned for addr.
	err = check(addr, namedAddr(addr), noKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		ck.errorf(key, "%s holds no host key for %s: the server's key must be pinned (ssh-keyscan -p %d %s, checked, then added)",
			p.KnownHosts, norm, p.Port, p.Host)
	}
}

// namedAddr is a net.Addr that is just the host:port ssh is given, so that
// knownhosts looks up no other name.
type namedAddr string

func (a namedAddr) Network() string { return "tcp" }
func (a namedAddr) String() string  { return string(a) }

type noKey struct{}

func (noKey) Type() string                        { return "roamtun-check" }
func (noKey) Marshal() []byte                     { return []byte("roamtun-check") }
func (noKey) Verify([]byte, *ssh.Signature) error { return errors.New("no key") }

// secrets checks the chap-secrets file: readable by no one else, and with
// the secret each end proves itself with (the far end's only if we require
// it to authenticate).
func (ck *checker) secrets(key []string, p *Profile) {
	if !ck.private(key, p.Secrets, 0o007, "others") {
		return
	}
	if fi, err := os.Stat(p.Secrets); err == nil && fi.Mode().Perm()&0o007 == 0 && fi.Mode().Perm()&0o070 != 0 {
		ck.warnf(key, "%s is accessible by its group (mode %04o): anyone in it can impersonate either end", p.Secrets, fi.Mode().Perm())
	}
	s, err := ppp.LoadSecrets(p.Secrets)
	if err != nil {
		ck.out = append(ck.out, fileProblem(p.Secrets, err))
		return
	}
	if _, ok := s.Lookup(p.LocalName, p.RemoteName); !ok {
		ck.errorf(key, "%s has no secret for %s to authenticate to %s (a line \"%s %s SECRET\"; profile keys name, remote_name)",
			p.Secrets, p.LocalName, p.RemoteName, p.LocalName, p.RemoteName)
	}
	if _, ok := s.Lookup(p.RemoteName, p.LocalName); !ok && p.RequireCHAP {
		ck.errorf(key, "%s has no secret for %s to authenticate to %s (a line \"%s %s SECRET\"; needed with require_chap)",
			p.Secrets, p.RemoteName, p.LocalName, p.RemoteName, p.LocalName)
	}
}

// fileProblem turns an error that reads "FILE:LINE: message" (as the
// secrets parser's do) into a Problem for that file and line.
func fileProblem(file string, err error) *tomlfile.Problem {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, file+":"); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil && line > 0 {
				return &tomlfile.Problem{File: file, Line: line, Severity: tomlfile.SeverityError, Message: tail}
			}
		}
	}
	return &tomlfile.Problem{File: file, Severity: tomlfile.SeverityError, Message: msg}
}
