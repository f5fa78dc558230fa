package dnsctl

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// recordSuffix names roamtun's record ("roamtun0.roamtun"): resolvconf
// records are IFACE.PROG, and ".roamtun" says who added it.
const recordSuffix = ".roamtun"

// Implementations of resolvconf(8), as told by `resolvconf --version`.
const (
	implOpenresolv = "openresolv" // Roy Marples' (Debian's openresolv package, Arch, Alpine, the BSDs)
	implSystemd    = "systemd"    // resolvectl's compatibility mode, a link named resolvconf
	implDebian     = "debian"     // Debian's resolvconf package (no --version)
)

// debianInterfaceOrder is where Debian's resolvconf reads which records come
// first in resolv.conf.
var debianInterfaceOrder = "/etc/resolvconf/interface-order"

func implementation(versionOutput []byte) string {
	v := bytes.ToLower(versionOutput)
	switch {
	case bytes.Contains(v, []byte("openresolv")):
		return implOpenresolv
	case bytes.Contains(v, []byte("systemd")):
		return implSystemd
	}
	return implDebian
}

func prepareResolvconf(ctx context.Context, o Options, c *Change) error {
	bin, err := o.resolvconfBin()
	if err != nil {
		return fmt.Errorf("dns: resolvconf: %w", err)
	}
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	// Debian's resolvconf knows no --version and fails: that tells it apart.
	out, _ := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	c.Implementation = implementation(out)
	c.Record = c.Link + recordSuffix
	if c.Implementation == implDebian {
		// It has no exclusive mode and orders records by the patterns in
		// interface-order (then keeps three servers): put ours under the
		// first tunnel pattern, as wg-quick does, so they come first.
		c.Record = debianPrefix(debianInterfaceOrder) + c.Record
	}
	o.log().Debug("resolvconf", "path", bin, "implementation", c.Implementation, "record", c.Record)
	return nil
}

var prefixPattern = regexp.MustCompile(`^([A-Za-z0-9-]+)\*$`)

// debianPrefix is wg-quick's resolvconf_iface_prefix: the first plain
// "NAME*" line of interface-order (on Debian, "tun*") gives "NAME.".
func debianPrefix(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := prefixPattern.FindStringSubmatch(strings.TrimSpace(s.Text())); m != nil {
			return m[1] + "."
		}
	}
	return ""
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

func checkRecord(c Change) error {
	if c.Record == "" || strings.ContainsAny(c.Record, "/ \t\r\n") || strings.HasPrefix(c.Record, "-") {
		return fmt.Errorf("dns change: record %q is not a resolvconf record name", c.Record)
	}
	return nil
}

// applyResolvconf adds our record. The arguments are wg-quick's, which every
// implementation takes: the command and record first, options after.
// openresolv: -m 0 puts ours first, -x (exclusive) makes ours the only
// servers in resolv.conf while the record exists. systemd's resolvconf
// ignores -m and turns -x into the "~." routing domain. Debian's ignores
// what follows the record.
func applyResolvconf(ctx context.Context, o Options, c Change) error {
	if err := checkRecord(c); err != nil {
		return err
	}
	return runResolvconf(ctx, o, resolvconfRecord(c), "-a", c.Record, "-m", "0", "-x")
}

// revertResolvconf deletes our record; -f makes a record that is already
// gone no error (openresolv, systemd; Debian's takes -f after the record).
func revertResolvconf(ctx context.Context, o Options, c Change) error {
	if err := checkRecord(c); err != nil {
		return err
	}
	return runResolvconf(ctx, o, "", "-d", c.Record, "-f")
}

func runResolvconf(ctx context.Context, o Options, stdin string, args ...string) error {
	bin, err := o.resolvconfBin()
	if err != nil {
		return fmt.Errorf("dns: resolvconf: %w", err)
	}
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("dns: %s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	o.log().Debug("resolvconf", "args", args)
	return nil
}
