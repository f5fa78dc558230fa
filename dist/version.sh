#!/bin/sh
# Prints roamtun's version as a Debian native version (digits first; only
# [0-9A-Za-z.+~]), from git: a tag vX.Y.Z on HEAD gives X.Y.Z; commits after
# it give X.Y.Z+gitYYYYMMDD.HASH; no tag gives 0.0~gitYYYYMMDD.HASH. The date
# is the commit's (UTC), so the same commit always gives the same version.
# Uncommitted changes add ".dirty". Outside git: 0.0~unknown.
set -eu
cd "$(dirname "$0")/.."
if ! rev=$(git rev-parse --short=7 HEAD 2>/dev/null); then
	echo 0.0~unknown
	exit 0
fi
date=$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd HEAD)
if tag=$(git describe --tags --match 'v[0-9]*' --abbrev=0 HEAD 2>/dev/null); then
	base=${tag#v}
	if [ "$(git rev-list -n1 "$tag")" = "$(git rev-parse HEAD)" ]; then
		v=$base
	else
		v=$base+git$date.$rev
	fi
else
	v=0.0~git$date.$rev
fi
if ! git diff --quiet HEAD -- 2>/dev/null; then
	v=$v.dirty
fi
echo "$v" | tr -c '0-9A-Za-z.+~\n' '.'
