#!/usr/bin/env bash
# The seed-002 flood drill: forged bounces (null sender, our users'
# addresses without a BATV tag) as fast as they go over many connections,
# while ordinary mail arrives on submission at a steady rate and is
# relayed to a sink that times its arrival. Run against kanmon and
# against Postfix (its default configuration, Maildir delivery for the
# domain, the sink's domain relayed) one after the other.
#
#   bench/flood-drill.sh            # 100,000 bounces, 1,000 ordinary at 20/s
#   DRILL_BOUNCES=20000 DRILL_ORDINARY=200 bench/flood-drill.sh
#
# Knobs (environment): DRILL_BOUNCES, DRILL_ORDINARY, DRILL_RATE (ordinary
# messages per second), DRILL_CONNS (flood connections at once),
# DRILL_PER_CONN (bounces per flood connection). The flood lasts at least
# as long as the ordinary stream. Needs go and postfix (Debian package);
# Postfix runs as a private instance on loopback, as in the tests.
# Writes bench/results/flood-drill.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results/flood-drill.md
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for server in Kanmon Postfix; do
  DRILL_REPORT="$rows" go test -count=1 -run NONE -bench "FloodDrill$server\$" \
    -benchtime=1x -timeout 60m ./bench/flooddrill
done
{
  echo "# Flood drill (seed 002)"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) with \`bench/flood-drill.sh\`" \
    "(bounces ${DRILL_BOUNCES:-100000}, ordinary ${DRILL_ORDINARY:-1000} at ${DRILL_RATE:-20}/s," \
    "${DRILL_CONNS:-50} flood connections of ${DRILL_PER_CONN:-10} bounces)."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
    "$(go version | cut -d' ' -f3), Postfix $(postconf -d mail_version 2>/dev/null | cut -d' ' -f3)," \
    "load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "Ordinary latency is from the start of the submission to the message's"
  echo "arrival at the sink. Server CPU counts every process of the server"
  echo "(Postfix: the master and all its children, reaped ones included) over"
  echo "the whole drill, ordinary mail included."
  echo
  cat <<'H'
| server | forged bounces sent | refused at RCPT | taken (queued) | other answers | ordinary delivered | ordinary p50 | ordinary p99 | queue files start → max → end | server CPU | forgery counter moved after |
|---|---|---|---|---|---|---|---|---|---|---|
H
  cat "$rows"
} >"$out"
echo "wrote $out"
