package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// repo is the repository's root, from this package's folder.
const repo = "../.."

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestCopyrightNamesEveryModule: debian/copyright covers every module linked
// into the binary, so a new dependency cannot ship without its licence.
func TestCopyrightNamesEveryModule(t *testing.T) {
	out := run(t, repo, []string{"CGO_ENABLED=0", "GOOS=linux"},
		"go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}", "./cmd/roamtun")
	copyright, err := os.ReadFile(filepath.Join(repo, "dist/debian/copyright"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range strings.Fields(out) {
		if seen[m] {
			continue
		}
		seen[m] = true
		if !regexp.MustCompile(`(?m)^(Files:)?[ \t].*\b` + regexp.QuoteMeta(m) + `(\s|$)`).Match(copyright) {
			t.Errorf("dist/debian/copyright has no Files: paragraph for %s (linked into roamtun)", m)
		}
	}
	if len(seen) == 0 {
		t.Fatal("go list found no modules")
	}
}

// TestScriptsParse: the maintainer scripts and helpers are valid POSIX sh
// (dash, Debian's /bin/sh, when it is there).
func TestScriptsParse(t *testing.T) {
	shell := "sh"
	if p, err := exec.LookPath("dash"); err == nil {
		shell = p
	}
	for _, f := range []string{"dist/debian/postinst", "dist/debian/prerm", "dist/debian/postrm",
		"dist/debian/build-deb.sh", "dist/version.sh",
		"internal/packaging/testdata/throwaway.sh", "internal/packaging/testdata/inside.sh"} {
		run(t, repo, nil, shell, "-n", f)
	}
	for _, f := range []string{"postinst", "prerm", "postrm"} {
		st, err := os.Stat(filepath.Join(repo, "dist/debian", f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o111 == 0 {
			t.Errorf("dist/debian/%s is not executable", f)
		}
	}
}

// TestHasProfile: postinst starts the daemon only when the configuration
// defines a profile; the installed configuration defines none, the full
// example does.
func TestHasProfile(t *testing.T) {
	postinst, err := os.ReadFile(filepath.Join(repo, "dist/debian/postinst"))
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?ms)^has_profile\(\) \{.*?^\}`).Find(postinst)
	if fn == nil {
		t.Fatal("no has_profile() in dist/debian/postinst")
	}
	abs := func(p string) string { a, _ := filepath.Abs(filepath.Join(repo, p)); return a }
	dir := t.TempDir()
	cases := []struct {
		name string
		file string // a file in the repository, or the text below
		text string
		want bool
	}{
		{name: "installed config", file: abs("dist/etc/roamtun/default.toml"), want: false},
		{name: "full example", file: abs("dist/etc/roamtun/roamtun.toml"), want: true},
		{name: "table", text: "[daemon]\n[profile.home]\nhost = \"x\"\n", want: true},
		{name: "spaced, quoted", text: "  [ \"profile\" . \"my home\" ]\n", want: true},
		{name: "dotted keys", text: "profile.home.host = \"x\"\n", want: true},
		{name: "commented out", text: "[daemon]\n# [profile.home]\n#profile.home.host = \"x\"\n", want: false},
		{name: "other table", text: "[profiles]\n[daemon]\npolicy_dir = \"/x\"\n", want: false},
		{name: "missing file", file: filepath.Join(dir, "absent.toml"), want: false},
	}
	for i, c := range cases {
		path := c.file
		if path == "" {
			path = filepath.Join(dir, strings.Repeat("x", i+1)+".toml")
			os.WriteFile(path, []byte(c.text), 0o644)
		}
		err := exec.Command("sh", "-c", string(fn)+"\nCONF=\"$1\"; has_profile", "sh", path).Run()
		if got := err == nil; got != c.want {
			t.Errorf("%s: has_profile = %v, want %v (%v)", c.name, got, c.want, err)
		}
	}
}

// TestMakeInstall: `make install` with DESTDIR and PREFIX puts everything
// under PREFIX, rewrites the units' paths, and keeps an existing config.
func TestMakeInstall(t *testing.T) {
	lab.RequireCommand(t, "make")
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "root")
	args := []string{"--no-print-directory", "install", "DESTDIR=" + dest, "PREFIX=/usr/local",
		"BIN=" + filepath.Join(tmp, "roamtun"), "VERSION=1.2.3~test"}
	run(t, repo, nil, "make", args...)
	for _, p := range []string{"usr/local/bin/roamtun", "usr/local/lib/systemd/system/roamtun.service",
		"usr/local/lib/systemd/user/roamtun-notify.service", "usr/local/lib/tmpfiles.d/roamtun.conf",
		"usr/local/lib/sysusers.d/roamtun.conf", "usr/local/share/man/man1/roamtun.1",
		"usr/local/share/doc/roamtun/examples/roamtun.toml", "etc/roamtun/roamtun.toml",
		"etc/roamtun/networks.d", "etc/roamtun/hooks.d", "etc/xdg/autostart/roamtun-notify.desktop",
		"usr/local/share/bash-completion/completions/roamtun", "usr/local/share/zsh/vendor-completions/_roamtun",
		"usr/local/share/fish/vendor_completions.d/roamtun.fish"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	for file, want := range map[string]string{
		"usr/local/lib/systemd/system/roamtun.service":      "ExecStart=/usr/local/bin/roamtun daemon",
		"usr/local/lib/systemd/user/roamtun-notify.service": "ExecStart=/usr/local/bin/roamtun notify",
		"etc/xdg/autostart/roamtun-notify.desktop":          "Exec=/usr/local/bin/roamtun notify",
	} {
		b, _ := os.ReadFile(filepath.Join(dest, file))
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s: no %q", file, want)
		}
		if bytes.Contains(b, []byte("/usr/bin/roamtun")) {
			t.Errorf("%s still names /usr/bin/roamtun", file)
		}
	}
	out := run(t, dest, nil, filepath.Join(dest, "usr/local/bin/roamtun"), "version")
	if !strings.HasPrefix(out, "roamtun 1.2.3~test\n") {
		t.Errorf("roamtun version: %q", out)
	}
	// A second install keeps the admin's configuration.
	conf := filepath.Join(dest, "etc/roamtun/roamtun.toml")
	os.WriteFile(conf, []byte("# mine\n"), 0o644)
	run(t, repo, nil, "make", args...)
	if b, _ := os.ReadFile(conf); string(b) != "# mine\n" {
		t.Errorf("make install overwrote %s", conf)
	}
	run(t, repo, nil, "make", "--no-print-directory", "uninstall", "DESTDIR="+dest, "PREFIX=/usr/local")
	if _, err := os.Stat(filepath.Join(dest, "usr/local/bin/roamtun")); err == nil {
		t.Error("make uninstall left the binary")
	}
}

// hostState is what the package would change on the host if it escaped the
// throwaway root. Not /var/lib/roamtun and /run/roamtun themselves: any
// roamtun run with the default configuration makes them (other tests may,
// meanwhile); the package's own file in there is checked.
func hostState(t *testing.T) string {
	var b strings.Builder
	for _, p := range []string{"/usr/bin/roamtun", "/etc/roamtun", "/var/lib/roamtun/.group-created-by-package",
		"/usr/lib/systemd/system/roamtun.service", "/usr/lib/systemd/user/roamtun-notify.service",
		"/usr/lib/sysusers.d/roamtun.conf", "/usr/lib/tmpfiles.d/roamtun.conf",
		"/etc/xdg/autostart/roamtun-notify.desktop", "/usr/share/doc/roamtun",
		"/etc/systemd/system/multi-user.target.wants/roamtun.service",
		"/etc/systemd/user/graphical-session.target.wants/roamtun-notify.service",
		"/var/lib/dpkg/info/roamtun.list"} {
		_, err := os.Lstat(p)
		b.WriteString(p + ": " + map[bool]string{true: "present", false: "absent"}[err == nil] + "\n")
	}
	for _, f := range []string{"/etc/group", "/etc/gshadow"} {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "roamtun:") {
				b.WriteString(f + ": " + line + "\n")
			}
		}
	}
	st, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "roamtun").Output()
	b.WriteString("dpkg: " + strings.TrimSpace(string(st)) + "\n")
	return b.String()
}

// TestDebPackage: `make deb`, lintian with no error or warning, then
// install, upgrade, remove and purge in a throwaway root (inside.sh checks
// each step), nothing of roamtun's left in it, and the host untouched.
func TestDebPackage(t *testing.T) {
	lab.RequirePrivileged(t)
	for _, c := range []string{"make", "dpkg-deb", "lintian", "unshare", "chroot", "systemd-analyze"} {
		lab.RequireCommand(t, c)
	}
	before := hostState(t)
	tmp := t.TempDir()

	start := time.Now()
	version := strings.TrimSpace(run(t, repo, nil, "sh", "dist/version.sh"))
	run(t, repo, nil, "make", "--no-print-directory", "deb", "DEBDIR="+tmp,
		"BIN="+filepath.Join(tmp, "roamtun"), "VERSION="+version)
	debs, _ := filepath.Glob(filepath.Join(tmp, "roamtun_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %v", debs)
	}
	deb := debs[0]
	if want := "roamtun_" + version + "_"; !strings.HasPrefix(filepath.Base(deb), want) {
		t.Errorf("package file %s, want %s<arch>.deb", filepath.Base(deb), want)
	}
	t.Logf("make deb: %s in %v", filepath.Base(deb), time.Since(start).Round(time.Millisecond))

	// The binary stamps the version, and the commit when built from a clone.
	out := run(t, repo, nil, filepath.Join(tmp, "roamtun"), "version")
	if !strings.HasPrefix(out, "roamtun "+version+"\n") {
		t.Errorf("roamtun version: %q", out)
	}
	if st, err := os.Stat(filepath.Join(repo, ".git")); err == nil && st.IsDir() && !strings.Contains(version, "dirty") {
		head := strings.TrimSpace(run(t, repo, nil, "git", "rev-parse", "HEAD"))
		if !strings.Contains(out, "commit  "+head+" ") {
			t.Errorf("roamtun version does not name commit %s:\n%s", head, out)
		}
	}

	start = time.Now()
	lint := exec.Command("lintian", "--fail-on", "error,warning", "--display-info", deb)
	lintOut, err := lint.CombinedOutput()
	t.Logf("lintian (%v):\n%s", time.Since(start).Round(time.Millisecond), lintOut)
	if err != nil {
		t.Errorf("lintian: %v", err)
	}

	start = time.Now()
	ovl := filepath.Join(tmp, "overlay")
	if err := os.Mkdir(ovl, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private",
		"sh", "testdata/throwaway.sh", ovl, deb, version)
	throwOut, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("in the throwaway root: %v\n%s", err, throwOut)
	} else {
		t.Logf("install, upgrade, remove, purge in a throwaway root: %v", time.Since(start).Round(time.Millisecond))
	}
	if !bytes.Contains(throwOut, []byte("ok: nothing left")) && err == nil {
		t.Errorf("throwaway.sh did not finish:\n%s", throwOut)
	}

	if after := hostState(t); after != before {
		t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
