#!/usr/bin/env python3
"""Write gremlins' results into docs/mutation.md (called by mutation.sh).

Each package gets a block between its own markers, replaced when that
package is run again and kept otherwise; the summary table at the top of
the generated part is rebuilt from every block. Text outside the markers is
left alone, so the notes on particular mutants stay.
"""

import argparse
import datetime
import json
import os
import re

BEGIN, END = "<!-- mutation:begin -->", "<!-- mutation:end -->"
BLOCK_RE = re.compile(r"<!-- package (\S+) (\{.*?\}) -->\n### `\S+`\n\n(.*?)<!-- /package \1 -->\n", re.S)
# Statuses that mean the tests noticed the mutant.
DETECTED = ("KILLED", "TIMED OUT")


def pct(n, d):
    return "n/a" if d == 0 else "%.1f %%" % (100.0 * n / d)


def in_case(pkg, file_name, line):
    """Whether a source line is a switch case clause: gremlins v0.6.0 reads
    mutants there as not covered and never runs them (go-gremlins/gremlins
    issue 298), because Go's coverage has no block for a case expression."""
    try:
        with open(os.path.join(pkg, file_name)) as f:
            src = f.read().splitlines()
    except OSError:
        return False
    return 0 < line <= len(src) and src[line - 1].lstrip().startswith("case ")


def summarise(pkg, path, seconds, failed, command, today):
    """One package's block: its numbers and every mutant not detected."""
    if failed is not None:
        data = {"date": today, "failed": failed}
        body = "Not scored on %s: gremlins ended with status %s (124: over the time budget).\n\n" % (today, failed)
        return data, body
    with open(path) as f:
        res = json.load(f)
    counts, missed = {}, []
    for fl in res.get("files", []):
        for m in fl.get("mutations", []):
            status = m["status"]
            if status == "NOT COVERED" and in_case(pkg, fl["file_name"], m["line"]):
                status = m["status"] = "NOT RUN (case)"
            counts[status] = counts.get(status, 0) + 1
            if status not in DETECTED + ("NOT VIABLE",):
                missed.append("%s %s:%d:%d %s" % (m["status"], fl["file_name"], m["line"], m["column"], m["type"]))
    killed = counts.get("KILLED", 0)
    timed = counts.get("TIMED OUT", 0)
    lived = counts.get("LIVED", 0)
    uncovered = counts.get("NOT COVERED", 0)
    data = {"date": today, "killed": killed, "timed_out": timed, "lived": lived, "not_covered": uncovered,
            "case_not_run": counts.get("NOT RUN (case)", 0),
            "not_viable": counts.get("NOT VIABLE", 0), "seconds": seconds}
    lines = ["Run %s, %s s: `%s`." % (today, seconds, command), ""]
    if missed:
        lines.append("Mutants the tests did not detect:")
        lines.append("")
        lines.extend("- " + m for m in sorted(missed))
    else:
        lines.append("Every mutant was detected.")
    return data, "\n".join(lines) + "\n\n"


def table(blocks):
    rows = ["| package | killed | timed out | lived | not covered | in a case, not run | detected of tested | detected of all | date |",
            "|---|---|---|---|---|---|---|---|---|"]
    for pkg in sorted(blocks):
        d = blocks[pkg][0]
        if "failed" in d:
            rows.append("| `%s` | | | | | | not scored (status %s) | | %s |" % (pkg, d["failed"], d["date"]))
            continue
        det = d["killed"] + d["timed_out"]
        rows.append("| `%s` | %d | %d | %d | %d | %d | %s | %s | %s |" % (
            pkg, d["killed"], d["timed_out"], d["lived"], d["not_covered"], d.get("case_not_run", 0),
            pct(det, det + d["lived"]), pct(det, det + d["lived"] + d["not_covered"]), d["date"]))
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--doc", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("packages", nargs="+")
    a = ap.parse_args()
    today = datetime.date.today().isoformat()
    with open(a.doc) as f:
        doc = f.read()
    head, rest = doc.split(BEGIN, 1)
    gen, tail = rest.split(END, 1)
    blocks = {m.group(1): (json.loads(m.group(2)), m.group(3)) for m in BLOCK_RE.finditer(gen)}
    for pkg in a.packages:
        name = pkg.replace("/", "_")
        base = os.path.join(a.dir, name)
        failed = None
        if os.path.exists(base + ".failed"):
            failed = open(base + ".failed").read().strip()
        seconds = open(base + ".seconds").read().strip() if os.path.exists(base + ".seconds") else "?"
        blocks[pkg] = summarise(pkg, base + ".json", seconds, failed, a.command, today)
    out = [BEGIN, "\n", table(blocks), "\n"]
    for pkg in sorted(blocks):
        data, body = blocks[pkg]
        out.append("<!-- package %s %s -->\n### `%s`\n\n%s<!-- /package %s -->\n" % (
            pkg, json.dumps(data, sort_keys=True), pkg, body, pkg))
    with open(a.doc, "w") as f:
        f.write(head + "".join(out) + END + tail)


if __name__ == "__main__":
    main()
