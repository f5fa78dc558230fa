package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roamtun/roamtun/internal/serve"
)

// listPool prints the laptops set up on this server.
func listPool(e *env, path string, asJSON bool) error {
	pool, err := serve.OpenPool(path)
	if err != nil {
		return err
	}
	defer pool.Close()
	if asJSON {
		type laptop struct {
			serve.PoolEntry
			Comment string `json:"comment"`
		}
		out := make([]laptop, 0, len(pool.Laptops))
		for _, l := range pool.Laptops {
			out = append(out, laptop{l, l.Comment()})
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(pool.Laptops) == 0 {
		fmt.Fprintf(e.stdout, "no laptops set up (%s)\n", path)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tPEER\tNAME\tUSER\tCOMMENT")
	for _, l := range pool.Laptops {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Fingerprint, l.Peer, l.ClientName, l.User, l.Comment())
	}
	return tw.Flush()
}

// revokeLaptop removes one laptop: its key line, secrets, peers file and
// address. what is a fingerprint, a public key file or a key line.
func revokeLaptop(e *env, path, what string) error {
	key := what
	if !strings.HasPrefix(what, "SHA256:") {
		if _, err := os.Stat(what); err == nil {
			k, err := serve.ReadPubKey(what)
			if err != nil {
				return err
			}
			key = k
		}
	}
	pool, err := serve.OpenPool(path)
	if err != nil {
		return err
	}
	defer pool.Close()
	i := pool.Find(key)
	if i < 0 {
		return fmt.Errorf("--revoke %s: %w (%s; server-setup --list shows them)", what, errNoSuchLaptop, path)
	}
	l := pool.Laptops[i]
	if err := serve.Revoke(l); err != nil {
		return err
	}
	pool.Laptops = append(pool.Laptops[:i], pool.Laptops[i+1:]...)
	if err := pool.Save(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %s (%s, peer %s): key line, secrets and address removed\n", l.Fingerprint, l.ClientName, l.Peer)
	return nil
}

// warnWrongMachine says so when the host key server-setup would hand the
// laptop to pin is most likely not the key of the server the laptop dials
// (server-setup run on the laptop, say). With --expect-host-key (roamtun
// init passes the key it connected to) the two are compared; otherwise,
// with --host, a name none of whose addresses is on this machine is
// suspect (a server behind NAT is the innocent case).
func warnWrongMachine(e *env, s serve.ServerSetup, f serverSetupFlags, hostGiven bool) {
	if s.HostKeyPub == "" {
		return
	}
	here, err := serve.Fingerprint(s.HostKeyPub)
	if err != nil {
		return
	}
	if f.expectHostKey != "" {
		if here != f.expectHostKey {
			fmt.Fprintf(e.stderr, "roamtun server-setup: warning: the host key here (%s, %s) is not the one the laptop connected to (%s): "+
				"this is not the machine the laptop dials (or it has several host keys); the laptop must pin %s\n",
				f.hostKey, here, f.expectHostKey, f.expectHostKey)
		}
		return
	}
	if !hostGiven {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", s.Host)
	if err != nil || len(addrs) == 0 {
		return
	}
	local := localAddrs()
	for _, a := range addrs {
		if local[a.Unmap()] || a.IsLoopback() {
			return
		}
	}
	fmt.Fprintf(e.stderr, "roamtun server-setup: warning: --host %s is %s, not an address of this machine: "+
		"if this is not %s, the host key read here (%s, %s) is this machine's and the laptop must not pin it "+
		"(a server behind NAT is fine)\n", s.Host, addrs[0].Unmap(), s.Host, f.hostKey, here)
}

func localAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	ifas, _ := net.InterfaceAddrs()
	for _, a := range ifas {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out[p.Addr().Unmap()] = true
		}
	}
	return out
}
