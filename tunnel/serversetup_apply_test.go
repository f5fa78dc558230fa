package tunnel_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/lab"
)

// TestServerSetupApply runs `roamtun server-setup --apply` for real — useradd,
// authorized_keys, setcap, chap-secrets — inside a private mount namespace
// whose /etc is a copy and whose /home and /var/log are empty, so the host
// is left as it was.
func TestServerSetupApply(t *testing.T) {
	l := lab.NewT(t)
	for _, c := range []string{"unshare", "useradd", "setcap", "getcap", "setpriv"} {
		lab.RequireCommand(t, c)
	}
	bin := roamtun(t)
	dir := l.Dir()
	key := filepath.Join(dir, "laptop")
	if _, err := lab.Keygen(key, "laptop"); err != nil {
		t.Fatal(err)
	}
	setup := fmt.Sprintf("%s server-setup --apply --user rt-apply-test --far-end roamtun --roamtun %s/rt-serve "+
		"--serve-binary %s/libexec/roamtun-serve --from 10.200.1.0/24 --host vpn.example.net --host-key /dev/null %s.pub", bin, dir, dir, key)
	os.WriteFile(filepath.Join(dir, "cleanup.toml"), []byte("[daemon]\nstate_dir = \""+dir+"/state\"\n"), 0o644)
	script := fmt.Sprintf(`set -e
mount --make-rprivate /
mkdir %[1]s/etc
cp -a /etc/. %[1]s/etc/
mount --bind %[1]s/etc /etc
mount -t tmpfs tmpfs /home
mount -t tmpfs tmpfs /var/log
cp %[2]s %[1]s/rt-serve
%[3]s > %[1]s/laptop.txt 2> %[1]s/apply.log
if %[3]s > /dev/null 2>> %[1]s/apply.log; then echo "SECOND-RUN-ADDED-SECRETS"; fi
echo "uid=$(id -u rt-apply-test)"
echo "keymode=$(stat -c %%a ~rt-apply-test/.ssh/authorized_keys) owner=$(stat -c %%U ~rt-apply-test/.ssh/authorized_keys)"
cat ~rt-apply-test/.ssh/authorized_keys
echo "cap=$(getcap %[1]s/libexec/roamtun-serve) plain=$(getcap %[1]s/rt-serve)"
echo "serve-bin=$(stat -c '%%a %%U %%G' %[1]s/libexec/roamtun-serve) members=$(getent group roamtun-link | cut -d: -f4)"
# The link account may run the capable copy, but only as serve:
setpriv --reuid=rt-apply-test --regid=rt-apply-test --init-groups %[1]s/libexec/roamtun-serve cleanup --config %[1]s/cleanup.toml 2>&1 | sed 's/^/link-cleanup: /'
# Any other local user may not run it at all (through sh: setpriv itself execs with root's rights):
setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "exec %[1]s/libexec/roamtun-serve serve" 2>&1 | sed 's/^/other: /'

echo "secrets=$(stat -c '%%a %%U %%G' /etc/roamtun/chap-secrets) lines=$(grep -c '"' /etc/roamtun/chap-secrets)"
`, dir, bin, setup)
	out, err := exec.Command("unshare", "--mount", "sh", "-c", script).CombinedOutput()
	if err != nil {
		log, _ := exec.Command("cat", filepath.Join(dir, "apply.log")).Output()
		t.Fatalf("%v\n%s\napply log:\n%s", err, out, log)
	}
	got := string(out)
	for _, want := range []string{
		`restrict,from="10.200.1.0/24",command="` + dir + `/libexec/roamtun-serve serve --local 10.9.0.1 --peer 10.9.0.2`,
		"keymode=600 owner=rt-apply-test",
		"cap_net_admin=ep plain=\n",
		"serve-bin=750 root roamtun-link members=rt-apply-test",
		"link-cleanup: roamtun cleanup: refusing to run with capabilities",
		"other: sh: 1: exec: " + dir + "/libexec/roamtun-serve: Permission denied",
		"secrets=640 root rt-apply-test lines=2",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("after --apply, want %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "SECOND-RUN-ADDED-SECRETS") {
		t.Error("a second --apply added another pair of secrets")
	}
	laptop, _ := exec.Command("cat", filepath.Join(dir, "laptop.txt")).Output()
	if !strings.Contains(string(laptop), "/etc/roamtun/chap-secrets") || strings.Contains(string(laptop), "useradd") {
		t.Errorf("--apply should print only the laptop's part:\n%s", laptop)
	}
	if _, err := user.Lookup("rt-apply-test"); err == nil {
		t.Error("the account leaked into the host's /etc")
	}
}

// TestServerSetupHostileKey: a public key whose comment smuggles a second
// key line (a backslash sequence dash's echo would expand, or a newline)
// is refused by the real binary, naming the problem; and the recipe's own
// writes, run by dash, put exactly one line in authorized_keys even for a
// comment full of printf and echo escapes.
func TestServerSetupHostileKey(t *testing.T) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "dash")
	bin := roamtun(t)
	dir := l.Dir()
	key := filepath.Join(dir, "laptop")
	if _, err := lab.Keygen(key, "laptop"); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(key + ".pub")
	honest := strings.TrimSpace(string(pub))
	for name, line := range map[string]string{
		"backslash-n": honest + `\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvVPGn0HGJfZ1m0BMcFkJTmWVBCJ85PLeWJ1VBUqCh0 other`,
		"newline":     honest + "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvVPGn0HGJfZ1m0BMcFkJTmWVBCJ85PLeWJ1VBUqCh0 other",
	} {
		f := filepath.Join(dir, name+".pub")
		os.WriteFile(f, []byte(line+"\n"), 0o644)
		out, err := exec.Command(bin, "server-setup", "--far-end", "roamtun", f).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "public key") {
			t.Errorf("%s: %v\n%s\nwant refused, naming the public key", name, err, out)
		}
		if strings.Contains(string(out), "authorized_keys") {
			t.Errorf("%s: a recipe was printed:\n%s", name, out)
		}
	}
	// A comment with printf and echo escapes stays one literal line.
	odd := filepath.Join(dir, "odd.pub")
	os.WriteFile(odd, []byte(strings.Replace(honest, "laptop", "50%s%n%b-off", 1)+"\n"), 0o644)
	recipe, err := exec.Command(bin, "server-setup", "--far-end", "roamtun", odd).Output()
	if err != nil {
		t.Fatal(err)
	}
	var add string
	for _, line := range strings.Split(string(recipe), "\n") {
		if strings.Contains(line, ">> ~ppp-link/.ssh/authorized_keys") {
			add = strings.Replace(strings.TrimSpace(line), "~ppp-link/.ssh/authorized_keys", dir+"/ak", 1)
		}
	}
	if add == "" {
		t.Fatalf("no authorized_keys line in:\n%s", recipe)
	}
	if out, err := exec.Command("dash", "-c", add).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", add, err, out)
	}
	ak, _ := os.ReadFile(filepath.Join(dir, "ak"))
	if lines := strings.Split(strings.TrimSuffix(string(ak), "\n"), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "restrict,command=") || !strings.HasSuffix(lines[0], "50%s%n%b-off") {
		t.Errorf("authorized_keys after the recipe's own write:\n%s", ak)
	}
}
