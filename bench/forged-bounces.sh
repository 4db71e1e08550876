#!/usr/bin/env bash
# Bounce-flood benchmark: bench/forgedbounce sends forged bounces (MAIL
# FROM:<>, untagged recipients: BATV refuses them at RCPT) to a real kanmon
# binary on loopback as fast as it can over many connections, and the same
# run with plain unknown-user recipients (ordinary sender, a local user
# that does not exist) as the baseline. For each it reports refusals per
# second and kanmon's CPU time (user+system, /proc/PID/stat) per thousand
# refusals.
#
#   bench/forged-bounces.sh [TRANSACTIONS] [CONNECTIONS] [ROUNDS]
#
# Each mode runs twice per round: one transaction per connection (a
# bounce flood from many hosts) and four per connection (pipelined, below
# max_errors). Needs: go, python3. Everything listens on 127.0.0.1; the
# server is stopped by its PID at the end.
set -euo pipefail
N=${1:-20000}
C=${2:-50}
ROUNDS=${3:-2}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$pid" ] && wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/kanmon" ./cmd/kanmon
go build -o "$work/forgedbounce" ./bench/forgedbounce
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MX=$(port)
"$work/kanmon" init --dir "$work/etc" --domain example.org --hostname mx.example.org \
  --mx-addr "127.0.0.1:$MX" --submission-addr "" --smtps-addr "" --admin-addr "" >/dev/null
toml="$work/etc/kanmon.toml"
# No DNS-touching inbound check (DNS goes to a dead loopback port anyway),
# no greet delay, no per-client limits: the flood comes from one address.
sed -i -e 's/^log_file = ""/log_file = "kanmon.log"/' \
  -e 's/^max_connections_per_ip = [0-9]*/max_connections_per_ip = 1000/' \
  -e 's/^server = ""/server = "127.0.0.1:1"/' \
  -e 's/^greet_delay = .*/greet_delay = "0s"/' \
  -e 's/^\(dynamic_client\|missing_ptr\|fcrdns_mismatch\|sender_domain\|spf_fail\|spf_temperror\) = .*/\1 = "off"/' "$toml"
# A per-client connection rate on the MX listener, where the config has
# one, is turned off the same way.
sed -i -e "s/^mx_connections_per_minute = 60/mx_connections_per_minute = 0/" "$toml"
# As root (a throwaway test machine), kanmon must be told to stay root.
[ "$(id -u)" = 0 ] && sed -i 's/^run_as = ""/run_as = "root"/' "$toml"
echo 'benchmark password' | "$work/kanmon" user add bench@example.org --config "$toml" --password-stdin >/dev/null
"$work/kanmon" serve --config "$toml" 2>"$work/stderr" &
pid=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$MX) 2>/dev/null && break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for per in 1 4; do
    for mode in unknown bounce forged-tag; do
      c0=$(cpu)
      line=$("$work/forgedbounce" -addr "127.0.0.1:$MX" -mode "$mode" -n "$N" -c "$C" -per "$per")
      c1=$(cpu)
      refused=$(sed 's/.*refused=\([0-9]*\).*/\1/' <<<"$line")
      python3 -c 'import sys; c0,c1,tk,r=map(float,sys.argv[1:5]); print(f"{sys.argv[5]} cpu_ms_per_1000={1000*1000*(c1-c0)/tk/r:.0f}")' \
        "$c0" "$c1" "$ticks" "$refused" "round=$round $line"
    done
  done
done
grep -c '"rule":"rcpt.batv"' "$work/etc/kanmon.log" | sed 's/^/rcpt.batv decision lines: /'
echo "queue files left: $(ls -A "$work/etc/data/queue/msg" | wc -l)"
