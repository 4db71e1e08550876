#!/usr/bin/env bash
# Checks a built kanmon .deb without installing it (no root needed):
#
#   dist/check-deb.sh dist/out/kanmon_VERSION_ARCH.deb
#
# the files the package owns with their modes and owners (dpkg-deb -c),
# its control fields and maintainer scripts (dpkg-deb -I), and the
# binary and the reference configuration inside it. Exits non-zero with
# one line per problem.
set -euo pipefail

deb=${1:?usage: check-deb.sh FILE.deb}
fail=0
problem() {
	echo "check-deb: $*" >&2
	fail=1
}

# The files and their "mode owner" as dpkg-deb -c lists them; nothing
# else may be in the package (no /etc file: postinst writes the config).
declare -A want=(
	[./usr/bin/kanmon]="-rwxr-xr-x root/root"
	[./lib/systemd/system/kanmon.service]="-rw-r--r-- root/root"
	[./usr/lib/kanmon/sendmail]="-rwxr-xr-x root/root"
	[./usr/share/doc/kanmon/README.md]="-rw-r--r-- root/root"
	[./usr/share/doc/kanmon/flow.md]="-rw-r--r-- root/root"
	[./usr/share/doc/kanmon/logging.md]="-rw-r--r-- root/root"
	[./usr/share/doc/kanmon/imap-with-dovecot.md]="-rw-r--r-- root/root"
	[./usr/share/doc/kanmon/examples/kanmon.toml]="-rw-r--r-- root/root"
)
declare -A seen=()
while read -r mode owner _size _date _time path _rest; do
	case "$mode" in d*) continue ;; esac
	seen[$path]=1
	if [ -z "${want[$path]+x}" ]; then
		problem "unexpected file $path ($mode $owner)"
	elif [ "${want[$path]}" != "$mode $owner" ]; then
		problem "$path is $mode $owner, want ${want[$path]}"
	fi
done < <(dpkg-deb -c "$deb")
for path in "${!want[@]}"; do
	[ -n "${seen[$path]+x}" ] || problem "missing $path"
done

field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = kanmon ] || problem "Package is '$(field Package)', want kanmon"
[ "$(field Section)" = mail ] || problem "Section is '$(field Section)', want mail"
case "$(field Version)" in [0-9]*) ;; *) problem "Version '$(field Version)' does not start with a digit" ;; esac
case ", $(field Depends)," in *", adduser,"*) ;; *) problem "Depends '$(field Depends)' lacks adduser (postinst runs it)" ;; esac
[ -n "$(field Maintainer)" ] || problem "no Maintainer"

info=$(dpkg-deb -I "$deb")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -e "$deb" "$work/control"
for s in postinst prerm postrm; do
	if ! grep -q " $s " <<<"$info"; then
		problem "no $s script"
		continue
	fi
	sh -n "$work/control/$s" || problem "$s: syntax error"
	[ -x "$work/control/$s" ] || problem "$s is not executable"
done
# What each script must do (the smoke test shows they work).
grep -q 'adduser .*--system' "$work/control/postinst" || problem "postinst does not create the system user"
grep -q 'kanmon init .*--user kanmon' "$work/control/postinst" || problem "postinst does not run kanmon init --user kanmon"
grep -q 'update-alternatives .*--install /usr/sbin/sendmail sendmail /usr/lib/kanmon/sendmail' "$work/control/postinst" ||
	problem "postinst does not install the sendmail alternative"
grep -q 'update-alternatives .*--remove sendmail' "$work/control/prerm" || problem "prerm does not remove the sendmail alternative"
if grep -q '/var/lib/kanmon' "$work/control/postrm" && grep -Eq 'rm .*(/var/lib/kanmon|DATA_DIR)' "$work/control/postrm"; then
	problem "postrm removes the data directory (mail must survive a purge)"
fi
# No bare systemctl start: containers without systemd, and policy-rc.d.
if grep -Eq '^[^#]*systemctl (start|restart|stop)' "$work/control/postinst" "$work/control/prerm" "$work/control/postrm"; then
	problem "a maintainer script calls systemctl start/stop directly (use deb-systemd-invoke)"
fi

dpkg-deb -x "$deb" "$work/tree"
# ldd (libc-bin, always there) says so of a static binary.
lddout=$(ldd "$work/tree/usr/bin/kanmon" 2>&1 || true)
grep -q 'not a dynamic executable' <<<"$lddout" ||
	problem "/usr/bin/kanmon is not a static binary"
if grep -aq "$(cd "$(dirname "$0")/.." && pwd)/" "$work/tree/usr/bin/kanmon"; then
	problem "/usr/bin/kanmon holds build paths (build with -trimpath)"
fi
grep -q '^run_as = "kanmon"$' "$work/tree/usr/share/doc/kanmon/examples/kanmon.toml" ||
	problem "the example config does not set run_as = \"kanmon\""
grep -q '^data_dir = "/var/lib/kanmon"$' "$work/tree/usr/share/doc/kanmon/examples/kanmon.toml" ||
	problem "the example config's data_dir is not /var/lib/kanmon"
"$work/tree/usr/bin/kanmon" help | grep -q 'kanmon serve' || problem "/usr/bin/kanmon help does not run"

if [ "$fail" != 0 ]; then
	exit 1
fi
echo "check-deb: $deb: $(dpkg-deb -c "$deb" | grep -vc '^d') files, control and scripts as expected"
