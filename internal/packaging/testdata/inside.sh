#!/bin/sh
# inside.sh VERSION — runs chrooted in the throwaway root (see throwaway.sh):
# install, reinstall (an upgrade), remove and purge the package, checking
# every step, with systemd "running" as far as the maintainer scripts can
# tell (/run/systemd/system and a systemctl that only logs).
set -eu
VERSION=$1
DEB=/tmp/roamtun.deb
LOG=/tmp/systemctl.log

fail() { echo "FAIL: $*"; exit 1; }
step() { echo "== $*"; }
exists() { for p; do [ -e "$p" ] || fail "$p is missing"; done; }
absent() { for p; do [ ! -e "$p" ] && [ ! -L "$p" ] || fail "$p is still there"; done; }
logged() { grep -qx -- "$1" "$LOG" || { cat "$LOG"; fail "systemctl was not called: $1"; }; }
not_logged() { ! grep -q -- "$1" "$LOG" || { cat "$LOG"; fail "systemctl was called: $1"; }; }
status() { dpkg-query -W -f='${db:Status-Abbrev}' roamtun 2>/dev/null | tr -d ' ' || true; }

# The host says no to starting services (policy-rc.d, for the CI); here we
# want to see what the maintainer scripts ask for, so: no policy, a
# systemd that seems to run, and a systemctl in front of the real one that
# logs its arguments and only pretends to start, stop and reload.
rm -f /usr/sbin/policy-rc.d
mkdir -p /run/systemd/system /usr/local/sbin
cat >/usr/local/sbin/systemctl <<'FAKE'
#!/bin/sh
# Logs every call; fakes what needs a running systemd, hands the rest
# (preset, enable, is-enabled: files only) to the real one, offline.
echo "$*" >>/tmp/systemctl.log
for a; do
	case "$a" in
	daemon-reload|start|stop|restart|try-restart|reload) exit 0 ;;
	is-active) exit 3 ;;
	esac
done
exec /usr/bin/systemctl --root=/ "$@"
FAKE
chmod 755 /usr/local/sbin/systemctl
: >"$LOG"
# man-db's trigger would rebuild the whole index at each step (seconds).
rm -f /var/lib/man-db/auto-update

getent group roamtun >/dev/null && fail "the group roamtun exists before the install"
absent /usr/bin/roamtun /etc/roamtun

step "install"
dpkg -i "$DEB"
[ "$(status)" = ii ] || fail "status after install: $(status)"
exists /usr/bin/roamtun /usr/lib/systemd/system/roamtun.service \
	/usr/lib/systemd/user/roamtun-notify.service /usr/lib/tmpfiles.d/roamtun.conf \
	/usr/lib/sysusers.d/roamtun.conf /etc/roamtun/roamtun.toml /etc/roamtun/networks.d \
	/etc/roamtun/hooks.d /etc/xdg/autostart/roamtun-notify.desktop \
	/usr/share/man/man1/roamtun.1.gz /usr/share/doc/roamtun/copyright \
	/usr/share/doc/roamtun/changelog.gz /usr/share/doc/roamtun/examples/roamtun.toml \
	/usr/share/doc/roamtun/examples/networks.d/10-home.toml
getent group roamtun >/dev/null || fail "no group roamtun after install"
[ "$(stat -c %a /var/lib/roamtun)" = 700 ] || fail "/var/lib/roamtun: mode $(stat -c %a /var/lib/roamtun)"
exists /run/roamtun
# Enabled (deb-systemd-helper's links), but not started: no profile yet.
exists /etc/systemd/system/multi-user.target.wants/roamtun.service \
	/etc/systemd/user/graphical-session.target.wants/roamtun-notify.service
logged "--system daemon-reload"
not_logged "start"
grep -q 'ExecStart=/usr/bin/roamtun daemon' /usr/lib/systemd/system/roamtun.service ||
	fail "ExecStart is not /usr/bin/roamtun"
grep -q '^Exec=/usr/bin/roamtun notify' /etc/xdg/autostart/roamtun-notify.desktop ||
	fail "the autostart entry does not run /usr/bin/roamtun"
grep -q '^/etc/roamtun/roamtun.toml$' /var/lib/dpkg/info/roamtun.conffiles ||
	fail "roamtun.toml is not a conffile"

step "roamtun version"
out=$(roamtun version)
echo "$out"
echo "$out" | head -1 | grep -qxF "roamtun $VERSION" || fail "roamtun version says: $out"
echo "$out" | grep -q '^module  github.com/roamtun/roamtun' || fail "no module line"

step "roamtun check of the installed configuration"
roamtun check || fail "the installed configuration does not check"
roamtun check | grep -q '^OK: 0 profile(s)' || fail "the installed configuration defines a profile"

step "systemd-analyze verify"
systemd-analyze verify /usr/lib/systemd/system/roamtun.service
mkdir -p -m 0700 /run/user/0
XDG_RUNTIME_DIR=/run/user/0 systemd-analyze --user verify /usr/lib/systemd/user/roamtun-notify.service
systemd-tmpfiles --create roamtun.conf
if command -v desktop-file-validate >/dev/null; then
	desktop-file-validate /etc/xdg/autostart/roamtun-notify.desktop
fi

step "upgrade, a profile configured: restarted"
cat >>/etc/roamtun/roamtun.toml <<'CONF'

[profile.home]
host          = "vpn.example.net"
user          = "ppp-link"
identity_file = "/etc/roamtun/id_ed25519"
known_hosts   = "/etc/roamtun/known_hosts"
name          = "client"
remote_name   = "server"
secrets       = "/etc/roamtun/chap-secrets"
CONF
: >"$LOG"
dpkg -i --force-confold "$DEB"
[ "$(status)" = ii ] || fail "status after upgrade: $(status)"
logged "--quiet --system restart roamtun.service"
grep -q '^\[profile.home\]' /etc/roamtun/roamtun.toml || fail "the upgrade lost the admin's profile"

step "remove: stopped, configuration kept"
: >"$LOG"
dpkg -r roamtun
[ "$(status)" = rc ] || fail "status after remove: $(status)"
logged "stop roamtun.service"
absent /usr/bin/roamtun /usr/lib/systemd/system/roamtun.service
exists /etc/roamtun/roamtun.toml
getent group roamtun >/dev/null || fail "remove (not purge) took the group"

step "purge: nothing left"
dpkg --purge roamtun
[ -z "$(status)" ] || [ "$(status)" = un ] || [ "$(status)" = pn ] || fail "status after purge: $(status)"
absent /etc/roamtun /var/lib/roamtun /run/roamtun /etc/xdg/autostart/roamtun-notify.desktop \
	/etc/systemd/system/multi-user.target.wants/roamtun.service \
	/etc/systemd/user/graphical-session.target.wants/roamtun-notify.service \
	/usr/share/doc/roamtun /var/lib/systemd/deb-systemd-helper-enabled/roamtun.service.dsh-also \
	/var/lib/systemd/deb-systemd-user-helper-enabled/roamtun-notify.service.dsh-also
! getent group roamtun >/dev/null || fail "purge left the group roamtun"

step "a group roamtun the admin made survives a purge"
groupadd --system roamtun
dpkg -i "$DEB" >/dev/null
dpkg --purge roamtun >/dev/null
getent group roamtun >/dev/null || fail "purge removed a group the package did not create"
groupdel roamtun

echo "ok: install, upgrade, remove, purge"
