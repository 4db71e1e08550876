#!/usr/bin/env python3
"""Writes bench/results/RESULTS.md from compare.sh's runs.tsv: medians per
server, shape and sessions, kanmon's ratio to each other server, machine
facts and the exact command."""
import csv, os, platform, statistics, subprocess, sys

runs, out, uptime_file, command = sys.argv[1:5]
rows = list(csv.DictReader(open(runs), delimiter="\t"))


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


cols = ["accepted_per_s", "e2e_per_s", "p50_ms", "p99_ms", "cpu_ms_per_msg", "peak_rss_mib"]
med = {}
for r in rows:
    med.setdefault((r["shape"], int(r["sessions"]), r["server"]), []).append(r)
cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
pf_version = sh("postconf -d mail_version 2>/dev/null | cut -d= -f2")
chq_version = sh("dpkg-query -W -f='${Version}' chasquid")
lines = ["# Side by side: kanmon, Postfix, chasquid", "",
         "Written by `bench/compare.sh` (see bench/README.md). Medians over rounds; servers alternated in each round.", "",
         "## Machine", "",
         f"- CPU: {cpu_model}, `nproc` {os.cpu_count()}",
         f"- kernel {platform.release()}; {sh('go version')}",
         f"- Postfix {pf_version}, chasquid {chq_version} (Debian's package)",
         f"- load before the run: `{open(uptime_file).read().strip()}`", "",
         "## Command", "", "    " + command, "",
         "## Results", "",
         "| shape | sessions | server | accepted msg/s | end to end msg/s | p50 ms | p99 ms | CPU ms/msg | peak RSS MiB | kanmon accepted × | kanmon CPU ÷ |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for key in sorted(med, key=lambda k: (k[0], k[1], k[2] != "kanmon", k[2])):
    shape, s, srv = key
    m = {c: statistics.median(float(r[c]) for r in med[key]) for c in cols}
    k = med.get((shape, s, "kanmon"))
    ratio = cpu = ""
    if k and srv != "kanmon":
        ka = statistics.median(float(r["accepted_per_s"]) for r in k)
        kc = statistics.median(float(r["cpu_ms_per_msg"]) for r in k)
        ratio = f"{ka / m['accepted_per_s']:.2f}" if m["accepted_per_s"] else ""
        cpu = f"{m['cpu_ms_per_msg'] / kc:.2f}" if kc else ""
    lines.append(f"| {shape} | {s} | {srv} | {m['accepted_per_s']:.0f} | {m['e2e_per_s']:.0f} | {m['p50_ms']:.1f} | "
                 f"{m['p99_ms']:.1f} | {m['cpu_ms_per_msg']:.3f} | {m['peak_rss_mib']:.0f} | {ratio} | {cpu} |")
lines += ["", "Shapes: `1k` = 1 KiB, one message per connection; `100k` = 100 KiB; `reuse` = 1 KiB, 100 messages per connection.",
          "\"kanmon accepted ×\" is kanmon's accepted rate divided by the server's; \"kanmon CPU ÷\" the server's CPU per message divided by kanmon's.",
          "", "![throughput against sessions](throughput.svg)", "", "Every run: `runs.tsv`."]
open(out, "w").write("\n".join(lines) + "\n")
