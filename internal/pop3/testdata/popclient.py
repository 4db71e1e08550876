#!/usr/bin/env python3
"""POP3 client for kanmon's tests, built on Python's standard poplib.

usage: popclient.py HOST PORT MODE CAFILE USER PASS OP...

MODE is plain (no TLS), stls (poplib.POP3 + stls()) or ssl (POP3_SSL).
The server certificate is verified against CAFILE, host name included.
Each OP prints one JSON object on a line; an error does not stop the run.
OPs: capa, user, login (USER+PASS), auth (AUTH PLAIN via poplib's
_shortcmd), stat, list, uidl, retr:N, top:N:L, dele:N, rset, noop,
quit, close (drop the connection without QUIT).
"""
import base64
import json
import poplib
import ssl
import sys

poplib._MAXLINE = 1 << 20  # the byte-exact test has lines over 2048 octets


def out(**kw):
    print(json.dumps(kw), flush=True)


def main():
    host, port, mode, cafile, user, password = sys.argv[1:7]
    ops = sys.argv[7:]
    ctx = ssl.create_default_context(cafile=cafile)
    if mode == "ssl":
        p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=30)
    else:
        p = poplib.POP3(host, int(port), timeout=30)
    out(op="welcome", ok=True, resp=p.getwelcome().decode("latin-1"))
    if mode == "stls":
        try:
            out(op="stls", ok=True, resp=p.stls(context=ctx).decode("latin-1"))
        except Exception as e:  # noqa: BLE001
            out(op="stls", ok=False, error=repr(e))
            return
    for op in ops:
        name, *args = op.split(":")
        try:
            if name == "capa":
                out(op=op, ok=True, caps=sorted(p.capa().keys()))
            elif name == "user":
                out(op=op, ok=True, resp=p.user(user).decode("latin-1"))
            elif name == "login":
                p.user(user)
                out(op=op, ok=True, resp=p.pass_(password).decode("latin-1"))
            elif name == "auth":
                ir = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
                out(op=op, ok=True, resp=p._shortcmd("AUTH PLAIN " + ir.decode()).decode("latin-1"))
            elif name == "stat":
                count, size = p.stat()
                out(op=op, ok=True, count=count, size=size)
            elif name in ("list", "uidl"):
                resp, lines, _ = getattr(p, name)()
                out(op=op, ok=True, resp=resp.decode("latin-1"), lines=[l.decode("latin-1") for l in lines])
            elif name in ("retr", "top"):
                if name == "retr":
                    resp, lines, octets = p.retr(int(args[0]))
                else:
                    resp, lines, octets = p.top(int(args[0]), int(args[1]))
                data = b"\r\n".join(lines) + (b"\r\n" if lines else b"")
                out(op=op, ok=True, resp=resp.decode("latin-1"), octets=octets,
                    data=base64.b64encode(data).decode())
            elif name == "dele":
                out(op=op, ok=True, resp=p.dele(int(args[0])).decode("latin-1"))
            elif name == "rset":
                out(op=op, ok=True, resp=p.rset().decode("latin-1"))
            elif name == "noop":
                out(op=op, ok=True, resp=p.noop().decode("latin-1"))
            elif name == "quit":
                out(op=op, ok=True, resp=p.quit().decode("latin-1"))
            elif name == "close":
                p.close()
                out(op=op, ok=True)
            else:
                out(op=op, ok=False, error="unknown op")
        except poplib.error_proto as e:
            msg = e.args[0]
            out(op=op, ok=False, error=msg.decode("latin-1") if isinstance(msg, bytes) else str(msg))
        except Exception as e:  # noqa: BLE001
            out(op=op, ok=False, error=repr(e))


if __name__ == "__main__":
    main()
