#!/usr/bin/env bash
# Builds the Debian package with nfpm (pinned below):
#
#   dist/build-deb.sh [OUT_DIR]     (default dist/out)
#
# prints the path of OUT_DIR/kanmon_VERSION_ARCH.deb. The version comes
# from the file VERSION when there is one, else from git describe (a tag
# v1.2.3 gives 1.2.3; untagged commits 0.0.0~gitDATE.HASH, so a later
# tag sorts above them). GOARCH chooses the architecture.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
out=${1:-dist/out}
mkdir -p "$out"

# deb_version turns what git describe says into a Debian version, which
# must start with a digit and may not hold '-' outside the revision.
deb_version() {
	if [ -f VERSION ]; then
		tr -d ' \n' <VERSION
		return
	fi
	local d
	if d=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
		d=${d#v}
		# 1.2.3-4-gabc1234-dirty -> 1.2.3+4.gabc1234.dirty
		printf '%s' "$d" | sed -e 's/-/+/' -e 's/-/./g'
		return
	fi
	if ! git rev-parse --git-dir >/dev/null 2>&1; then
		printf '0.0.0~unknown'
		return
	fi
	local date hash
	date=$(git log -1 --format=%cd --date=format:%Y%m%d)
	hash=$(git rev-parse --short=12 HEAD)
	printf '0.0.0~git%s.%s' "$date" "$hash"
	if ! git diff --quiet HEAD 2>/dev/null; then
		printf '.dirty'
	fi
}

KANMON_VERSION=$(deb_version)
KANMON_DEB_ARCH=${GOARCH:-$(go env GOARCH)}
# Files in the package carry the commit's time, not the build's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export KANMON_VERSION KANMON_DEB_ARCH SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A static binary (the account database is pure Go), with no build paths.
KANMON_BIN=$work/kanmon
CGO_ENABLED=0 GOOS=linux GOARCH=$KANMON_DEB_ARCH \
	go build -trimpath -ldflags=-buildid= -o "$KANMON_BIN" ./cmd/kanmon

# The commented reference configuration: exactly what postinst's kanmon
# init writes, for example.org, so an administrator can compare the file
# they have with the one a newer version would write.
root=$work/root
go run ./cmd/kanmon init --dir "$root/etc/kanmon" --data-dir "$root/var/lib/kanmon" \
	--domain example.org --hostname mx.example.org >/dev/null
KANMON_CONFIG_EXAMPLE=$work/kanmon.toml
sed -e "s#$root##g" -e 's/^run_as = ""/run_as = "kanmon"/' \
	"$root/etc/kanmon/kanmon.toml" >"$KANMON_CONFIG_EXAMPLE"
export KANMON_BIN KANMON_CONFIG_EXAMPLE

deb=$out/kanmon_${KANMON_VERSION}_${KANMON_DEB_ARCH}.deb
go run "$NFPM" package --config dist/nfpm.yaml --packager deb --target "$deb" >&2
echo "$deb"
