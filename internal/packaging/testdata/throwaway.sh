#!/bin/sh
# throwaway.sh DIR DEB VERSION — run by packaging_test.go under
# `unshare --mount --propagation private`: an overlay of / (writes go to a
# tmpfs in DIR, gone with this mount namespace), with fresh /proc, /run and
# /tmp and the host's /dev and /sys; inside.sh runs there chrooted.
set -eu
DIR=$1 DEB=$2 VERSION=$3
here=$(cd "$(dirname "$0")" && pwd)

mount -t tmpfs -o mode=0755 rtpkg "$DIR"
mkdir "$DIR/upper" "$DIR/work" "$DIR/root"
mount -t overlay rtpkg -o "lowerdir=/,upperdir=$DIR/upper,workdir=$DIR/work" "$DIR/root"
R=$DIR/root
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=0755 rtrun "$R/run"
mount -t tmpfs -o mode=1777 rttmp "$R/tmp"

cp "$DEB" "$R/tmp/roamtun.deb"
cp "$here/inside.sh" "$R/tmp/inside.sh"
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	chroot "$R" /bin/sh -eu ${INSIDE:-/tmp/inside.sh} "$VERSION"

# What the whole run left in the throwaway root, besides dpkg's own logs
# and databases: nothing of roamtun's may be there. Whiteouts (character
# devices) only record that something of the host's was deleted, as purge
# does with a /var/lib/roamtun that some earlier run left on the host.
echo "== leftovers in the overlay's upper layer"
left=$(cd "$DIR/upper" && find . -path ./var/lib/dpkg -prune -o -path ./var/log -prune \
	-o -path ./var/cache -prune -o -path ./tmp -prune -o -path ./run -prune \
	-o -name '*roamtun*' ! -type c -print)
if [ -n "$left" ]; then
	echo "FAIL: left behind after purge:"
	echo "$left"
	exit 1
fi
for f in etc/group etc/gshadow; do
	if [ -f "$DIR/upper/$f" ] && grep -q '^roamtun:' "$DIR/upper/$f"; then
		echo "FAIL: /$f still has the group roamtun"
		exit 1
	fi
done
echo "ok: nothing left"
