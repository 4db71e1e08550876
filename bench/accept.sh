#!/usr/bin/env bash
# Accept-path load test: Postfix's smtp-source injects messages into a real
# kanmon binary on loopback; we report messages per second and the server's
# CPU time per message (user+system, from /proc).
#
#   bench/accept.sh [MESSAGES] [SESSIONS] [SIZE_BYTES]
#
# Needs: go, smtp-source (Debian package postfix). Everything listens on
# 127.0.0.1 and is stopped by PID at the end.
set -euo pipefail
N=${1:-20000}
S=${2:-20}
SIZE=${3:-2048}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/kanmon" ./cmd/kanmon
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MX=$(port)
"$work/kanmon" init --dir "$work/etc" --domain example.org --hostname mx.example.org \
  --mx-addr "127.0.0.1:$MX" --submission-addr "" --smtps-addr "" --admin-addr "" >/dev/null
sed -i 's/^log_file = ""/log_file = "kanmon.log"/; s/^max_connections_per_ip = 20/max_connections_per_ip = 1000/; s/^mx_connections_per_minute = 60/mx_connections_per_minute = 0/' "$work/etc/kanmon.toml"
# As root (a throwaway machine), serve as root: kanmon otherwise refuses.
[ "$(id -u)" = 0 ] && sed -i 's/^run_as = ""/run_as = "root"/' "$work/etc/kanmon.toml"
echo 'benchmark password' | "$work/kanmon" user add bench@example.org --config "$work/etc/kanmon.toml" --password-stdin >/dev/null
"$work/kanmon" serve --config "$work/etc/kanmon.toml" 2>"$work/stderr" &
pid=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$MX) 2>/dev/null && break; sleep 0.1; done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }
c0=$(cpu); t0=$(date +%s.%N)
smtp-source -c -s "$S" -m "$N" -l "$SIZE" -f sender@remote.test -t bench@example.org "127.0.0.1:$MX" >/dev/null
t1=$(date +%s.%N); c1=$(cpu)
# Wait until delivery has emptied the queue, then count CPU again.
for _ in $(seq 600); do
  [ -z "$(ls -A "$work/etc/data/queue/msg")" ] && break; sleep 0.1
done
t2=$(date +%s.%N); c2=$(cpu)
delivered=$(ls "$work/etc/data/mail/example.org/bench/new" | wc -l)
python3 - "$N" "$S" "$SIZE" "$t0" "$t1" "$t2" "$c0" "$c1" "$c2" "$ticks" "$delivered" <<'PY'
import sys
n,s,size=map(int,sys.argv[1:4]); t0,t1,t2=map(float,sys.argv[4:7]); c0,c1,c2,tk=map(float,sys.argv[7:11]); d=int(sys.argv[11])
print(f"messages={n} sessions={s} size={size}B")
print(f"accept: {n/(t1-t0):.0f} msg/s, server CPU {1000*(c1-c0)/tk/n:.3f} ms/msg (accept only)")
print(f"accept+local delivery: {n/(t2-t0):.0f} msg/s, server CPU {1000*(c2-c0)/tk/n:.3f} ms/msg, delivered {d}")
PY
