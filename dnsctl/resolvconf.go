package dnsctl

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// recordSuffix names roamtun's record: resolvconf orders records by
// interface name patterns, and ".roamtun" says who added it.
const recordSuffix = ".roamtun"

func prepareResolvconf(ctx context.Context, o Options, c *Change) error {
	bin, err := o.resolvconfBin()
	if err != nil {
		return fmt.Errorf("dns: resolvconf: %w", err)
	}
	c.Record = c.Link + recordSuffix
	// openresolv knows --version and -x (exclusive: only our servers are
	// used); Debian's resolvconf has neither and orders tun* first itself.
	out, _ := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	c.Openresolv = bytes.Contains(bytes.ToLower(out), []byte("openresolv"))
	return nil
}

func resolvconfRecord(c Change) string {
	var b strings.Builder
	for _, s := range c.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(c.Domains) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(c.Domains, " "))
	}
	return b.String()
}

func applyResolvconf(ctx context.Context, o Options, c Change) error {
	bin, err := o.resolvconfBin()
	if err != nil {
		return fmt.Errorf("dns: resolvconf: %w", err)
	}
	args := []string{"-a", c.Record}
	if c.Openresolv {
		args = []string{"-x", "-a", c.Record}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(resolvconfRecord(c))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dns: resolvconf %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func revertResolvconf(ctx context.Context, o Options, c Change) error {
	bin, err := o.resolvconfBin()
	if err != nil {
		return fmt.Errorf("dns: resolvconf: %w", err)
	}
	// -f: a record that is already gone is not an error.
	if out, err := exec.CommandContext(ctx, bin, "-f", "-d", c.Record).CombinedOutput(); err != nil {
		return fmt.Errorf("dns: resolvconf -d %s: %v: %s", c.Record, err, strings.TrimSpace(string(out)))
	}
	return nil
}
