"""A thundering herd through the real SDK and the managed BrokerTokenStore (not a pytest module).

Run with the venv's python (venv.sh prints it):

    BROKER_URL=http://127.0.0.1:8080 TOKEN_BROKER_JWT=... USER_NAME=alice@example.com \\
    FAKE_ZOHO_URL=http://127.0.0.1:PORT [THREADS=12] [FORBIDDEN=secret1,refresh1] \\
    [CACHE_SECONDS=0] [MIN_VALIDITY=60] [TIMEOUT=30] \\
        python clients/python/tests/storm.py

BROKER_URL         the broker (TOKEN_BROKER_URL is taken too)
TOKEN_BROKER_JWT   a JWT with tokens:read tokens:access tokens:write (no tokens:secrets)
USER_NAME          the user of a token stored in the broker (typically with an expired access token)
FAKE_ZOHO_URL      the fake Zoho: the SDK's environment (accounts server and CRM API) points at it
THREADS            how many threads start at once behind a barrier (default 12)
FORBIDDEN          comma-separated strings that must appear in no broker answer the adapter
                   receives and in no SDK token (client secrets, refresh tokens)
CACHE_SECONDS      the store's cache_seconds (default 0: every thread asks the broker itself)
MIN_VALIDITY       the store's min_validity (default 60)
TIMEOUT            the store's HTTP timeout in seconds (default 30)

Each thread initialises the SDK (Initializer.initialize with OAuthToken(user_signature=
UserSignature(USER_NAME)) and the managed store) and makes one real SDK API call,
UsersOperations().get_users(type=CurrentUser), against the fake's CRM endpoint. Every broker answer
the adapter receives is recorded; the SDK's own calls to Zoho's token endpoint are counted.

Prints one JSON line on stdout:
  {"ok": n, "threads": n, "errors": [...], "leaks": n, "sdk_token_calls": n,
   "broker_answers": n, "access_tokens": n (distinct access tokens the threads used), "seconds": s}
and exits 0 only when every thread succeeded, nothing leaked and the SDK made no token call
(1 otherwise, 2 on a usage error). Nothing secret is printed: error texts are scrubbed of every
FORBIDDEN string and of the JWT.
"""

import json
import os
import sys
import tempfile
import threading
import time

import requests

from zohocrmsdk.src.com.zoho.api.authenticator import oauth_token as sdk_oauth_token
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
from zohocrmsdk.src.com.zoho.crm.api.users import GetUsersParam, ResponseWrapper, UsersOperations

from token_broker_zoho import BrokerTokenStore


def env(name, default=None, required=False):
    value = os.environ.get(name)
    if value is None or value == "":
        if required:
            sys.stderr.write("storm.py: set %s\n" % name)
            sys.exit(2)
        return default
    return value


class RecordingStore(BrokerTokenStore):
    """Records every answer body the adapter receives from the broker."""

    def __init__(self, *args, **kwargs):
        BrokerTokenStore.__init__(self, *args, **kwargs)
        self.answers = []
        self.answers_lock = threading.Lock()

    def _new_session(self):
        session = requests.Session()

        def record(response, *args, **kwargs):
            with self.answers_lock:
                self.answers.append(response.text)
            return response

        session.hooks["response"].append(record)
        return session


class SdkTokenCalls:
    """Stands in for the requests module inside the SDK's oauth_token module: counts every POST
    the SDK's OAuthToken makes itself (refresh, code exchange, revoke at Zoho)."""

    def __init__(self, real):
        self.real = real
        self.count = 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def post(self, *args, **kwargs):
        with self.lock:
            self.count += 1
        return self.real.post(*args, **kwargs)


def current_user_type():
    """The users "type" parameter as this SDK takes it: zohocrmsdk7-0 wants a Choice, 8-0 a str
    (each SDK's own Utility.get_user_name shows which)."""
    import inspect

    from zohocrmsdk.src.com.zoho.crm.api.util import Choice
    from zohocrmsdk.src.com.zoho.crm.api.util.utility import Utility

    if "Choice(Constants.CURRENTUSER)" in inspect.getsource(Utility.get_user_name):
        return Choice("CurrentUser")
    return "CurrentUser"


def get_current_user():
    params = ParameterMap()
    params.add(GetUsersParam.type, current_user_type())
    response = UsersOperations().get_users(params)
    if response is None or response.get_status_code() != 200:
        raise RuntimeError("the CRM call answered HTTP %s" % (response.get_status_code() if response else None))
    wrapper = response.get_object()
    if not isinstance(wrapper, ResponseWrapper):
        raise RuntimeError("the CRM call answered %s" % type(wrapper).__name__)
    return wrapper.get_users()[0].get_email()


def main():
    broker = env("BROKER_URL") or env("TOKEN_BROKER_URL", required=True)
    jwt = env("TOKEN_BROKER_JWT", required=True)
    user_name = env("USER_NAME", required=True)
    fake = env("FAKE_ZOHO_URL", required=True).rstrip("/")
    threads = int(env("THREADS", "12"))
    forbidden = [f for f in (env("FORBIDDEN", "") or "").split(",") if f]
    scrub = forbidden + [jwt]

    def clean(text):
        for value in scrub:
            text = text.replace(value, "[redacted]")
        return text[:500]

    store = RecordingStore(url=broker, jwt=jwt, timeout=float(env("TIMEOUT", "30")),
                           cache_seconds=float(env("CACHE_SECONDS", "0")),
                           min_validity=int(env("MIN_VALIDITY", "60")))
    environment = DataCenter.Environment(fake, fake + "/oauth/v2/token", fake)
    spy = SdkTokenCalls(sdk_oauth_token.requests)
    sdk_oauth_token.requests = spy
    resource_path = tempfile.mkdtemp(prefix="storm-")

    barrier = threading.Barrier(threads)
    lock = threading.Lock()
    ok, errors, used, tokens = [0], [], set(), []

    def work():
        try:
            barrier.wait(timeout=60)
            token = OAuthToken(user_signature=UserSignature(user_name))
            with lock:
                tokens.append(token)
            Initializer.initialize(environment=environment, token=token, store=store, resource_path=resource_path)
            get_current_user()
            with lock:
                ok[0] += 1
                used.add(token.get_access_token())
        except Exception as ex:  # reported, scrubbed
            with lock:
                errors.append(clean("%s: %s" % (type(ex).__name__, ex)))

    started = time.monotonic()
    pool = [threading.Thread(target=work, name="storm-%d" % i) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = round(time.monotonic() - started, 3)

    leaks = 0
    for body in store.answers:
        leaks += sum(1 for value in forbidden if value in body)
    for token in tokens:
        for value in (token.get_client_secret(), token.get_refresh_token(), token.get_grant_token()):
            if value:
                leaks += 1

    report = {
        "ok": ok[0],
        "threads": threads,
        "errors": errors,
        "leaks": leaks,
        "sdk_token_calls": spy.count,
        "broker_answers": len(store.answers),
        "access_tokens": len(used),
        "seconds": seconds,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0 if ok[0] == threads and not errors and leaks == 0 and spy.count == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
