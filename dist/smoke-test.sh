#!/usr/bin/env bash
# Installs the Debian package on this machine and runs it as an
# administrator would (CI runs this as root on a throwaway machine):
#
#   dist/smoke-test.sh [FILE.deb]     (default: build one with build-deb.sh)
#
# 1. the package's contents (check-deb.sh);
# 2. dpkg -i: the kanmon system user, the first config from kanmon init
#    (0640 root:kanmon, run_as = "kanmon"), the data directory (0700
#    kanmon), the sendmail alternative; kanmon check-config as root and
#    as kanmon;
# 3. kanmon serve started as root, on loopback only: it binds port 25 (if
#    free), drops to kanmon (every thread, from /proc), greets, accepts a
#    message for an account and delivers it to the Maildir, takes one
#    through /usr/lib/kanmon/sendmail, and stops on SIGTERM with status 0;
# 4. dpkg -i again keeps the config; dpkg -r removes the alternative;
#    dpkg --purge removes the config and keeps the mail.
# Everything is bounded in time; only the server this script started is
# signalled, by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "smoke-test: run as root (it installs the package)" >&2
	exit 1
fi
if dpkg-query -W -f='${Status}' kanmon 2>/dev/null | grep -q ' installed'; then
	echo "smoke-test: kanmon is already installed here; not touching it" >&2
	exit 1
fi

deb=${1:-$(dist/build-deb.sh)}
dist/check-deb.sh "$deb"

CONF=/etc/kanmon/kanmon.toml
DATA=/var/lib/kanmon
work=$(mktemp -d)
pid=""
installed=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
	# A failed run leaves nothing installed: the next run (and the tests
	# after it) find the machine as it was.
	if [ -n "$installed" ] && dpkg-query -W -f='${Status}' kanmon 2>/dev/null | grep -q ' installed'; then
		dpkg --purge kanmon >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
die() {
	echo "smoke-test: FAIL: $*" >&2
	if [ -f "$work/serve.log" ]; then
		echo "--- server log" >&2
		tail -n 30 "$work/serve.log" >&2
	fi
	exit 1
}
step() { echo "smoke-test: $*"; }

# --- 2. install
step "dpkg -i $deb"
installed=1
dpkg -i "$deb"
getent passwd kanmon >/dev/null || die "no kanmon user after install"
uid=$(id -u kanmon)
gid=$(id -g kanmon)
[ "$uid" -lt 1000 ] || die "kanmon is not a system user (uid $uid)"
[ "$(getent group kanmon | cut -d: -f3)" = "$gid" ] || die "kanmon's primary group is not kanmon"
[ "$(stat -c '%a %U:%G' "$CONF")" = "640 root:kanmon" ] || die "$CONF is $(stat -c '%a %U:%G' "$CONF"), want 640 root:kanmon"
[ "$(stat -c '%a %U' "$DATA")" = "700 kanmon" ] || die "$DATA is $(stat -c '%a %U' "$DATA"), want 700 kanmon"
[ "$(stat -c '%U' /etc/kanmon/key.pem)" = kanmon ] || die "the generated TLS key is not kanmon's"
grep -q '^run_as = "kanmon"$' "$CONF" || die "$CONF lacks run_as = \"kanmon\""
grep -q '^# ' "$CONF" || die "$CONF has no comments"
update-alternatives --query sendmail | grep -q '^Alternative: /usr/lib/kanmon/sendmail$' ||
	die "no sendmail alternative for /usr/lib/kanmon/sendmail"
if [ ! -e /usr/sbin/sendmail ] || [ -L /usr/sbin/sendmail ]; then
	# Nobody else's real file there: the link is ours.
	[ "$(readlink -f /usr/sbin/sendmail)" = /usr/lib/kanmon/sendmail ] || die "/usr/sbin/sendmail does not lead to kanmon"
fi
kanmon check-config --config "$CONF" || die "check-config as root"
setpriv --reuid kanmon --regid kanmon --init-groups kanmon check-config --config "$CONF" ||
	die "check-config as kanmon (the unit's ExecStartPre)"
sum=$(sha256sum "$CONF")

domain=$(sed -n 's/^domains = \["\([^"]*\)".*/\1/p' "$CONF")
[ -n "$domain" ] || die "no domain in $CONF"
user=postmaster@$domain
step "account $user (added as kanmon)"
as_kanmon() { setpriv --reuid kanmon --regid kanmon --init-groups "$@"; }
# A purge keeps the accounts, so a machine that had kanmon may have it.
if ! as_kanmon kanmon user list --config "$CONF" | grep -qx "$user"; then
	as_kanmon kanmon user add "$user" --config "$CONF" --password-stdin <<<"Smoke-Test-Passw0rd-$$" >/dev/null ||
		die "kanmon user add as kanmon"
fi

# --- 3. serve, as the real path: started as root, dropping to kanmon
# port_free PORT: nothing answers on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick() {
	local p
	for p in "$@"; do
		if port_free "$p"; then
			echo "$p"
			return
		fi
	done
	die "none of the ports $* is free on loopback"
}
mx=$(pick 25 10025 20025)
sub=$(pick 587 10587 20587)
smtps=$(pick 465 10465 20465)
# The socket for sendmail lives outside the data directory (which stays
# 0700), in a directory kanmon may create it in.
install -d -m 0755 "$work/run"
chown kanmon:kanmon "$work/run"
chmod 0755 "$work"
sock=$work/run/kanmon.sock
# A copy of the installed config on loopback addresses only, with the
# sendmail socket on and the DNS-dependent inbound checks off; everything
# else (run_as, data_dir) as installed.
awk -v mx="127.0.0.1:$mx" -v submission="127.0.0.1:$sub" -v smtps="127.0.0.1:$smtps" \
	-v sock="$sock" -v user="$user" '
	/^\[/ { section = $0 }
	section == "[listeners]" && /^mx = /         { print "mx = \"" mx "\""; next }
	section == "[listeners]" && /^submission = / { print "submission = \"" submission "\""; next }
	section == "[listeners]" && /^smtps = /      { print "smtps = \"" smtps "\""; next }
	section == "[listeners]" && /^(pop3|pop3s|admin) = / { split($0, kv, " "); print kv[1] " = \"\""; next }
	section == "[tls]" && /^cert = / { print "cert = \"/etc/kanmon/cert.pem\""; next }
	section == "[tls]" && /^key = /  { print "key = \"/etc/kanmon/key.pem\""; next }
	section == "[sendmail]" && /^enabled = / { print "enabled = true"; next }
	section == "[sendmail]" && /^socket = /  { print "socket = \"" sock "\""; next }
	section == "[sendmail]" && /^users = /   { print "users = { root = \"" user "\" }"; next }
	# The test machine has no DNS of its own: the inbound checks that ask
	# it (and the greeting delay) are off in this copy.
	section == "[inbound]" && /^greet_delay = / { print "greet_delay = \"0s\""; next }
	section == "[inbound]" && /^(dynamic_client|missing_ptr|fcrdns_mismatch|sender_domain|spf_fail|spf_temperror|dmarc) = / { split($0, kv, " "); print kv[1] " = \"off\""; next }
	{ print }
' "$CONF" >"$work/kanmon.toml"
kanmon check-config --config "$work/kanmon.toml" || die "check-config of the loopback copy"

step "kanmon serve as root on 127.0.0.1:$mx, $sub, $smtps"
/usr/bin/kanmon serve --config "$work/kanmon.toml" >"$work/serve.log" 2>&1 &
pid=$!

# greets PORT: the first line on 127.0.0.1:PORT is a 220 greeting.
greets() {
	local line
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	IFS= read -r -t 5 line <&3 || line=""
	printf 'QUIT\r\n' >&3 || true
	exec 3<&- 3>&-
	[ "${line:0:4}" = "220 " ]
}
up=""
for _ in $(seq 1 100); do # at most 20 s
	kill -0 "$pid" 2>/dev/null || die "kanmon serve exited at start"
	if greets "$mx" 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.2
done
[ -n "$up" ] || die "no 220 greeting on 127.0.0.1:$mx within 20 s"
step "greeting on 127.0.0.1:$mx"

# Every thread serves as kanmon: real, effective, saved and file ids.
for st in /proc/"$pid"/task/*/status; do
	u=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "$st")
	g=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "$st")
	[ "$u" = "$uid $uid $uid $uid" ] || die "thread $st has Uid $u, want $uid"
	[ "$g" = "$gid $gid $gid $gid" ] || die "thread $st has Gid $g, want $gid"
done
step "$(ls /proc/"$pid"/task | wc -l) threads, all uid $uid gid $gid (kanmon)"
grep -q '"msg":"privileges".*"op":"dropped"' "$work/serve.log" || die "no privileges op=dropped log line"

# mail_count: messages in the account's Maildir.
maildir=$DATA/mail/$domain/postmaster
mail_count() { find "$maildir/new" "$maildir/cur" -type f 2>/dev/null | wc -l; }
wait_mail() {
	for _ in $(seq 1 50); do # at most 10 s
		[ "$(mail_count)" -ge "$1" ] && return 0
		sleep 0.2
	done
	die "$2: no message $1 in $maildir within 10 s"
}
if command -v swaks >/dev/null; then
	swaks --server "127.0.0.1:$mx" --to "$user" --from smoke@example.net --timeout 20 \
		--header 'Subject: kanmon smoke test' >"$work/swaks.log" 2>&1 || {
		cat "$work/swaks.log" >&2
		die "swaks to $user on the MX port"
	}
	wait_mail 1 "swaks"
	step "delivered by MX to $maildir"
elif [ "${CI:-}" = true ]; then
	die "swaks is not installed (CI=true)"
fi
before=$(mail_count)
printf 'Subject: kanmon sendmail smoke test\n\nfrom a script\n' |
	timeout 20 /usr/lib/kanmon/sendmail -C "$work/kanmon.toml" -i "$user" || die "/usr/lib/kanmon/sendmail (as root)"
wait_mail $((before + 1)) "sendmail"
step "delivered through /usr/lib/kanmon/sendmail"

kill -TERM "$pid"
code=""
for _ in $(seq 1 100); do # at most 20 s
	if ! kill -0 "$pid" 2>/dev/null; then
		code=0
		wait "$pid" || code=$?
		break
	fi
	sleep 0.2
done
[ -n "$code" ] || die "kanmon serve did not stop within 20 s of SIGTERM"
pid=""
[ "$code" = 0 ] || die "kanmon serve exited with status $code after SIGTERM"
step "stopped on SIGTERM, status 0"

# --- 4. reinstall, remove, purge
step "dpkg -i again (upgrade path)"
dpkg -i "$deb"
[ "$(sha256sum "$CONF")" = "$sum" ] || die "reinstalling changed $CONF"
step "dpkg -r kanmon"
dpkg -r kanmon
if update-alternatives --query sendmail 2>/dev/null | grep -q /usr/lib/kanmon/sendmail; then
	die "the sendmail alternative survived dpkg -r"
fi
[ ! -e /usr/bin/kanmon ] || die "/usr/bin/kanmon survived dpkg -r"
[ -e "$CONF" ] || die "dpkg -r removed $CONF (only purge may)"
step "dpkg --purge kanmon"
mails=$(mail_count)
dpkg --purge kanmon
[ ! -e "$CONF" ] || die "$CONF survived the purge"
[ "$(mail_count)" = "$mails" ] && [ "$mails" -ge 1 ] || die "the purge touched the mail in $maildir"
step "ok: config purged, $mails messages kept in $maildir"
