#!/usr/bin/env bash
# Side-by-side benchmark of kanmon, Postfix and chasquid on one machine,
# on loopback, configured the same way; see bench/README.md.
#
#   bench/compare.sh                 # the full run (for a quiet machine)
#   N=2000 ROUNDS=1 SESSIONS="20" SHAPES="1k" bench/compare.sh   # a quick check
#
# Environment: N messages per run (10000), ROUNDS (3), SESSIONS ("20 200"),
# SHAPES ("1k 100k reuse": 1 KiB one message per connection, 100 KiB,
# 1 KiB with 100 messages per connection), SERVERS ("kanmon postfix
# chasquid"), OUT (bench/results).
#
# Needs root (it installs Postfix and chasquid with apt-get, runs a
# private Postfix instance and chasquid in a mount namespace whose
# /etc/resolv.conf points to a fixture DNS server on 127.0.0.153), go,
# python3 and openssl. Nothing listens beyond 127.0.0.0/8; every
# process started is stopped by its PID at the end.
set -euo pipefail
N=${N:-10000}
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-"20 200"}
SHAPES=${SHAPES:-"1k 100k reuse"}
SERVERS=${SERVERS:-"kanmon postfix chasquid"}
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/results}
[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root (apt-get, Postfix's master, mount namespace)" >&2; exit 1; }
W=$(mktemp -d /tmp/kanmon-compare.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
log() { echo "[$(date +%T)] $*" >&2; }

# --- install and build ---------------------------------------------------
if ! command -v chasquid >/dev/null || ! command -v smtp-sink >/dev/null; then
  log "installing postfix and chasquid (Debian packages)"
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y postfix chasquid >/dev/null
fi
log "building kanmon and the bench tools"
go build -o "$W/bin/kanmon" ./cmd/kanmon
(cd bench/cmd && go build -o "$W/bin/" ./load ./dnsfix ./chart)

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
SINK=$(port)
smtp-sink -u nobody -c 127.0.0.1:"$SINK" 1000 >"$W/sink.out" 2>&1 &
PIDS+=($!)
"$W/bin/dnsfix" -addr 127.0.0.153:53 -mx remote.test >"$W/dns.out" 2>&1 &
PIDS+=($!)
sleep 0.5
sinkcount() { tr '\r' '\n' <"$W/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 || echo 0; }

# --- the three servers: start_NAME sets SPID (the process to measure, with
# its children) and ADDR, and TO (the recipient that relays to the sink).
start_kanmon() {
  local d=$W/kanmon; rm -rf "$d"; local mx; mx=$(port)
  "$W/bin/kanmon" init --dir "$d" --domain example.org --hostname mx.example.org \
    --mx-addr "127.0.0.1:$mx" --submission-addr "" --smtps-addr "" --admin-addr "" >/dev/null
  sed -i \
    -e 's/^run_as = ""/run_as = "root"/' \
    -e 's/^log_file = ""/log_file = "kanmon.log"/' \
    -e 's/^max_connections_per_ip = 20/max_connections_per_ip = 1000/' \
    -e 's|^trusted_networks = \[\]|trusted_networks = ["127.0.0.1/32"]|' \
    -e "s|^routes = {}|routes = { \"remote.test\" = \"127.0.0.1:$SINK\" }|" \
    -e 's|^dns_server = ""|dns_server = "127.0.0.153:53"|' \
    "$d/kanmon.toml"
  "$W/bin/kanmon" serve --config "$d/kanmon.toml" 2>"$d/stderr" &
  SPID=$!; ADDR=127.0.0.1:$mx; TO=sink@remote.test
}
start_postfix() {
  local d=$W/postfix; rm -rf "$d"; local mx; mx=$(port)
  mkdir -p "$d/config" "$d/queue/pid" "$d/data"
  for q in active bounce corrupt defer deferred flush hold incoming private saved trace; do
    mkdir -p "$d/queue/$q"; chown postfix:root "$d/queue/$q"; chmod 700 "$d/queue/$q"
  done
  mkdir -p "$d/queue/maildrop" "$d/queue/public"
  chown postfix:postdrop "$d/queue/maildrop" "$d/queue/public"; chmod 730 "$d/queue/maildrop"; chmod 710 "$d/queue/public"
  chown postfix "$d/data"; chmod 700 "$d/data"
  cat >"$d/config/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $d/config
queue_directory = $d/queue
data_directory = $d/data
maillog_file_prefixes = $d
maillog_file = $d/maillog
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.org
mydomain = example.org
mydestination = example.org, localhost
local_transport = discard
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:$SINK
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
default_process_limit = 300
biff = no
EOF
  sed "1s/.*/127.0.0.1:$mx inet n - n - - smtpd/" "$ROOT/bench/postfix-master.cf" >"$d/config/master.cf"
  : >"$d/maillog"
  MAIL_CONFIG=$d/config /usr/lib/postfix/sbin/master -c "$d/config" -d >"$d/master.out" 2>&1 &
  SPID=$!; ADDR=127.0.0.1:$mx; TO=sink@remote.test
}
start_chasquid() {
  local d=$W/chasquid; rm -rf "$d"; local p; p=$(port)
  mkdir -p "$d/conf/domains/example.org" "$d/conf/certs/mx.example.org" "$d/data"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=mx.example.org \
    -keyout "$d/conf/certs/mx.example.org/privkey.pem" -out "$d/conf/certs/mx.example.org/fullchain.pem" 2>/dev/null
  cat >"$d/conf/chasquid.conf" <<EOF
hostname: "mx.example.org"
smtp_address: "127.0.0.1:$p"
submission_address: "127.0.0.1:$(port)"
submission_over_tls_address: "127.0.0.1:$(port)"
data_dir: "$d/data"
mail_delivery_agent_bin: "/bin/true"
mail_log_path: "$d/mail.log"
EOF
  # chasquid relays only for its own users; mail to a local alias that
  # points elsewhere is forwarded, which is the relay path measured.
  echo "relay: sink@remote.test" >"$d/conf/domains/example.org/aliases"
  echo "nameserver 127.0.0.153" >"$d/resolv.conf"
  unshare -m sh -c "mount --bind $d/resolv.conf /etc/resolv.conf && exec chasquid -config_dir $d/conf -logfile $d/chasquid.log -testing__outgoing_smtp_port $SINK" &
  SPID=$!; ADDR=127.0.0.1:$p; TO=relay@example.org
}

# cpu_ticks PID: user+system ticks of PID, its reaped children and its
# live descendants.
cpu_ticks() {
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1]); kids = {}; stat = {}
for p in os.listdir('/proc'):
    if not p.isdigit(): continue
    try: s = open(f'/proc/{p}/stat').read()
    except OSError: continue
    f = s[s.rindex(')')+2:].split()
    stat[int(p)] = sum(map(int, f[11:15])); kids.setdefault(int(f[1]), []).append(int(p))
tot, todo = 0, [root]
while todo:
    p = todo.pop(); tot += stat.get(p, 0); todo += kids.get(p, [])
print(tot)
PY
}
# rss_sampler PID FILE: writes the peak RSS (KiB) of PID's tree to FILE
# every half second until killed.
rss_sampler() {
  python3 - "$1" "$2" <<'PY' &
import os, sys, time
root, out = int(sys.argv[1]), sys.argv[2]; peak = 0
while True:
    kids, rss = {}, {}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            s = open(f'/proc/{p}/stat').read(); st = open(f'/proc/{p}/status').read()
        except OSError: continue
        kids.setdefault(int(s[s.rindex(')')+2:].split()[1]), []).append(int(p))
        for l in st.splitlines():
            if l.startswith('VmRSS:'): rss[int(p)] = int(l.split()[1])
    tot, todo = 0, [root]
    while todo:
        p = todo.pop(); tot += rss.get(p, 0); todo += kids.get(p, [])
    peak = max(peak, tot); open(out, 'w').write(str(peak))
    time.sleep(0.5)
PY
  SAMPLER=$!
}
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/${1%:*}/${1#*:}) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

TICKS=$(getconf CLK_TCK)
mkdir -p "$OUT"
RUNS=$OUT/runs.tsv
printf 'server\tshape\tsessions\tround\taccepted_per_s\te2e_per_s\tp50_ms\tp99_ms\tcpu_ms_per_msg\tpeak_rss_mib\n' >"$RUNS"

run_one() { # server shape sessions round
  local srv=$1 shape=$2 s=$3 r=$4 size=1024 per=1
  [ "$shape" = 100k ] && size=102400
  [ "$shape" = reuse ] && per=100
  "start_$srv"
  PIDS+=("$SPID")
  wait_port "$ADDR" || { echo "$srv did not start" >&2; return 1; }
  sleep 1
  local c0 n0 t0 t1 res e2e
  c0=$(cpu_ticks "$SPID"); n0=$(sinkcount)
  rss_sampler "$SPID" "$W/rss"
  t0=$(date +%s.%N)
  res=$("$W/bin/load" -addr "$ADDR" -n "$N" -c "$s" -size "$size" -per-conn "$per" -to "$TO" || true)
  # Wait for what the server accepted to reach the sink: at most 10
  # minutes, and no longer than 15 s without progress (a server that
  # answered 4xx to part of the load never delivers those).
  local want last=-1 still=0
  want=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get("accepted", 0))' "$res")
  for _ in $(seq 6000); do
    local now=$(( $(sinkcount) - n0 ))
    [ "$now" -ge "$want" ] && break
    if [ "$now" = "$last" ]; then still=$((still + 1)); [ "$still" -ge 150 ] && break; else still=0; last=$now; fi
    sleep 0.1
  done
  t1=$(date +%s.%N)
  local c1 got; c1=$(cpu_ticks "$SPID"); got=$(( $(sinkcount) - n0 ))
  kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
  kill "$SPID"; wait "$SPID" 2>/dev/null || true
  python3 - "$srv" "$shape" "$s" "$r" "$res" "$t0" "$t1" "$c0" "$c1" "$TICKS" "$got" "$(cat "$W/rss")" "$N" >>"$RUNS" <<'PY'
import json, sys
srv, shape, s, r, res = sys.argv[1:6]
t0, t1, c0, c1, tk = map(float, sys.argv[6:11]); got, rss, n = int(sys.argv[11]), int(sys.argv[12]), int(sys.argv[13])
j = json.loads(res or '{}')
print("\t".join(map(str, [srv, shape, s, r, round(j.get("accepted_per_s", 0)), round(got/(t1-t0)), j.get("p50_ms", 0),
      j.get("p99_ms", 0), round(1000*(c1-c0)/tk/max(got, 1), 3), round(rss/1024)])))
if got < n: print(f"{srv}: only {got} of {n} reached the sink", file=sys.stderr)
PY
  log "$(tail -1 "$RUNS")"
}

uptime >"$W/uptime.before"
for r in $(seq "$ROUNDS"); do
  # A B C, then B C A, then C A B: no server always runs first.
  order=($SERVERS); k=$(( (r-1) % ${#order[@]} ))
  order=("${order[@]:k}" "${order[@]:0:k}")
  for shape in $SHAPES; do
    for s in $SESSIONS; do
      for srv in "${order[@]}"; do run_one "$srv" "$shape" "$s" "$r"; done
    done
  done
done
"$W/bin/chart" -in "$RUNS" -out "$OUT/throughput.svg" -shape 1k
python3 "$ROOT/bench/report.py" "$RUNS" "$OUT/RESULTS.md" "$W/uptime.before" \
  "N=$N ROUNDS=$ROUNDS SESSIONS=\"$SESSIONS\" SHAPES=\"$SHAPES\" bench/compare.sh"
log "wrote $OUT/RESULTS.md and $OUT/throughput.svg"
