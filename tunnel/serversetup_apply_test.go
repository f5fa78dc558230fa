package tunnel_test

import (
	"fmt"
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
	for _, c := range []string{"unshare", "useradd", "setcap", "getcap"} {
		lab.RequireCommand(t, c)
	}
	bin := roamtun(t)
	dir := l.Dir()
	key := filepath.Join(dir, "laptop")
	if _, err := lab.Keygen(key, "laptop"); err != nil {
		t.Fatal(err)
	}
	setup := fmt.Sprintf("%s server-setup --apply --user rt-apply-test --far-end roamtun --roamtun %s/rt-serve "+
		"--from 10.200.1.0/24 --host vpn.example.net --host-key /dev/null %s.pub", bin, dir, key)
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
echo "cap=$(getcap %[1]s/rt-serve)"
echo "secrets=$(stat -c '%%a %%U %%G' /etc/roamtun/chap-secrets) lines=$(grep -c '"' /etc/roamtun/chap-secrets)"
`, dir, bin, setup)
	out, err := exec.Command("unshare", "--mount", "sh", "-c", script).CombinedOutput()
	if err != nil {
		log, _ := exec.Command("cat", filepath.Join(dir, "apply.log")).Output()
		t.Fatalf("%v\n%s\napply log:\n%s", err, out, log)
	}
	got := string(out)
	for _, want := range []string{
		`restrict,from="10.200.1.0/24",command="` + dir + `/rt-serve serve --local 10.9.0.1 --peer 10.9.0.2`,
		"keymode=600 owner=rt-apply-test",
		"cap_net_admin=ep",
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
