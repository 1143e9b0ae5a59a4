#!/usr/bin/env python3
"""A fake OAuth 2.0 provider for the refresh-storm benchmark (python3 stdlib only).

POST /token    grant_type=refresh_token (or anything else): counts the call, waits --delay-ms,
               then answers {"access_token": "...", "token_type": "Bearer", "expires_in": 3600}
GET  /count    {"token_calls": N, "refresh_calls": N, "max_in_flight": N}
POST /reset    sets the counters to 0
GET  /authorize  a stub (the broker's config needs an authorize_url)

Listens on 127.0.0.1:--port (0: any free port); writes the port to --port-file when given.
"""
import argparse
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"token_calls": 0, "refresh_calls": 0, "in_flight": 0, "max_in_flight": 0}


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
                self._send(200, {k: STATE[k] for k in ("token_calls", "refresh_calls", "max_in_flight")})
        elif self.path.startswith("/authorize"):
            self._send(200, {"stub": True})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.startswith("/reset"):
            with LOCK:
                for k in STATE:
                    STATE[k] = 0
            self._send(200, {"reset": True})
            return
        if not self.path.startswith("/token"):
            self._send(404, {"error": "not_found"})
            return
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        grant = (form.get("grant_type") or [""])[0]
        with LOCK:
            STATE["token_calls"] += 1
            if grant == "refresh_token":
                STATE["refresh_calls"] += 1
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--delay-ms", type=int, default=200)
    args = ap.parse_args()
    Handler.delay = args.delay_ms / 1000.0
    ThreadingHTTPServer.daemon_threads = True
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
