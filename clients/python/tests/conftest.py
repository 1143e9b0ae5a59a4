"""Shared fixtures: the broker's environment, the fake Zoho's admin API, a store that records every
answer the adapter receives, and a spy on the SDK's own calls to Zoho's token endpoint.

Environment (run-tests.sh documents it):
  TOKEN_BROKER_URL, TOKEN_BROKER_JWT (tokens:read tokens:access tokens:write),
  TOKEN_BROKER_JWT_STORE (tokens:read tokens:write tokens:secrets tokens:admin),
  TOKEN_BROKER_JWT_NO_ACCESS (tokens:read tokens:write), FAKE_ZOHO_URL, TOKEN_BROKER_PROVIDER.
"""

import hashlib
import json
import os
import threading
import time
import uuid
import urllib.request

import pytest
import requests

from zohocrmsdk.src.com.zoho.api.authenticator import oauth_token as sdk_oauth_token
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter

from token_broker_zoho import BrokerTokenStore

BROKER_URL = os.environ.get("TOKEN_BROKER_URL")
JWT = os.environ.get("TOKEN_BROKER_JWT")
JWT_STORE = os.environ.get("TOKEN_BROKER_JWT_STORE")
JWT_NO_ACCESS = os.environ.get("TOKEN_BROKER_JWT_NO_ACCESS")
FAKE_ZOHO_URL = (os.environ.get("FAKE_ZOHO_URL") or "").rstrip("/") or None
PROVIDER = os.environ.get("TOKEN_BROKER_PROVIDER") or "zoho-us"

HOUR_MS = 3600 * 1000


def now_ms():
    return int(time.time() * 1000)


def token_hash(value):
    """How the fake's stats name a refresh token."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


class FakeZoho:
    """The admin side of tests/fake_zoho/fake_zoho.py."""

    def __init__(self, url):
        self.url = url
        # The SDK's environment: CRM calls and the accounts server both go to the fake. Not a
        # Zoho data center URL, so the SDK keeps it whatever api_domain a token has.
        self.environment = DataCenter.Environment(url, url + "/oauth/v2/token", url)

    def admin(self, what, body=None):
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(self.url + "/__admin/" + what, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self):
        with urllib.request.urlopen(self.url + "/__admin/stats", timeout=10) as response:
            return json.loads(response.read())

    def token_calls(self, client_id):
        return self.stats()["token_calls_by_client"].get(client_id, 0)

    def refreshes(self, refresh_token):
        return self.stats()["refreshes_by_token"].get(token_hash(refresh_token), 0)

    def client(self, uid):
        client_id = "1000.CID" + uid.upper()
        secret = "client-secret-" + uid
        self.admin("clients", {"client_id": client_id, "client_secret": secret})
        return client_id, secret

    def grant(self, uid, email):
        """A client and a refresh token of ``email`` known to the fake."""
        client_id, secret = self.client(uid)
        refresh_token = "1000.refresh." + uid
        self.admin("refresh_tokens", {"refresh_token": refresh_token, "client_id": client_id, "email": email})
        return client_id, secret, refresh_token

    def code(self, client_id, email, code):
        self.admin("codes", {"code": code, "client_id": client_id, "email": email})
        return code

    def fresh_access_token(self, client_id, secret, refresh_token):
        """An access token straight from the fake (as if an earlier refresh had stored it)."""
        answer = requests.post(self.url + "/oauth/v2/token", data={
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": client_id, "client_secret": secret}, timeout=10).json()
        return answer["access_token"]

    def crm_status(self, access_token):
        response = requests.get(self.url + "/crm/v8/users", params={"type": "CurrentUser"},
                                headers={"Authorization": "Zoho-oauthtoken " + access_token}, timeout=10)
        return response.status_code


class RecordingStore(BrokerTokenStore):
    """A BrokerTokenStore that records every answer it receives from the broker (through a
    requests response hook on each thread's session)."""

    def __init__(self, *args, **kwargs):
        BrokerTokenStore.__init__(self, *args, **kwargs)
        self.answers = []
        self._answers_lock = threading.Lock()

    def _new_session(self):
        session = requests.Session()

        def record(response, *args, **kwargs):
            with self._answers_lock:
                self.answers.append((response.request.method, response.request.path_url.split("?")[0],
                                     response.status_code, response.text))
            return response

        session.hooks["response"].append(record)
        return session

    def calls(self, suffix):
        return [a for a in self.answers if a[1].endswith(suffix)]


@pytest.fixture
def uid():
    return uuid.uuid4().hex[:16]


@pytest.fixture
def fake():
    if not FAKE_ZOHO_URL:
        pytest.skip("set FAKE_ZOHO_URL to a running tests/fake_zoho/fake_zoho.py")
    return FakeZoho(FAKE_ZOHO_URL)


@pytest.fixture
def admin_store():
    """Store-only, with tokens:secrets: for seeding the broker and looking behind the scenes."""
    if not JWT_STORE:
        pytest.skip("set TOKEN_BROKER_JWT_STORE (tokens:read tokens:write tokens:secrets tokens:admin)")
    return BrokerTokenStore(url=BROKER_URL, jwt=JWT_STORE, managed=False)


class Forbidden:
    """Strings no answer the adapter receives may contain (client secrets, refresh tokens)."""

    def __init__(self):
        self.values = set()
        self.stores = []

    def add(self, *values):
        self.values.update(v for v in values if v)

    def check(self):
        for store in self.stores:
            for method, path, status, body in store.answers:
                for value in self.values:
                    assert value not in body, "a broker answer to %s %s (HTTP %d) carried a secret" % (method, path, status)


@pytest.fixture
def forbidden():
    f = Forbidden()
    yield f
    f.check()


@pytest.fixture
def managed(forbidden):
    """A factory of managed RecordingStores (JWT without tokens:secrets), all checked for
    leaked secrets at the end of the test."""

    def make(jwt=None, **kwargs):
        kwargs.setdefault("provider", PROVIDER)
        store = RecordingStore(url=BROKER_URL, jwt=jwt or JWT, **kwargs)
        forbidden.stores.append(store)
        return store

    return make


class SdkTokenCalls:
    """Every request the SDK's own OAuthToken makes (it calls requests.post on Zoho's token and
    revoke endpoints itself): managed mode must make none."""

    def __init__(self, real):
        self.real = real
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def post(self, url, *args, **kwargs):
        self.calls.append(url)
        return self.real.post(url, *args, **kwargs)


@pytest.fixture
def sdk_token_calls(monkeypatch):
    spy = SdkTokenCalls(sdk_oauth_token.requests)
    monkeypatch.setattr(sdk_oauth_token, "requests", spy)
    return spy


@pytest.fixture(autouse=True)
def fresh_sdk():
    """Each test initialises the SDK itself. zohocrmsdk7-0 6.0.0 sets the thread's initializer
    (Initializer.LOCAL.init) only after initialize's first get_token, and get_initializer prefers
    it, so a second initialize in one thread would run that get_token with the previous test's
    store and environment. Start every test without one."""
    from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

    Initializer.LOCAL.init = None
    Initializer.initializer = None
    yield
    Initializer.LOCAL.init = None
    Initializer.initializer = None
