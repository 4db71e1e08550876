#!/usr/bin/env python3
"""Parse delivery status notifications with Python's own email package.

An independent MIME parser for kanmon's end-to-end DSN test: for each file
named on the command line it prints one JSON object describing what the
parser found (content types, the report-type parameter, the fields of the
message/delivery-status part block by block, the headers in the
text/rfc822-headers part, every defect the parser noticed). The Go test
asserts on that; this script only reports and judges nothing.
"""

import email
import email.parser
import email.policy
import email.utils
import json
import sys


def fields(msg):
    """The header fields of msg as a dict of name -> list of values."""
    out = {}
    for name, value in msg.items():
        out.setdefault(name, []).append(str(value))
    return out


def defects(msg):
    """Every defect the parser recorded anywhere in msg."""
    found = []
    for part in msg.walk():
        found.extend(type(d).__name__ for d in part.defects)
    return found


def date_ok(value):
    """Whether value is an RFC 5322 date the standard library can read."""
    try:
        return email.utils.parsedate_to_datetime(value) is not None
    except (TypeError, ValueError):
        return False


def describe(path):
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    report = {
        "file": path,
        "content_type": msg.get_content_type(),
        "report_type": msg.get_param("report-type"),
        "is_multipart": msg.is_multipart(),
        "headers": fields(msg),
        "defects": defects(msg),
        "parts": [],
        "text": "",
        "per_message": {},
        "recipients": [],
        "dates_ok": {},
        "original_headers": {},
    }
    if not msg.is_multipart():
        return report
    for part in msg.get_payload():
        ctype = part.get_content_type()
        report["parts"].append(ctype)
        if ctype == "text/plain" and not report["text"]:
            report["text"] = part.get_content()
        elif ctype == "message/delivery-status":
            # The parser splits the body into blocks of fields (RFC 3464
            # section 2.1): the per-message block, then one per recipient.
            blocks = part.get_payload()
            if blocks:
                report["per_message"] = fields(blocks[0])
                report["recipients"] = [fields(b) for b in blocks[1:]]
            for block in blocks:
                for name in ("Arrival-Date", "Last-Attempt-Date", "Will-Retry-Until"):
                    for value in block.get_all(name) or []:
                        report["dates_ok"][name + ": " + str(value)] = date_ok(str(value))
        elif ctype == "text/rfc822-headers":
            inner = email.parser.HeaderParser(policy=email.policy.default).parsestr(part.get_content())
            report["original_headers"] = fields(inner)
    return report


def main(paths):
    json.dump([describe(p) for p in paths], sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
