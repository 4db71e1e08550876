#!/usr/bin/env bash
# Cost of the inbound checks: accepted messages per second on the MX
# listener with every connection and MAIL FROM check on, against every
# check off. One message per connection (as smtp-source sends by
# default), from 127.0.0.8, whose reverse name mx.sender.bench is served
# by the fixture DNS (bench/inbound), so every check really asks DNS:
# PTR and FCrDNS per connection; two DNSBL zones and one policy-block
# zone (answers kept for their TTL); the sender domain's MX and its SPF
# record per message. The greet delay (2s) is on, and passed: one
# connection waits for the greeting first, so the client is remembered,
# as a real server is after its first visit of the day.
#
#   [ROUNDS=2] bench/inbound.sh [MESSAGES] [SESSIONS] [SIZE_BYTES]
#
# Off and on alternate ROUNDS times; the best rate and the least CPU per
# message of each are compared. kanmon's CPU per message (from /proc) is
# the steadier measure on a shared machine; the fixture DNS server's CPU
# is not counted (in production it is another machine or the local
# resolver's).
#
# Needs: go. Everything listens on loopback and is stopped by PID.
set -euo pipefail
N=${1:-5000}
S=${2:-20}
SIZE=${3:-2048}
ROUNDS=${ROUNDS:-2}
cd "$(dirname "$0")/.."
work=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "work directory: $work" >&2
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
go build -o "$work/kanmon" ./cmd/kanmon
go build -o "$work/fixture" ./bench/inbound
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
DNS=127.0.0.1:$(port)
"$work/fixture" dns "$DNS" & pids+=($!)

# run NAME CHECKS(on|off): one server, one load run; prints msg/s.
run() {
  local name=$1 checks=$2 dir="$work/$1" mx
  mx=$(port)
  "$work/kanmon" init --dir "$dir" --domain example.org --hostname mx.example.org \
    --mx-addr "127.0.0.1:$mx" --submission-addr "" --smtps-addr "" --admin-addr "" >/dev/null
  local c="$dir/kanmon.toml"
  sed -i 's/^log_file = ""/log_file = "kanmon.log"/; s/^max_connections_per_ip = 20/max_connections_per_ip = 1000/' "$c"
  sed -i "s/^mx_connections_per_minute = .*/mx_connections_per_minute = 0/" "$c"
  sed -i "s/^server = \"\"/server = \"$DNS\"/" "$c"
  # As root (a test machine), kanmon serves only with run_as set.
  if [ "$(id -u)" = 0 ]; then sed -i 's/^run_as = ""/run_as = "root"/' "$c"; fi
  # client.connection_rate (the per-client connection rate limit on MX)
  # would throttle a benchmark from one address: when the key exists, set
  # it off (or far above the rate) here, for both runs.
  if [ "$checks" = on ]; then
    sed -i 's/^greet_delay = .*/greet_delay = "2s"/
      s/^policy_block_zones = .*/policy_block_zones = ["pbl.bench"]/
      s/^dnsbl = \[\]/dnsbl = [ { zone = "bl.bench", weight = 1.0 }, { zone = "bl2.bench", weight = 0.5 } ]/
      s/^fcrdns_mismatch = .*/fcrdns_mismatch = "reject"/' "$c"
  else
    sed -i 's/^greet_delay = .*/greet_delay = "0s"/' "$c"
    for k in dynamic_client policy_block missing_ptr fcrdns_mismatch dnsbl_listed sender_domain spf_fail spf_temperror dmarc from_header; do
      sed -i "s/^$k = \"[a-z]*\"/$k = \"off\"/" "$c"
    done
  fi
  echo 'benchmark password' | "$work/kanmon" user add bench@example.org --config "$c" --password-stdin >/dev/null
  "$work/kanmon" check-config --config "$c" >/dev/null
  "$work/kanmon" serve --config "$c" 2>"$dir/stderr" & local pid=$!
  pids+=("$pid")
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$mx) 2>/dev/null && break; sleep 0.1; done
  if ! kill -0 "$pid" 2>/dev/null; then echo "$name: kanmon did not start:" >&2; cat "$dir/stderr" >&2; exit 1; fi
  "$work/fixture" wait -src 127.0.0.8 "127.0.0.1:$mx" # greeted after the delay, then remembered
  local t0 t1 c0 c1
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  "$work/fixture" load -src 127.0.0.8 -n "$N" -s "$S" -l "$SIZE" "127.0.0.1:$mx"
  t1=$(date +%s.%N); c1=$(cpu "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ "$checks" = on ] && ! grep -q '"rule":"spf.pass"' "$dir/data/kanmon.log" "$dir/kanmon.log" 2>/dev/null; then
    echo "checks on, but no spf.pass decision in the log: the checks did not run" >&2; exit 1
  fi
  python3 -c "import sys; n=int(sys.argv[2]); print(f'{sys.argv[1]} {n/(float(sys.argv[4])-float(sys.argv[3])):.0f} msg/s, kanmon CPU {1000*(int(sys.argv[6])-int(sys.argv[5]))/int(sys.argv[7])/n:.3f} ms/msg')" "$name" "$N" "$t0" "$t1" "$c0" "$c1" "$(getconf CLK_TCK)"
}
# cpu PID: the process's user+system time in clock ticks.
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
echo "messages=$N sessions=$S size=${SIZE}B, one message per connection, from 127.0.0.8, $ROUNDS rounds"
results=()
for r in $(seq "$ROUNDS"); do # alternate, so a load change on the machine hits both
  results+=("$(run "off-$r" off)"); echo "${results[-1]}"
  results+=("$(run "on-$r" on)"); echo "${results[-1]}"
done
python3 - "${results[@]}" <<'PY'
import sys
rate={"off":[], "on":[]}; cpu={"off":[], "on":[]}
for line in sys.argv[1:]:
    f=line.split(); k=f[0].split("-")[0]
    rate[k].append(float(f[1])); cpu[k].append(float(f[5]))
ron, roff = max(rate["on"]), max(rate["off"])
con, coff = min(cpu["on"]), min(cpu["off"])
print(f"best rate: on {ron:.0f} / off {roff:.0f} msg/s = {ron/roff:.2f} (cost {100*(1-ron/roff):.0f} %)")
print(f"least kanmon CPU: on {con:.3f} / off {coff:.3f} ms/msg = {con/coff:.2f} (cost as a rate: {100*(1-coff/con):.0f} %)")
PY
