package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/roamtun/roamtun/internal/serve"
)

var serverSetupCmd = &command{
	name:  "server-setup",
	usage: "[--user NAME] [--from CIDR] [--far-end pppd|roamtun] [--apply [--json]] [--list] [--revoke KEY_OR_FINGERPRINT] [--pool FILE] [--local IP --peer IP --dns IP] [--host NAME --port N] [--expect-host-key SHA256:…] [--roamtun PATH] [--serve-binary PATH] [PUBKEY_FILE|-]",
	help:  "print (or with --apply, perform) what the server needs: account, restricted key, CHAP secrets, rights, host key to pin; --list and --revoke the laptops of its address pool",
}

func init() {
	serverSetupCmd.run = runServerSetup
	register(serverSetupCmd)
}

// serverSetupFlags are server-setup's flags beyond the ServerSetup fields.
type serverSetupFlags struct {
	from, local, peer, dns, hostKey, expectHostKey, pool, revoke string
	apply, asJSON, list                                          bool
}

func runServerSetup(e *env, args []string) error {
	fs, _ := newFlags(e, serverSetupCmd)
	s := serve.ServerSetup{}
	var f serverSetupFlags
	fs.StringVar(&s.User, "user", "ppp-link", "the dedicated account (`NAME`) on the server")
	fs.StringVar(&f.from, "from", "", "accept the key only from this `CIDR` (authorized_keys from=)")
	fs.StringVar(&s.FarEnd, "far-end", "pppd", "what runs on the server: `pppd|roamtun`")
	fs.StringVar(&f.local, "local", "10.9.0.1", "the server's address (`IP`) on the link")
	fs.StringVar(&f.peer, "peer", "10.9.0.2", "the laptop's address (`IP`) on the link (with --apply: the next free one of the pool unless given)")
	fs.StringVar(&f.dns, "dns", "", "DNS server (`IP`) to offer (default: --local)")
	fs.StringVar(&s.Host, "host", "", "the server's `NAME` as the laptop dials it")
	fs.IntVar(&s.Port, "port", 22, "the server's ssh port")
	fs.StringVar(&f.hostKey, "host-key", "/etc/ssh/ssh_host_ed25519_key.pub", "the server's host key `FILE`, to pin on the laptop")
	fs.StringVar(&f.expectHostKey, "expect-host-key", "", "the host key the laptop connected to (`SHA256:…`): warn if this machine's differs")
	fs.StringVar(&s.Roamtun, "roamtun", "/usr/bin/roamtun", "`PATH` where roamtun is installed on the server (--far-end roamtun)")
	fs.StringVar(&s.ServeBinary, "serve-binary", "/usr/lib/roamtun/roamtun-serve", "`PATH` where the capable copy of roamtun goes, runnable only by group "+serve.LinkGroup+" (--far-end roamtun)")
	fs.BoolVar(&f.apply, "apply", false, "run the server's part here (as root) instead of printing it; print the laptop's part")
	fs.BoolVar(&f.asJSON, "json", false, "with --apply: print the laptop's part as one JSON object (user, name, remote_name, secrets, local, peer, dns, host_key, fingerprint); with --list: the pool as a JSON array")
	fs.BoolVar(&f.list, "list", false, "list the laptops set up here: fingerprint, peer address, CHAP name, key comment")
	fs.StringVar(&f.revoke, "revoke", "", "remove a laptop (`KEY_OR_FINGERPRINT`: SHA256:…, a public key file or line): its key line, its secrets, its address")
	fs.StringVar(&f.pool, "pool", serve.DefaultPoolFile, "the address pool `FILE` (root, 0600; locked while in use)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case f.list || f.revoke != "":
		if fs.NArg() != 0 || f.apply || (f.list && f.revoke != "") {
			return usagef("--list and --revoke take no PUBKEY_FILE and go with nothing but --pool (and --json)")
		}
		if f.list {
			return listPool(e, f.pool, f.asJSON)
		}
		return revokeLaptop(e, f.pool, f.revoke)
	case fs.NArg() != 1:
		return usagef("want exactly one PUBKEY_FILE (the laptop's public key; - for stdin)")
	case f.asJSON && !f.apply:
		return usagef("--json goes with --apply (or --list)")
	}
	var err error
	if s.PubKey, err = readPubKeyArg(e, fs.Arg(0)); err != nil {
		return err
	}
	if err := f.addresses(&s); err != nil {
		return err
	}
	// On the server itself the host key can be read; elsewhere the recipe
	// says where to find it.
	if k, err := serve.ReadPubKey(f.hostKey); err == nil {
		s.HostKeyPub = k
	}
	warnWrongMachine(e, s, f, flagSet(fs, "host"))
	if !f.apply {
		r, err := s.Recipe()
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(e.stdout, r)
		return err
	}
	return applyServerSetup(e, s, f, flagSet(fs, "peer"))
}

// addresses parses --from, --local, --peer and --dns into s.
func (f serverSetupFlags) addresses(s *serve.ServerSetup) error {
	var err error
	if f.from != "" {
		if s.From, err = netip.ParsePrefix(f.from); err != nil {
			return usagef("--from: not a CIDR: %q", f.from)
		}
	}
	for _, a := range []struct {
		flag string
		val  string
		dst  *netip.Addr
	}{{"--local", f.local, &s.Local}, {"--peer", f.peer, &s.Peer}, {"--dns", f.dns, &s.DNS}} {
		if a.val == "" {
			continue
		}
		if *a.dst, err = netip.ParseAddr(a.val); err != nil {
			return usagef("%s: not an IP address: %q", a.flag, a.val)
		}
	}
	return nil
}

// readPubKeyArg reads the laptop's key from a file, or stdin for "-" (how
// roamtun init hands it over ssh).
func readPubKeyArg(e *env, arg string) (string, error) {
	if arg != "-" {
		return serve.ReadPubKey(arg)
	}
	b, err := io.ReadAll(io.LimitReader(e.stdin, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading the public key from stdin: %w", err)
	}
	k, err := serve.ParsePubKey(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("the public key on stdin: %w", err)
	}
	return k, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// applyServerSetup runs the server's part here, under the pool's lock: the
// laptop gets the next free peer address (its own forced command carries
// it), its own CHAP name, and with --far-end pppd its own peers file.
func applyServerSetup(e *env, s serve.ServerSetup, f serverSetupFlags, peerGiven bool) error {
	pool, err := serve.OpenPool(f.pool)
	if err != nil {
		return err
	}
	defer pool.Close()
	fp, err := serve.Fingerprint(s.PubKey)
	if err != nil {
		return err
	}
	if i := pool.Find(fp); i >= 0 {
		return fmt.Errorf("the key %s is set up here already (peer %s, in %s): server-setup --revoke %s first to set it up again",
			fp, pool.Laptops[i].Peer, f.pool, fp)
	}
	want := netip.Addr{}
	if peerGiven {
		want = s.Peer
	}
	if s.Peer, err = pool.Allocate(s.Local, want); err != nil {
		return err
	}
	if s.ID, err = serve.KeyID(s.PubKey); err != nil {
		return err
	}
	s.ClientName = "laptop-" + s.ID
	if err := s.Prepare(); err != nil {
		return err
	}
	r, err := s.Recipe()
	if err != nil {
		return err
	}
	server, laptop := serve.Split(r)
	sh := exec.CommandContext(e.ctx, "/bin/sh", "-e", "-x")
	sh.Stdin = strings.NewReader(server)
	sh.Stdout, sh.Stderr = e.stderr, e.stderr
	if err := sh.Run(); err != nil {
		return fmt.Errorf("applying the server setup: %w (see the commands above)", err)
	}
	entry := serve.PoolEntry{Fingerprint: fp, Key: s.PubKey, Peer: s.Peer, Local: s.Local, User: s.User,
		FarEnd: s.FarEnd, ClientName: s.ClientName, ServerName: s.ServerName, Secrets: s.SecretsFile(),
		Added: time.Now().UTC().Truncate(time.Second)}
	if s.FarEnd == "pppd" {
		entry.PeersFile = s.PeersFile()
	}
	pool.Laptops = append(pool.Laptops, entry)
	if err := pool.Save(); err != nil {
		return err
	}
	if f.asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s.Laptop())
	}
	_, err = fmt.Fprint(e.stdout, "# The server is set up. Now:\n\n"+laptop)
	return err
}

var errNoSuchLaptop = errors.New("no such laptop in the address pool")
