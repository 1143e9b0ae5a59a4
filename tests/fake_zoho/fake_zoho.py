#!/usr/bin/env python3
"""A fake Zoho accounts server and CRM API on 127.0.0.1, for tests (stdlib only, Python 3.11).

    python3 tests/fake_zoho/fake_zoho.py [--port 0] [--expires-in 3600]

Prints exactly one line, ``http://127.0.0.1:PORT``, on stdout (flushed) and serves until it gets
SIGTERM or SIGINT (then exits 0). See README.md next to this file for the whole interface: the
OAuth endpoints as Zoho answers them (errors as HTTP 200 ``{"error": ...}``, no refresh-token
rotation, the "too many requests" lock-out, 30 live access tokens per grant), the CRM calls the
Zoho SDKs make to find the current user, and the ``/__admin`` API tests drive it with.

Nothing here prints or logs a secret: there is no request log at all.
"""

import argparse
import base64
import hashlib
import json
import secrets
import signal
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: The lock-out answer Zoho gives (HTTP 400) when a refresh token is refreshed too often.
ACCESS_DENIED = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}
CRM_INVALID_TOKEN = {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}
USER_INFO_INVALID_TOKEN = {"code": "INVALID_OAUTHTOKEN", "message": "invalid oauth token"}

DEFAULT_USER = "user@fake-zoho.test"


def token_hash(value):
    """How ``/__admin/stats`` names a refresh token: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def now():
    return time.time()


class State:
    """Everything the fake knows, behind one lock."""

    def __init__(self, expires_in):
        self.lock = threading.Lock()
        self.base_url = None
        self.config = {
            "expires_in": int(expires_in),
            "token_delay_ms": 0,
            "refresh_limit": 10,
            "refresh_window_secs": 600,
            "max_live_access_tokens": 30,
            "fail_token_calls": 0,
        }
        self.clients = {}  # client_id -> {"secret", "redirect_uri"}
        self.users = {}  # email -> {"first_name", "last_name", "zuid"}
        self.default_user = DEFAULT_USER
        self.codes = {}  # code -> {"client_id", "email", "redirect_uri", "challenge"}
        self.grants = {}  # refresh token -> {"client_id", "email", "revoked", "refreshes": deque, "access": deque}
        self.access = {}  # access token -> {"refresh_token", "email", "expires_at", "client_id"}
        self.next_zuid = 700000001
        self.org_id = "800000001"
        self.reset_counters()
        self.user(DEFAULT_USER)

    def reset_counters(self):
        self.stats = {
            "token_calls": 0,
            "refresh_calls": 0,
            "exchange_calls": 0,
            "revoke_calls": 0,
            "access_denied": 0,
            "errors": {},
            "user_info_calls": 0,
            "crm_calls": 0,
            "crm_unauthorized": 0,
            "auth_calls": 0,
            "token_calls_by_client": {},
            "refreshes_by_token": {},
        }

    def error(self, code):
        self.stats["errors"][code] = self.stats["errors"].get(code, 0) + 1
        return {"error": code}

    def user(self, email, first_name=None, last_name=None):
        """The user with this email, created on first use."""
        user = self.users.get(email)
        if user is None:
            local = email.split("@")[0]
            user = {"first_name": local.capitalize(), "last_name": "Tester", "zuid": str(self.next_zuid)}
            self.next_zuid += 1
            self.users[email] = user
        if first_name is not None:
            user["first_name"] = first_name
        if last_name is not None:
            user["last_name"] = last_name
        return user

    def issue_access(self, refresh_token, grant):
        """A new access token for a grant; the oldest live ones die beyond the limit."""
        t = now()
        live = grant["access"]
        while live and (live[0] not in self.access or self.access[live[0]]["expires_at"] <= t):
            self.access.pop(live.popleft(), None)
        token = "1000." + secrets.token_hex(16) + "." + secrets.token_hex(16)
        expires_in = self.config["expires_in"]
        self.access[token] = {
            "refresh_token": refresh_token,
            "email": grant["email"],
            "client_id": grant["client_id"],
            "expires_at": t + expires_in,
        }
        live.append(token)
        while len(live) > self.config["max_live_access_tokens"]:
            self.access.pop(live.popleft(), None)
        return token, expires_in

    def new_grant(self, refresh_token, client_id, email):
        grant = {"client_id": client_id, "email": email, "revoked": False, "refreshes": deque(), "access": deque()}
        self.grants[refresh_token] = grant
        return grant

    def kill_grant(self, refresh_token):
        grant = self.grants.get(refresh_token)
        if grant is None:
            return False
        grant["revoked"] = True
        for token in grant["access"]:
            self.access.pop(token, None)
        grant["access"].clear()
        return True

    def live_access_tokens(self):
        t = now()
        out = {}
        for refresh_token, grant in self.grants.items():
            if grant["revoked"]:
                continue
            n = sum(1 for a in grant["access"] if a in self.access and self.access[a]["expires_at"] > t)
            out[token_hash(refresh_token)] = n
        return out

    def valid_access(self, token):
        """The access token's record when it is live, else None."""
        if not token:
            return None
        record = self.access.get(token)
        if record is None or record["expires_at"] <= now():
            return None
        grant = self.grants.get(record["refresh_token"])
        if grant is None or grant["revoked"]:
            return None
        return record


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeZoho/1.0"
    sys_version = ""

    # No request log (it could carry a token in a query string), no noise on stderr.
    def log_message(self, format, *args):
        pass

    def log_error(self, format, *args):
        pass

    @property
    def state(self):
        return self.server.state

    # ---------------------------------------------------------------------------------------
    # plumbing
    # ---------------------------------------------------------------------------------------

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def form(self, body):
        """Zoho takes the parameters in the query string or in a form body (body wins)."""
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type", "")
        if body and "json" not in ctype:
            params.update(dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))
        return params

    def send_json(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        for prefix in ("Zoho-oauthtoken ", "Bearer "):
            if auth[: len(prefix)].lower() == prefix.lower():
                return auth[len(prefix):].strip()
        return None

    def route(self):
        return urlsplit(self.path).path.rstrip("/") or "/"

    # ---------------------------------------------------------------------------------------
    # dispatch
    # ---------------------------------------------------------------------------------------

    def do_GET(self):
        self.read_body()
        path = self.route()
        parts = path.split("/")
        if path == "/oauth/v2/auth":
            return self.authorize()
        if path == "/oauth/user/info":
            return self.user_info()
        if len(parts) >= 4 and parts[1] == "crm" and parts[2].startswith("v") and parts[2][1:].isdigit():
            return self.crm("/".join(parts[3:]))
        if path == "/__admin/stats":
            return self.admin_stats()
        if path == "/healthz":
            return self.send_json(200, {"status": "ok"})
        return self.send_json(404, {"error": "not_found", "message": "no such route in the fake"})

    def do_POST(self):
        body = self.read_body()
        path = self.route()
        if path == "/oauth/v2/token":
            return self.token(self.form(body))
        if path == "/oauth/v2/token/revoke":
            return self.revoke(self.form(body))
        if path.startswith("/__admin/"):
            return self.admin(path[len("/__admin/"):], body)
        return self.send_json(404, {"error": "not_found", "message": "no such route in the fake"})

    # ---------------------------------------------------------------------------------------
    # accounts server
    # ---------------------------------------------------------------------------------------

    def token(self, form):
        state = self.state
        with state.lock:
            state.stats["token_calls"] += 1
            grant_type = form.get("grant_type")
            by_client = state.stats["token_calls_by_client"]
            client_key = form.get("client_id") or ""
            by_client[client_key] = by_client.get(client_key, 0) + 1
            if grant_type == "refresh_token" and form.get("refresh_token"):
                by_token = state.stats["refreshes_by_token"]
                hashed = token_hash(form["refresh_token"])
                by_token[hashed] = by_token.get(hashed, 0) + 1
            if grant_type == "refresh_token":
                state.stats["refresh_calls"] += 1
            elif grant_type == "authorization_code":
                state.stats["exchange_calls"] += 1
            delay = state.config["token_delay_ms"]
            fail = state.config["fail_token_calls"] > 0
            if fail:
                state.config["fail_token_calls"] -= 1
        if delay > 0:
            time.sleep(delay / 1000.0)
        if fail:
            return self.send_json(503, {"error": "service_unavailable"})
        with state.lock:
            status, answer = self.token_answer(form, grant_type)
        return self.send_json(status, answer)

    def token_answer(self, form, grant_type):
        """(HTTP status, body) of a token call; called with the lock held."""
        state = self.state
        if grant_type not in ("refresh_token", "authorization_code"):
            return 200, state.error("unsupported_grant_type")
        client_id = form.get("client_id")
        client = state.clients.get(client_id or "")
        if client is None:
            return 200, state.error("invalid_client")
        if form.get("client_secret") != client["secret"]:
            return 200, state.error("invalid_client_secret")

        if grant_type == "authorization_code":
            code = state.codes.get(form.get("code") or "")
            if code is None or code["client_id"] != client_id:
                return 200, state.error("invalid_code")
            expected = code["redirect_uri"] or client["redirect_uri"]
            if expected is not None and form.get("redirect_uri") != expected:
                return 200, state.error("invalid_redirect_uri")
            if code["challenge"] is not None:
                verifier = form.get("code_verifier") or ""
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if digest != code["challenge"]:
                    return 200, state.error("invalid_code")
            del state.codes[form["code"]]  # single use, whatever happens next
            refresh_token = "1000." + secrets.token_hex(16) + "." + secrets.token_hex(16)
            grant = state.new_grant(refresh_token, client_id, code["email"])
            access_token, expires_in = state.issue_access(refresh_token, grant)
            return 200, {
                "access_token": access_token,
                "refresh_token": refresh_token,
                "scope": "ZohoCRM.modules.ALL ZohoCRM.users.READ",
                "api_domain": state.base_url,
                "token_type": "Bearer",
                "expires_in": expires_in,
            }

        refresh_token = form.get("refresh_token") or ""
        grant = state.grants.get(refresh_token)
        if grant is None or grant["revoked"] or grant["client_id"] != client_id:
            return 200, state.error("invalid_code")
        t = now()
        window = state.config["refresh_window_secs"]
        while grant["refreshes"] and grant["refreshes"][0] <= t - window:
            grant["refreshes"].popleft()
        if len(grant["refreshes"]) >= state.config["refresh_limit"]:
            state.stats["access_denied"] += 1
            return 400, dict(ACCESS_DENIED)
        grant["refreshes"].append(t)
        access_token, expires_in = state.issue_access(refresh_token, grant)
        return 200, {
            "access_token": access_token,
            "scope": "ZohoCRM.modules.ALL ZohoCRM.users.READ",
            "api_domain": state.base_url,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }

    def revoke(self, form):
        state = self.state
        with state.lock:
            state.stats["revoke_calls"] += 1
            token = form.get("token") or ""
            grant = state.grants.get(token)
            if grant is None or grant["revoked"]:
                answer = state.error("invalid_token")
            else:
                state.kill_grant(token)
                answer = {"status": "success"}
        return self.send_json(200, answer)

    def authorize(self):
        state = self.state
        q = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        with state.lock:
            state.stats["auth_calls"] += 1
            client = state.clients.get(q.get("client_id") or "")
            if client is None:
                return self.send_json(400, state.error("invalid_client"))
            redirect_uri = q.get("redirect_uri")
            if not redirect_uri or (client["redirect_uri"] is not None and redirect_uri != client["redirect_uri"]):
                return self.send_json(400, state.error("invalid_redirect_uri"))
            params = {}
            if q.get("response_type") != "code":
                params["error"] = "unsupported_response_type"
            else:
                email = q.get("login_hint") or state.default_user
                state.user(email)
                code = "1000." + secrets.token_hex(16) + "." + secrets.token_hex(16)
                challenge = q.get("code_challenge") if q.get("code_challenge_method", "S256") == "S256" else None
                state.codes[code] = {
                    "client_id": q["client_id"],
                    "email": email,
                    "redirect_uri": redirect_uri,
                    "challenge": challenge,
                }
                params["code"] = code
            if "state" in q:
                params["state"] = q["state"]
            params["location"] = "us"
            params["accounts-server"] = state.base_url
        split = urlsplit(redirect_uri)
        query = split.query + ("&" if split.query else "") + urlencode(params)
        return self.redirect(urlunsplit((split.scheme, split.netloc, split.path, query, split.fragment)))

    def user_info(self):
        state = self.state
        with state.lock:
            state.stats["user_info_calls"] += 1
            record = state.valid_access(self.bearer())
            if record is None:
                state.stats["crm_unauthorized"] += 1
                return self.send_json(401, USER_INFO_INVALID_TOKEN)
            email = record["email"]
            user = state.user(email)
            answer = {
                "First_Name": user["first_name"],
                "Last_Name": user["last_name"],
                "Display_Name": (user["first_name"] + " " + user["last_name"]).strip(),
                "Email": email,
                "ZUID": int(user["zuid"]),
            }
        return self.send_json(200, answer)

    # ---------------------------------------------------------------------------------------
    # CRM API (as much as the SDKs need to know who the token belongs to)
    # ---------------------------------------------------------------------------------------

    def crm(self, rest):
        state = self.state
        with state.lock:
            state.stats["crm_calls"] += 1
            record = state.valid_access(self.bearer())
            if record is None:
                state.stats["crm_unauthorized"] += 1
                return self.send_json(401, CRM_INVALID_TOKEN)
            email = record["email"]
            user = dict(state.user(email))
            org_id = state.org_id
        if rest == "users":
            full = (user["first_name"] + " " + user["last_name"]).strip()
            answer = {
                "users": [{
                    "id": user["zuid"],
                    "email": email,
                    "full_name": full,
                    "first_name": user["first_name"],
                    "last_name": user["last_name"],
                    "status": "active",
                    "zuid": user["zuid"],
                }],
                "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False},
            }
            return self.send_json(200, answer)
        if rest == "org":
            answer = {"org": [{
                "id": org_id,
                "zgid": org_id,
                "company_name": "Fake Zoho Org",
                "primary_email": email,
                "domain_name": "org" + org_id,
                "country_code": "US",
            }]}
            return self.send_json(200, answer)
        return self.send_json(404, {"code": "INVALID_URL_PATTERN", "details": {},
                                    "message": "Please check if the URL trying to access is a correct one",
                                    "status": "error"})

    # ---------------------------------------------------------------------------------------
    # admin API
    # ---------------------------------------------------------------------------------------

    def admin_stats(self):
        state = self.state
        with state.lock:
            stats = json.loads(json.dumps(state.stats))
            stats["live_access_tokens"] = state.live_access_tokens()
            stats["config"] = dict(state.config)
        return self.send_json(200, stats)

    def admin(self, what, body):
        state = self.state
        try:
            data = json.loads(body.decode() or "{}") if body else {}
        except ValueError:
            return self.send_json(400, {"error": "bad_json"})
        if not isinstance(data, dict):
            return self.send_json(400, {"error": "bad_json"})

        def need(*names):
            missing = [n for n in names if not isinstance(data.get(n), str) or not data.get(n)]
            if missing:
                raise KeyError(", ".join(missing))

        try:
            with state.lock:
                if what == "clients":
                    need("client_id", "client_secret")
                    state.clients[data["client_id"]] = {
                        "secret": data["client_secret"],
                        "redirect_uri": data.get("redirect_uri") or None,
                    }
                    return self.send_json(200, {"client_id": data["client_id"]})
                if what == "codes":
                    need("code", "client_id")
                    email = data.get("email") or state.default_user
                    state.user(email)
                    state.codes[data["code"]] = {
                        "client_id": data["client_id"],
                        "email": email,
                        "redirect_uri": data.get("redirect_uri") or None,
                        "challenge": data.get("code_challenge") or None,
                    }
                    return self.send_json(200, {"email": email})
                if what == "refresh_tokens":
                    need("refresh_token", "client_id")
                    email = data.get("email") or state.default_user
                    state.user(email)
                    state.kill_grant(data["refresh_token"])
                    state.new_grant(data["refresh_token"], data["client_id"], email)
                    return self.send_json(200, {"email": email, "hash": token_hash(data["refresh_token"])})
                if what == "users":
                    need("email")
                    user = state.user(data["email"], data.get("first_name"), data.get("last_name"))
                    return self.send_json(200, {"email": data["email"], "zuid": user["zuid"]})
                if what == "default_user":
                    need("email")
                    state.user(data["email"])
                    state.default_user = data["email"]
                    return self.send_json(200, {"email": data["email"]})
                if what == "config":
                    for key in ("expires_in", "token_delay_ms", "refresh_limit", "refresh_window_secs",
                                "max_live_access_tokens", "fail_token_calls"):
                        if key in data:
                            value = data[key]
                            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                                return self.send_json(400, {"error": "bad_config", "field": key})
                            state.config[key] = value
                    return self.send_json(200, dict(state.config))
                if what == "reset":
                    state.reset_counters()
                    return self.send_json(200, {"status": "reset"})
        except KeyError as missing:
            return self.send_json(400, {"error": "missing_field", "field": str(missing).strip("'")})
        return self.send_json(404, {"error": "not_found", "message": "no such admin route"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv=None):
    parser = argparse.ArgumentParser(description="A fake Zoho accounts server and CRM API for tests")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--expires-in", type=int, default=3600, help="access token lifetime in seconds")
    args = parser.parse_args(argv)

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args.expires_in)
    server.state.base_url = "http://127.0.0.1:%d" % server.server_address[1]

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(server.state.base_url + "\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
