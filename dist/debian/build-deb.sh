#!/bin/sh
# build-deb.sh ROOT VERSION OUTDIR — turns a `make install DESTDIR=ROOT
# PREFIX=/usr` tree into a Debian binary package with dpkg-deb (no debhelper):
# compressed manual page and docs, copyright, changelog.gz, lintian
# overrides, control, conffiles, md5sums and the maintainer scripts of this
# folder. Writes OUTDIR/roamtun_VERSION_ARCH.deb and prints its name.
# Called by `make deb`.
set -eu
ROOT=$1
VERSION=$2
OUTDIR=$3
here=$(cd "$(dirname "$0")" && pwd)
MAINTAINER=${DEB_MAINTAINER:-The roamtun developers <roamtun@users.noreply.github.com>}

# The architecture of the binary that was built (GOARCH → Debian's name).
goarch=${GOARCH:-$(${GO:-go} env GOARCH)}
case "$goarch" in
386) ARCH=i386 ;;
arm) ARCH=armhf ;;
ppc64le) ARCH=ppc64el ;;
mipsle) ARCH=mipsel ;;
mips64le) ARCH=mips64el ;;
*) ARCH=$goarch ;;
esac

# Reproducible: every date is the last commit's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

doc=$ROOT/usr/share/doc/roamtun
install -d -m 0755 "$doc" "$ROOT/usr/share/lintian/overrides" "$ROOT/DEBIAN"

# Debian compresses manual pages and docs other than copyright and examples.
find "$ROOT/usr/share/man" -type f ! -name '*.gz' -exec gzip -9nf {} +
[ ! -f "$doc/README.md" ] || gzip -9nf "$doc/README.md"
install -m 0644 "$here/copyright" "$doc/copyright"
install -m 0644 "$here/lintian-overrides" "$ROOT/usr/share/lintian/overrides/roamtun"

# A native package: changelog.gz, one entry for this build.
rev=$(git -C "$here" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
{
	printf 'roamtun (%s) unstable; urgency=medium\n\n' "$VERSION"
	printf '  * Built from commit %s; the changes are in its git history.\n\n' "$rev"
	printf ' -- %s  %s\n' "$MAINTAINER" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Control area.
for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$ROOT/DEBIAN/$s"
done
(cd "$ROOT" && find etc -type f | LC_ALL=C sort | sed 's|^|/|') >"$ROOT/DEBIAN/conffiles"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
	sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$ROOT/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$size|" \
	-e "s|@MAINTAINER@|$MAINTAINER|" "$here/control.in" >"$ROOT/DEBIAN/control"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"

find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
OUT=$OUTDIR/roamtun_${VERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$OUT" >/dev/null
echo "$OUT"
