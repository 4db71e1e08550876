#!/usr/bin/env bash
# End-to-end delivery benchmark: Postfix's smtp-source injects N messages
# for a remote domain into a real kanmon binary, kanmon queues them and
# delivers them over SMTP to Postfix's smtp-sink on loopback. We report
# delivered messages per second (first injected to last delivered) and
# kanmon's CPU time per message (user+system, from /proc).
#
#   bench/deliver.sh [MESSAGES] [SESSIONS] [SIZE_BYTES]
#
# Why the MX port and trusted_networks, not submission: smtp-source has
# no STARTTLS and no AUTH, and kanmon offers AUTH only over TLS (law 7).
# So the injecting client is made a trusted network (127.0.0.1/32 only,
# in this throwaway config), which grants relay exactly as an
# authenticated submission client gets it; the queue, the scheduler and
# remote delivery are the same code either way.
#
# Delivery goes through [delivery] routes (remote.test -> smtp-sink), so
# no DNS is asked. The count of delivered messages is kanmon's own
# kanmon_deliveries_total{kind="remote",result="delivered"} from the
# admin listener.
#
# Needs: go, python3, smtp-source and smtp-sink (Debian package postfix).
# Everything listens on 127.0.0.1 and is stopped by PID at the end.
set -euo pipefail
N=${1:-5000}
S=${2:-20}
SIZE=${3:-2048}
# FROM: the envelope sender. At a local domain (the default) kanmon
# DKIM-signs every message; a sender elsewhere (e.g. FROM=bench@client.test)
# measures relaying alone, as Postfix and chasquid do it.
FROM=${FROM:-bench@example.org}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=""; sink=""; tracer=""
cleanup() {
  for p in $tracer $pid $sink; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
go build -o "$work/kanmon" ./cmd/kanmon
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MX=$(port); ADMIN=$(port); SINK=$(port)
"$work/kanmon" init --dir "$work/etc" --domain example.org --hostname mx.example.org \
  --mx-addr "127.0.0.1:$MX" --submission-addr "" --smtps-addr "" --admin-addr "127.0.0.1:$ADMIN" >/dev/null
sed -i \
  -e 's/^log_file = ""/log_file = "kanmon.log"/' \
  -e 's/^max_connections_per_ip = 20/max_connections_per_ip = 1000/' \
  -e 's/^mx_connections_per_minute = 60/mx_connections_per_minute = 0/' \
  -e 's|^trusted_networks = \[\]|trusted_networks = ["127.0.0.1/32"]|' \
  -e "s|^routes = {}|routes = { \"remote.test\" = \"127.0.0.1:$SINK\" }|" \
  -e 's|^dns_server = ""|dns_server = "127.0.0.1:1"|' \
  "$work/etc/kanmon.toml"
# As root (a throwaway machine), serve as root: kanmon otherwise refuses.
[ "$(id -u)" = 0 ] && sed -i 's/^run_as = ""/run_as = "root"/' "$work/etc/kanmon.toml"
echo 'benchmark password' | "$work/kanmon" user add bench@example.org --config "$work/etc/kanmon.toml" --password-stdin >/dev/null
# smtp-sink: accept everything, keep nothing; 1000 = listen backlog. As
# root it insists on dropping privileges (-u) after binding.
sinkuser=()
[ "$(id -u)" = 0 ] && sinkuser=(-u nobody)
smtp-sink "${sinkuser[@]}" 127.0.0.1:"$SINK" 1000 >"$work/sink.out" 2>&1 &
sink=$!
"$work/kanmon" serve --config "$work/etc/kanmon.toml" 2>"$work/stderr" &
pid=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$MX) 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$SINK) 2>/dev/null && break; sleep 0.1; done
kill -0 "$sink" 2>/dev/null || { echo "smtp-sink did not start:" >&2; cat "$work/sink.out" >&2; exit 1; }
delivered() {
  python3 - "$ADMIN" <<'PY'
import sys, urllib.request
n = 0
for line in urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode().splitlines():
    if line.startswith('kanmon_deliveries_total{') and 'kind="remote"' in line and 'result="delivered"' in line:
        n = int(float(line.split()[-1]))
print(n)
PY
}
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }
# STRACE=1 counts kanmon's system calls during the run (strace -c -f);
# the table is printed per message at the end. Timings are then not
# comparable with untraced runs.
if [ -n "${STRACE:-}" ]; then
  strace -c -f -p "$pid" -o "$work/strace.out" 2>/dev/null &
  tracer=$!
  sleep 1
fi
c0=$(cpu); t0=$(date +%s.%N)
smtp-source -c -s "$S" -m "$N" -l "$SIZE" -f "$FROM" -t sink@remote.test "127.0.0.1:$MX" >/dev/null
t1=$(date +%s.%N); c1=$(cpu)
d=0
for _ in $(seq 3000); do
  d=$(delivered); [ "$d" -ge "$N" ] && break
  kill -0 "$sink" 2>/dev/null || { echo "smtp-sink died:" >&2; cat "$work/sink.out" >&2; break; }
  sleep 0.1
done
t2=$(date +%s.%N); c2=$(cpu)
left=$(ls -A "$work/etc/data/queue/msg" | wc -l)
if [ -n "$tracer" ]; then
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true; tracer=""
  echo "system calls per message (strace -c -f on kanmon):"
  awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF>=5 { name=$NF; calls=$4; errs=(NF==6?$5:0);
    printf "  %-14s %7.2f calls/msg  %6.2f errors/msg\n", name, calls/n, errs/n }' "$work/strace.out" | sort -k2 -nr
fi
deferred=$(grep -c '"result":"deferred"' "$work/etc/kanmon.log" 2>/dev/null || true)
python3 - "$N" "$S" "$SIZE" "$t0" "$t1" "$t2" "$c0" "$c1" "$c2" "$ticks" "$d" "$left" "${deferred:-0}" <<'PY'
import sys
n,s,size=map(int,sys.argv[1:4]); t0,t1,t2=map(float,sys.argv[4:7]); c0,c1,c2,tk=map(float,sys.argv[7:11])
d,left,deferred=map(int,sys.argv[11:14])
print(f"messages={n} sessions={s} size={size}B, relayed to smtp-sink over loopback")
print(f"inject (accept+queue): {n/(t1-t0):.0f} msg/s in {t1-t0:.1f}s")
print(f"end to end (first injected -> last delivered): {d/(t2-t0):.0f} msg/s in {t2-t0:.1f}s")
print(f"kanmon CPU {1000*(c2-c0)/tk/max(d,1):.3f} ms/msg (accept + queue + remote delivery)")
print(f"delivered {d}/{n}, left in queue {left}, deferred attempts {deferred}")
PY
[ "$d" -ge "$N" ]
