#!/usr/bin/env python3
"""A webhook receiver on 127.0.0.1 for tests, which checks every delivery with the Standard Webhooks
reference library (``standardwebhooks`` from PyPI), so the broker's signing is verified by an
implementation that is not its own. Started through ``tests/webhooks/run-receiver.sh``, which makes
the venv that has the library.

    run-receiver.sh --secret whsec_<base64> [--port 0] [--port-file PATH] [--mode up|down]
    run-receiver.sh --self-test

--secret     the endpoint secret, ``whsec_`` + base64 of the key bytes (required unless
             --self-test)
--port       port on 127.0.0.1 (default 0: any free one)
--port-file  once listening, the bound port (decimal, then a newline) is written to PATH.tmp and
             renamed to PATH, so a reader never sees a partial file
--mode       the starting mode, ``up`` (default) or ``down``
--self-test  sign a sample payload with the library and verify it, check the library against the
             Standard Webhooks example vector and against a stdlib HMAC, then run one receiver on a
             free port and send it a good, a badly signed and a refused delivery; prints "ok" on
             stdout and exits 0, or exits 1 with the reason on stderr

HTTP (HTTP/1.1, keep-alive; every answer has a Content-Length, 0 when it has no body):

POST /hooks/<anything>
    mode "down": 503, nothing recorded, only the "refused" counter goes up.
    mode "up": ``Webhook(secret).verify(body, headers)`` with the raw body bytes and the request
    headers as a plain dict with lowercase names (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``; the library also rejects timestamps more than 5 minutes off).
      verified, body JSON -> 204 and the record
        {"verified": true, "path": "/hooks/...", "id": <webhook-id>,
         "timestamp": <webhook-timestamp header, a string>,
         "signature": <webhook-signature header>, "payload": <body parsed as JSON>,
         "received_at_ms": <Unix time in ms, an int>}
      not verified -> 400 and the record
        {"verified": false, "error": "<str of the exception>", "path": "/hooks/...",
         "id": <webhook-id or null>}
      (a body whose signature matches but that is not JSON counts as not verified, with an error
      starting "signature matches but the body is not JSON")
GET /received
    200 {"records": [<every record, in arrival order>], "refused": <int>}
POST /mode   (body "up" or "down", surrounding whitespace ignored)
    204; anything else 400
Anything else: 404 (405 for a known path with the wrong method).

No request log; stdout stays empty except for "ok" of --self-test. SIGTERM or SIGINT: exits 0.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


class State:
    def __init__(self, webhook, mode):
        self.webhook = webhook
        self.lock = threading.Lock()
        self.mode = mode
        self.records = []
        self.refused = 0


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "webhooks-receiver"

    def log_message(self, format, *args):
        pass

    @property
    def state(self):
        return self.server.state

    # -------------------------------------------------------------------------------- body & answers
    def read_body(self):
        """The raw request body: Content-Length or chunked; none at all is an empty body."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size == 0:
                    # trailers, up to the empty line
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if length < 0:
            raise BadRequest("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def answer(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def handle_one(self, method):
        try:
            body = self.read_body()
        except BadRequest as e:
            # The stream can't be trusted past a body we could not frame.
            self.close_connection = True
            return self.answer(400, {"error": str(e)})
        path = self.path.split("?", 1)[0]
        if path.startswith("/hooks/"):
            if method != "POST":
                return self.answer(405)
            return self.hook(path, body)
        if path == "/received":
            if method != "GET":
                return self.answer(405)
            with self.state.lock:
                snapshot = {"records": list(self.state.records), "refused": self.state.refused}
            return self.answer(200, snapshot)
        if path == "/mode":
            if method != "POST":
                return self.answer(405)
            mode = body.decode("utf-8", "replace").strip()
            if mode not in ("up", "down"):
                return self.answer(400, {"error": "mode must be up or down"})
            with self.state.lock:
                self.state.mode = mode
            return self.answer(204)
        return self.answer(404)

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PUT(self):
        self.handle_one("PUT")

    def do_DELETE(self):
        self.handle_one("DELETE")

    # -------------------------------------------------------------------------------------- hooks
    def hook(self, path, body):
        with self.state.lock:
            if self.state.mode == "down":
                self.state.refused += 1
                refused = True
            else:
                refused = False
        if refused:
            return self.answer(503)

        headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        msg_id = headers.get("webhook-id")
        try:
            self.state.webhook.verify(body, headers, json_parse=False)
        except Exception as e:  # WebhookVerificationError, or anything else the library raises
            return self.record(400, {"verified": False, "error": str(e), "path": path, "id": msg_id})
        try:
            payload = json.loads(body)
        except ValueError as e:
            error = "signature matches but the body is not JSON: %s" % e
            return self.record(400, {"verified": False, "error": error, "path": path, "id": msg_id})
        return self.record(204, {
            "verified": True,
            "path": path,
            "id": msg_id,
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "payload": payload,
            "received_at_ms": int(time.time() * 1000),
        })

    def record(self, status, rec):
        with self.state.lock:
            self.state.records.append(rec)
        return self.answer(status)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def make_server(secret, port, mode):
    server = Server(("127.0.0.1", port), Handler)
    server.state = State(Webhook(secret), mode)
    return server


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- self-test
def self_test():
    import http.client
    from datetime import datetime, timezone

    import standardwebhooks

    def check(cond, what):
        if not cond:
            raise AssertionError(what)

    # The library against the Standard Webhooks example (the broker's signing.rs test uses it too).
    ref = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    got = ref.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(1614265330, timezone.utc),
                   b'{"test": 2432232314}')
    check(got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "reference vector: got %s" % got)

    # Sign a sample payload now and verify it, headers as a plain lowercase dict.
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    wh = Webhook(secret)
    msg_id = "msg_selftest"
    now = int(time.time())
    payload = json.dumps({"type": "token.refreshed", "data": {"n": 1}}).encode()
    sig = wh.sign(msg_id, datetime.fromtimestamp(now, timezone.utc), payload)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": sig}
    check(wh.verify(payload, headers) == json.loads(payload), "verify of a fresh signature")
    # ... and the same signature by hand (stdlib HMAC), as the broker computes it.
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), now, payload), hashlib.sha256).digest()
    check(sig == "v1," + base64.b64encode(mac).decode(), "library and stdlib HMAC disagree")
    try:
        wh.verify(payload + b" ", headers)
    except Exception:
        pass
    else:
        raise AssertionError("a tampered body verified")

    # One receiver on a free port: a good, a badly signed and a refused delivery.
    server = make_server(secret, 0, "up")
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one keep-alive connection

        def call(method, path, body=b"", hdrs=None):
            conn.request(method, path, body=body, headers=hdrs or {})
            resp = conn.getresponse()
            return resp.status, resp.read()

        status, _ = call("POST", "/hooks/selftest", payload, headers)
        check(status == 204, "good delivery: HTTP %d" % status)
        bad = dict(headers, **{"webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode()})
        status, _ = call("POST", "/hooks/selftest", payload, bad)
        check(status == 400, "badly signed delivery: HTTP %d" % status)
        check(call("POST", "/mode", b"down")[0] == 204, "mode down")
        status, _ = call("POST", "/hooks/selftest", payload, headers)
        check(status == 503, "delivery while down: HTTP %d" % status)
        check(call("POST", "/mode", b"up")[0] == 204, "mode up")
        status, body = call("GET", "/received")
        check(status == 200, "GET /received: HTTP %d" % status)
        got = json.loads(body)
        recs = got["records"]
        check(got["refused"] == 1 and len(recs) == 2, "received: %s" % got)
        check(recs[0]["verified"] is True and recs[0]["id"] == msg_id
              and recs[0]["payload"] == json.loads(payload) and recs[0]["signature"] == sig,
              "first record: %s" % recs[0])
        check(recs[1]["verified"] is False and recs[1]["error"] == "No matching signature found",
              "second record: %s" % recs[1])
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    print("standardwebhooks %s" % getattr(standardwebhooks, "__version__", "?"), file=sys.stderr)
    print("ok")
    return 0


# ------------------------------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(
        description="A webhook receiver that verifies deliveries with the standardwebhooks library")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    parser.add_argument("--secret", help="the endpoint secret, whsec_<base64>")
    parser.add_argument("--mode", choices=("up", "down"), default="up", help="starting mode")
    parser.add_argument("--self-test", action="store_true", help="check the library and exit")
    args = parser.parse_args(argv)

    if args.self_test:
        try:
            return self_test()
        except Exception as e:
            print("self-test failed: %s: %s" % (type(e).__name__, e), file=sys.stderr)
            return 1

    if not args.secret:
        parser.error("--secret is required")
    try:
        server = make_server(args.secret, args.port, args.mode)
    except (ValueError, TypeError, RuntimeError) as e:  # binascii.Error is a ValueError
        print("receiver.py: bad --secret: %s" % type(e).__name__, file=sys.stderr)
        return 2
    except Exception as e:
        if type(e).__name__ == "EmptyWebhookSecretError":
            print("receiver.py: bad --secret: empty", file=sys.stderr)
            return 2
        raise

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if args.port_file:
            write_port_file(args.port_file, server.server_address[1])
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
