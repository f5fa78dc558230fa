package main

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/roamtun/roamtun/tunnel"
)

var serverSetupCmd = &command{
	name:  "server-setup",
	usage: "[--user NAME] [--from CIDR] [--far-end pppd|roamtun] [--apply] [--local IP --peer IP --dns IP] [--host NAME --port N] [--roamtun PATH] [--serve-binary PATH] PUBKEY_FILE",
	help:  "print (or with --apply, perform) what the server needs: account, restricted key, CHAP secrets, rights, host key to pin",
}

func init() {
	serverSetupCmd.run = runServerSetup
	register(serverSetupCmd)
}

func runServerSetup(e *env, args []string) error {
	fs, _ := newFlags(e, serverSetupCmd)
	s := tunnel.ServerSetup{}
	fs.StringVar(&s.User, "user", "ppp-link", "the dedicated account (`NAME`) on the server")
	from := fs.String("from", "", "accept the key only from this `CIDR` (authorized_keys from=)")
	fs.StringVar(&s.FarEnd, "far-end", "pppd", "what runs on the server: `pppd|roamtun`")
	local := fs.String("local", "10.9.0.1", "the server's address (`IP`) on the link")
	peer := fs.String("peer", "10.9.0.2", "the laptop's address (`IP`) on the link")
	dns := fs.String("dns", "", "DNS server (`IP`) to offer (default: --local)")
	fs.StringVar(&s.Host, "host", "", "the server's `NAME` as the laptop dials it")
	fs.IntVar(&s.Port, "port", 22, "the server's ssh port")
	hostKey := fs.String("host-key", "/etc/ssh/ssh_host_ed25519_key.pub", "the server's host key `FILE`, to pin on the laptop")
	fs.StringVar(&s.Roamtun, "roamtun", "/usr/bin/roamtun", "`PATH` where roamtun is installed on the server (--far-end roamtun)")
	fs.StringVar(&s.ServeBinary, "serve-binary", "/usr/lib/roamtun/roamtun-serve", "`PATH` where the capable copy of roamtun goes, runnable only by group "+tunnel.LinkGroup+" (--far-end roamtun)")
	apply := fs.Bool("apply", false, "run the server's part here (as root) instead of printing it; print the laptop's part")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one PUBKEY_FILE (the laptop's public key)")
	}
	var err error
	if s.PubKey, err = tunnel.ReadPubKey(fs.Arg(0)); err != nil {
		return err
	}
	if *from != "" {
		if s.From, err = netip.ParsePrefix(*from); err != nil {
			return usagef("--from: not a CIDR: %q", *from)
		}
	}
	for _, a := range []struct {
		flag string
		val  string
		dst  *netip.Addr
	}{{"--local", *local, &s.Local}, {"--peer", *peer, &s.Peer}, {"--dns", *dns, &s.DNS}} {
		if a.val == "" {
			continue
		}
		if *a.dst, err = netip.ParseAddr(a.val); err != nil {
			return usagef("%s: not an IP address: %q", a.flag, a.val)
		}
	}
	// On the server itself the host key can be read; elsewhere the recipe
	// says where to find it.
	if k, err := tunnel.ReadPubKey(*hostKey); err == nil {
		s.HostKeyPub = k
	}
	r, err := s.Recipe()
	if err != nil {
		return err
	}
	if !*apply {
		_, err = fmt.Fprint(e.stdout, r)
		return err
	}
	server, laptop := tunnel.Split(r)
	sh := exec.CommandContext(e.ctx, "/bin/sh", "-e", "-x")
	sh.Stdin = strings.NewReader(server)
	sh.Stdout, sh.Stderr = e.stderr, e.stderr
	if err := sh.Run(); err != nil {
		return fmt.Errorf("applying the server setup: %w (see the commands above)", err)
	}
	_, err = fmt.Fprint(e.stdout, "# The server is set up. Now:\n\n"+laptop)
	return err
}
