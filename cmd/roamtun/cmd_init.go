package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/roamtun/roamtun/internal/dial"
	"github.com/roamtun/roamtun/internal/serve"

	"golang.org/x/crypto/ssh"

	"github.com/roamtun/roamtun/internal/tomlfile"
)

var initCmd = &command{
	name: "init",
	usage: "[--config FILE] --server USER@HOST[:PORT] [--host-key SHA256:…] [--agent SOCKET] [--admin-identity FILE] " +
		"[--far-end roamtun|pppd] [--link-user NAME] [--remote-roamtun PATH] [--serve-binary PATH] [--force] [--no-dial] PROFILE",
	help: "set up both ends from the laptop (as root, on a trusted network): key, pinned host key, the server's account and secrets over ssh, the profile; then check and dial once",
}

func init() {
	initCmd.run = runInit
	register(initCmd)
}

// initOptions are init's flags.
type initOptions struct {
	cfgPath, server, hostKey, agent, adminIdentity string
	farEnd, linkUser, remoteRoamtun, serveBinary   string
	force, noDial                                  bool

	profile, user, host string
	port                int
}

// initPaths are the laptop's files init writes, next to the config.
type initPaths struct{ config, identity, knownHosts, secrets string }

func (o initOptions) paths() initPaths {
	dir := filepath.Dir(o.cfgPath)
	return initPaths{config: o.cfgPath, identity: filepath.Join(dir, "id_ed25519_"+o.profile),
		knownHosts: filepath.Join(dir, "known_hosts"), secrets: filepath.Join(dir, "chap-secrets")}
}

var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func runInit(e *env, args []string) error {
	fs, cfgPath := newFlags(e, initCmd)
	var o initOptions
	fs.StringVar(&o.server, "server", "", "the admin login on the server (`USER@HOST[:PORT]`): root, or an account that may sudo without a password")
	fs.StringVar(&o.hostKey, "host-key", "", "the server's host key fingerprint (`SHA256:…`): confirms it without asking; a mismatch aborts")
	fs.StringVar(&o.agent, "agent", "", "use the first key of this ssh-agent (`SOCKET`) instead of making one")
	fs.StringVar(&o.adminIdentity, "admin-identity", "", "the admin's private key `FILE` for the setup session (default: ssh's own choice)")
	fs.StringVar(&o.farEnd, "far-end", "roamtun", "what runs on the server: `roamtun|pppd`")
	fs.StringVar(&o.linkUser, "link-user", "ppp-link", "the link account (`NAME`) made on the server")
	fs.StringVar(&o.remoteRoamtun, "remote-roamtun", "/usr/bin/roamtun", "roamtun's `PATH` on the server")
	fs.StringVar(&o.serveBinary, "serve-binary", "", "where the server puts its capable copy of roamtun (`PATH`; server-setup's default)")
	fs.BoolVar(&o.force, "force", false, "replace an existing profile of that name")
	fs.BoolVar(&o.noDial, "no-dial", false, "do not dial once to prove the setup")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.cfgPath = *cfgPath
	if err := o.parse(fs.Args()); err != nil {
		return err
	}
	return initBothEnds(e, o)
}

// parse checks the arguments: PROFILE and --server.
func (o *initOptions) parse(args []string) error {
	if len(args) != 1 {
		return usagef("want exactly one PROFILE")
	}
	if o.profile = args[0]; !profileNameRE.MatchString(o.profile) {
		return usagef("PROFILE %q: want 1-64 letters, digits, _ and -", o.profile)
	}
	if o.server == "" {
		return usagef("--server USER@HOST[:PORT] is required")
	}
	user, hostport, ok := strings.Cut(o.server, "@")
	if !ok || user == "" {
		return usagef("--server %q: want USER@HOST[:PORT]", o.server)
	}
	o.user, o.host, o.port = user, hostport, 22
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		o.host = h
		if o.port, err = strconv.Atoi(p); err != nil || o.port < 1 || o.port > 65535 {
			return usagef("--server %q: bad port %q", o.server, p)
		}
	}
	if !serve.ValidHost(o.host) || strings.HasPrefix(user, "-") || strings.ContainsAny(user, " \t\n'\"\\$`;") {
		return usagef("--server %q: want USER@HOST[:PORT]", o.server)
	}
	if o.farEnd != "roamtun" && o.farEnd != "pppd" {
		return usagef("--far-end: want roamtun or pppd, not %q", o.farEnd)
	}
	if o.hostKey != "" && !strings.HasPrefix(o.hostKey, "SHA256:") {
		return usagef("--host-key %q: want SHA256:… (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the server)", o.hostKey)
	}
	return nil
}

// initBothEnds is init in order: nothing is written on either end until the
// host key is confirmed, and nothing on the laptop until the server is set up.
func initBothEnds(e *env, o initOptions) error {
	p := o.paths()
	cfgText, err := readConfigForInit(p.config, o.profile, o.force)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(o.host, strconv.Itoa(o.port))
	key, err := dial.ReadHostKey(e.ctx, addr, 15*time.Second)
	if err != nil {
		return err
	}
	fp := ssh.FingerprintSHA256(key)
	if err := confirmHostKey(e, o, addr, key); err != nil {
		return err
	}
	pin := pinLine(o.host, o.port, key)
	if err := checkExistingPin(p.knownHosts, addr, key, o.force); err != nil {
		return err
	}
	pub, made, err := laptopKey(o, p)
	if err != nil {
		return err
	}
	if made {
		fmt.Fprintf(e.stdout, "made the key %s (%s)\n", p.identity, keyFingerprint(pub))
	}
	fmt.Fprintf(e.stdout, "setting up %s (host key %s) as %s…\n", addr, fp, o.user)
	l, err := runRemoteSetup(e, o, pin, fp, pub)
	if err != nil {
		return err
	}
	if l.HostKey != "" {
		if got, _ := serve.Fingerprint(l.HostKey); got != fp {
			fmt.Fprintf(e.stderr, "roamtun init: warning: the server read its host key as %s, but it answered %s with %s; %s is pinned\n", got, addr, fp, fp)
		}
	}
	fmt.Fprintf(e.stdout, "server: account %s, laptop %s at %s, server %s, DNS %s\n", l.User, l.Name, l.Peer, l.Local, l.DNS)
	if err := writeLaptopFiles(o, p, cfgText, pin, l); err != nil {
		return fmt.Errorf("%w (the server is set up: server-setup --revoke %s there undoes it)", err, l.Fingerprint)
	}
	fmt.Fprintf(e.stdout, "wrote [profile.%s] in %s, %s, %s\n", o.profile, p.config, p.knownHosts, p.secrets)
	if err := checkWritten(e, p.config); err != nil {
		return err
	}
	if o.noDial {
		return nil
	}
	return dialOnce(e, p.config, o.profile)
}

// confirmHostKey compares the key with --host-key, or asks on the terminal.
func confirmHostKey(e *env, o initOptions, addr string, key ssh.PublicKey) error {
	fp := ssh.FingerprintSHA256(key)
	if o.hostKey != "" {
		if strings.TrimRight(o.hostKey, "=") != strings.TrimRight(fp, "=") {
			return fmt.Errorf("host key mismatch: %s offers %s %s, --host-key says %s; nothing was written", addr, key.Type(), fp, o.hostKey)
		}
		return nil
	}
	if !isTerminal(e.stdin) {
		return fmt.Errorf("%s offers the host key %s %s: confirm it with --host-key (stdin is not a terminal to ask on)", addr, key.Type(), fp)
	}
	fmt.Fprintf(e.stderr, "%s offers the host key %s %s.\nCompare it with what the server says (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there).\nPin it for profile %s? [yes/no] ",
		addr, key.Type(), fp, o.profile)
	answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "yes" && a != "y" {
		return errors.New("host key not confirmed; nothing was written")
	}
	return nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// runRemoteSetup runs server-setup --apply --json on the server over the
// system ssh client, the key pinned in a temporary known_hosts, the
// laptop's public key on stdin.
func runRemoteSetup(e *env, o initOptions, pin, fp, pub string) (serve.LaptopSetup, error) {
	var l serve.LaptopSetup
	kh, err := os.CreateTemp("", "roamtun-init-known_hosts-")
	if err != nil {
		return l, err
	}
	defer os.Remove(kh.Name())
	_, err = kh.WriteString(pin + "\n")
	if cerr := kh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return l, err
	}
	remote := []string{o.remoteRoamtun, "server-setup", "--apply", "--json", "--far-end", o.farEnd, "--user", o.linkUser,
		"--host", o.host, "--port", strconv.Itoa(o.port), "--expect-host-key", fp, "--roamtun", o.remoteRoamtun}
	if o.serveBinary != "" {
		remote = append(remote, "--serve-binary", o.serveBinary)
	}
	remote = append(remote, "-")
	if o.user != "root" {
		remote = append([]string{"sudo", "-n"}, remote...)
	}
	argv := []string{"-T", "-o", "UserKnownHostsFile=" + kh.Name(), "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
		"-o", "ForwardAgent=no", "-o", "ClearAllForwardings=yes", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR"}
	if o.adminIdentity != "" {
		argv = append(argv, "-o", "IdentitiesOnly=yes", "-i", o.adminIdentity)
	}
	argv = append(argv, "-p", strconv.Itoa(o.port), "-l", o.user, "--", o.host, shellJoin(remote))
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", argv...)
	cmd.Stdin = strings.NewReader(pub + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return l, fmt.Errorf("server-setup on %s: %w:\n%s", o.host, err, strings.TrimSpace(stderr.String()))
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "warning:") {
			fmt.Fprintln(e.stderr, "server: "+line)
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &l); err != nil {
		return l, fmt.Errorf("server-setup on %s: reading its JSON: %w", o.host, err)
	}
	if err := l.Validate(); err != nil {
		return l, fmt.Errorf("server-setup on %s answered: %w", o.host, err)
	}
	return l, nil
}

// shellJoin quotes argv for the remote shell (ssh passes one string).
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// checkWritten runs roamtun check's checks on the result.
func checkWritten(e *env, cfgPath string) error {
	problems, summary := checkAll(cfgPath)
	nerr := 0
	for _, p := range problems {
		fmt.Fprintln(e.stderr, p)
		if p.Severity == tomlfile.SeverityError {
			nerr++
		}
	}
	if nerr > 0 {
		return fmt.Errorf("check: %d problem(s) in the written setup", nerr)
	}
	fmt.Fprintln(e.stdout, "check: "+summary)
	return nil
}

// dialOnce runs `roamtun connect --once` on the new profile until the link
// is up, prints its line, and takes it down again (SIGTERM: routes and DNS
// put back).
func dialOnce(e *env, cfgPath, profile string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "connect", "--once", "--config", cfgPath, profile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	up := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "up: ") {
				select {
				case up <- sc.Text():
				default:
				}
			}
		}
		close(up)
	}()
	var line string
	select {
	case line = <-up:
	case <-time.After(60 * time.Second):
	case <-e.ctx.Done():
	}
	cmd.Process.Signal(os.Interrupt)
	werr := cmd.Wait()
	if line == "" {
		return fmt.Errorf("dialing %s once: the link did not come up (%v):\n%s", profile, werr, strings.TrimSpace(stderr.String()))
	}
	fmt.Fprintf(e.stdout, "dial: %s; taken down again\n", line)
	if werr != nil {
		return fmt.Errorf("dialing %s once: the link came up, but connect ended with %v:\n%s", profile, werr, strings.TrimSpace(stderr.String()))
	}
	return nil
}
