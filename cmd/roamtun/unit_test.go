package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/lab"
)

const unitFile = "../../dist/systemd/roamtun.service"

// maxExposure is what `systemd-analyze security` may rate the unit at most.
const maxExposure = 3.5

// installedUnit is the unit as `make install` writes it, its binary pointing
// at an executable that exists (verify checks that), in a directory of its
// own so that the unit's name stays roamtun.service.
func installedUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "roamtun.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/bin/roamtun", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnitVerifies(t *testing.T) {
	sa := lab.RequireCommand(t, "systemd-analyze")
	out, err := exec.Command(sa, "verify", installedUnit(t)).CombinedOutput()
	if err != nil || strings.Contains(string(out), "roamtun") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for roamtun\.service: ([0-9.]+)`)

func TestUnitExposure(t *testing.T) {
	sa := lab.RequireCommand(t, "systemd-analyze")
	out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager", installedUnit(t)).CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v, no exposure level in\n%s", err, out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure %.1f", level)
	if level > maxExposure {
		t.Errorf("exposure %.1f > %.1f:\n%s", level, maxExposure, out)
	}
}

// unitList reads the space-separated values of key in a unit file's
// [Unit] section (all its lines).
func unitList(t *testing.T, path, key string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vals []string
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "[") {
			section = l
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok && section == "[Unit]" && k == key {
			vals = append(vals, strings.Fields(v)...)
		}
	}
	return vals
}

// TestUnitOrdering: the daemon (and its standby firewall) is up before
// network-pre.target, which NetworkManager waits for — with no ordering
// back to NetworkManager, which would be a cycle (verify does not see
// those).
func TestUnitOrdering(t *testing.T) {
	if !slices.Contains(unitList(t, unitFile, "Before"), "network-pre.target") ||
		!slices.Contains(unitList(t, unitFile, "Wants"), "network-pre.target") {
		t.Error("roamtun.service: want Before= and Wants=network-pre.target")
	}
	after := unitList(t, unitFile, "After")
	for _, u := range []string{"NetworkManager.service", "systemd-networkd.service", "networking.service", "network-pre.target", "network.target"} {
		if slices.Contains(after, u) {
			t.Errorf("roamtun.service is After=%s: an ordering cycle through network-pre.target", u)
		}
	}
	nm := "/lib/systemd/system/NetworkManager.service"
	if _, err := os.Stat(nm); err != nil {
		t.Skip("NetworkManager not installed")
	}
	if !slices.Contains(unitList(t, nm, "After"), "network-pre.target") {
		t.Errorf("%s is not After=network-pre.target: the standby firewall may come too late", nm)
	}
}
