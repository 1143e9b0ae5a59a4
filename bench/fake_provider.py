#!/usr/bin/env python3
"""A fake OAuth 2.0 provider for the refresh-storm and refresh-wave benchmarks (python3 stdlib only).

POST /token    grant_type=refresh_token (or anything else): counts the call, waits --delay-ms,
               then answers {"access_token": "...", "token_type": "Bearer", "expires_in": 3600}
               (no new refresh token: the broker keeps the one it has)
GET  /count    {"token_calls": N, "refresh_calls": N, "max_in_flight": N, "in_flight": N,
                "distinct_refresh_tokens": N, "first_refresh_ms": T, "last_refresh_ms": T,
                "last_refresh_done_ms": T, "late_refreshes": N}
               T: ms since the epoch (null before the first refresh call): the first refresh call's
               arrival, the last one's arrival, and when the last answer to one was sent.
               late_refreshes: refresh calls answered after the expiry their refresh token names
               (a refresh token ending in ".exp<ms since the epoch>"; the wave's tokens do)
POST /reset    sets the counters to 0 (and forgets the refresh tokens seen)
GET  /authorize  a stub (the broker's config needs an authorize_url)

One thread per connection (ThreadingHTTPServer) and a listen backlog of 1024, so any number of
concurrent keep-alive connections from the broker is served at once.
Listens on 127.0.0.1:--port (0: any free port); writes the port to --port-file when given.
"""
import argparse
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
COUNTERS = ("token_calls", "refresh_calls", "in_flight", "max_in_flight", "late_refreshes")
TIMES = ("first_refresh_ms", "last_refresh_ms", "last_refresh_done_ms")
STATE = {}
SEEN = set()  # refresh tokens seen since the last reset


def reset():
    """Under LOCK."""
    STATE.update({k: 0 for k in COUNTERS})
    STATE.update({k: None for k in TIMES})
    SEEN.clear()


reset()


def now_ms():
    return int(time.time() * 1000)


def expiry_of(refresh_token):
    """The expiry a refresh token names ("….exp<ms>"), or None."""
    _, sep, tail = refresh_token.rpartition(".exp")
    return int(tail) if sep and tail.isdigit() else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.2

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/count"):
            with LOCK:
                body = dict(STATE, distinct_refresh_tokens=len(SEEN))
            self._send(200, body)
        elif self.path.startswith("/authorize"):
            self._send(200, {"stub": True})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.startswith("/reset"):
            with LOCK:
                reset()
            self._send(200, {"reset": True})
            return
        if not self.path.startswith("/token"):
            self._send(404, {"error": "not_found"})
            return
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        grant = (form.get("grant_type") or [""])[0]
        refresh_token = (form.get("refresh_token") or [""])[0]
        refresh = grant == "refresh_token"
        with LOCK:
            STATE["token_calls"] += 1
            if refresh:
                STATE["refresh_calls"] += 1
                SEEN.add(refresh_token)
                t = now_ms()
                if STATE["first_refresh_ms"] is None:
                    STATE["first_refresh_ms"] = t
                STATE["last_refresh_ms"] = t
            STATE["in_flight"] += 1
            STATE["max_in_flight"] = max(STATE["max_in_flight"], STATE["in_flight"])
            n = STATE["token_calls"]
        try:
            time.sleep(self.delay)
            self._send(200, {
                "access_token": f"fake.a.{n}.{int(time.time() * 1000)}",
                "token_type": "Bearer",
                "expires_in": 3600,
            })
        finally:
            with LOCK:
                STATE["in_flight"] -= 1
                if refresh:
                    t = now_ms()
                    STATE["last_refresh_done_ms"] = t
                    exp = expiry_of(refresh_token)
                    if exp is not None and t > exp:
                        STATE["late_refreshes"] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--delay-ms", type=int, default=200)
    args = ap.parse_args()
    Handler.delay = args.delay_ms / 1000.0
    ThreadingHTTPServer.daemon_threads = True
    # socketserver's default backlog is 5: a burst of new connections (the wave's first
    # concurrent refreshes) would overflow it and wait for SYN retransmits (1 s and more).
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"fake provider on 127.0.0.1:{port}, delay {args.delay_ms} ms", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
