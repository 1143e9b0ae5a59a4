"""A Zoho CRM Python SDK ``TokenStore`` backed by token-broker.

Swap the SDK's ``FileStore``/``DBStore`` for the broker with one line::

    from token_broker_zoho import BrokerTokenStore

    store = BrokerTokenStore(url="http://127.0.0.1:8080", jwt=os.environ["TOKEN_BROKER_JWT"])
    Initializer.initialize(environment=..., token=..., store=store)

Two modes:

* **Managed** (the default, ``managed=True``): the broker owns every refresh. The SDK process
  holds no client secret and no refresh token and never calls Zoho's token endpoint: every
  ``find_token`` / ``find_token_by_id`` answers with an access token from the broker's
  ``GET /v1/tokens/{id}/access-token?min_validity=...``, valid long enough that the SDK (which
  refreshes by itself when less than 5 s remain) never refreshes. A grant token or a self-client
  refresh token handed to ``Initializer.initialize`` is passed to the broker once (``POST
  /v1/oauth/exchange`` or ``PUT /v1/tokens``) and then forgotten by the store. The JWT needs
  ``tokens:read tokens:access tokens:write`` and no ``tokens:secrets``.
* **Store-only** (``managed=False``): the store is a plain ``TokenStore`` like ``FileStore`` or
  ``DBStore``; the SDK refreshes by itself and the JWT needs ``tokens:secrets``.

The semantics of the six ``TokenStore`` methods follow the SDK's own stores (see the README for
each method in both modes). Every failure is raised as the SDK's ``SDKException`` (a
``BrokerError`` when the broker answered an error) with code ``TOKEN_STORE`` and a message naming
the operation, the HTTP status and the broker's error code and message; no token value, secret or
JWT is ever put in a message.
"""

import logging
import threading
import time
from urllib.parse import quote, urlsplit

import requests

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import TokenStore
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

__all__ = ["BrokerTokenStore", "BrokerError", "provider_for_accounts_url"]
__version__ = "0.2.0"

#: The ``code`` of every ``SDKException`` this store raises (the SDK's ``Constants.TOKEN_STORE``).
ERROR_CODE = "TOKEN_STORE"

#: The SDK refreshes by itself when its token expires within 5 s; a managed store must hand out
#: tokens that stay valid comfortably longer than that.
MIN_MIN_VALIDITY = 10
#: The broker's largest accepted ``min_validity`` (a day).
MAX_MIN_VALIDITY = 86_400

logger = logging.getLogger("token_broker_zoho")

# The fields the broker's ``PUT /v1/tokens`` and ``POST /v1/tokens/find`` accept that map to the
# SDK's OAuthToken. Anything else would be refused with 422.
_STRING_FIELDS = (
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "redirect_url",
    "api_domain",
)
#: What a managed store never takes from the broker into an SDK token.
_SECRET_FIELDS = ("client_secret", "refresh_token", "grant_token")
#: What a managed store copies from a stored token into the SDK token when the SDK has none.
_PLAIN_FIELDS = ("client_id", "redirect_url")

#: The broker's provider key of each Zoho data center, by the host of the SDK's accounts URL.
ZOHO_PROVIDERS = {
    "accounts.zoho.com": "zoho-us",
    "accounts.zoho.eu": "zoho-eu",
    "accounts.zoho.in": "zoho-in",
    "accounts.zoho.com.au": "zoho-au",
    "accounts.zoho.com.cn": "zoho-cn",
    "accounts.zoho.jp": "zoho-jp",
    "accounts.zohocloud.ca": "zoho-ca",
    "accounts.zoho.sa": "zoho-sa",
}


def provider_for_accounts_url(accounts_url):
    """The broker provider key of a Zoho accounts URL (``https://accounts.zoho.eu/oauth/v2/token``
    → ``"zoho-eu"``), or ``None`` for any other URL."""
    if not isinstance(accounts_url, str) or not accounts_url:
        return None
    try:
        host = (urlsplit(accounts_url).hostname or "").lower()
    except ValueError:
        return None
    return ZOHO_PROVIDERS.get(host)


class BrokerError(SDKException):
    """The broker answered an error. An ``SDKException`` (code ``TOKEN_STORE``) with the HTTP
    ``status``, the broker's ``error`` code (e.g. ``needs_reauth``, ``refresh_budget_exhausted``,
    ``provider_unavailable``), its ``broker_message`` and ``retry_after`` (seconds, or None)."""

    def __init__(self, message, status=None, error=None, broker_message=None, retry_after=None):
        SDKException.__init__(self, ERROR_CODE, message)
        self.status = status
        self.error = error
        self.broker_message = broker_message
        self.retry_after = retry_after


def _text(value):
    """A field value as the SDK stores treat it: empty strings count as absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    return value if len(value) > 0 else None


def _user_name(token):
    signature = token.get_user_signature()
    if signature is None:
        return None
    return _text(signature.get_name())


def _find_user(token):
    """The SDK's private ``find_user`` flag of an OAuthToken (default True): whether the SDK
    would look the user up with a CRM call before saving a token that has no user."""
    return bool(getattr(token, "_OAuthToken__find_user", True))


def _now_ms():
    return int(time.time() * 1000)


class BrokerTokenStore(TokenStore):
    """A ``TokenStore`` that keeps the SDK's tokens in a token-broker.

    Parameters:
        url: the broker's base URL, e.g. ``"http://127.0.0.1:8080"``.
        jwt: the caller JWT (a string), or a function returning one (called for every request,
            so a rotating JWT can be supplied). Managed mode: ``tokens:read tokens:access
            tokens:write``. Store-only mode: ``tokens:read tokens:write tokens:secrets`` (and
            ``tokens:admin`` for ``delete_tokens``).
        provider: optional broker provider key (e.g. ``"zoho-eu"``). When given it is sent with
            every find, save and exchange, and ``get_tokens`` lists only that provider's tokens.
            When not given, an exchange or import names the provider of the SDK environment's
            data center (``accounts.zoho.eu`` → ``zoho-eu``), else none (the broker's default).
        timeout: seconds for connecting and for reading each answer (a number, or a
            ``(connect, read)`` tuple as ``requests`` takes it).
        page_size: how many tokens ``get_tokens`` asks for per page.
        verify: TLS verification, passed to ``requests`` (``True``, ``False`` or a CA bundle path).
        min_validity: managed mode: seconds every access token handed to the SDK stays valid at
            least (the broker refreshes first when its token expires sooner). 10 to 86400.
        cache_seconds: managed mode: how long an access token (and which stored token a user
            name or grant names) is reused in this process before asking the broker again; never
            past the token's expiry minus ``min_validity``. 0 asks the broker on every call.
        managed: True (default): the broker does every refresh; False: a plain store, the SDK
            refreshes by itself (needs ``tokens:secrets``).
    """

    def __init__(self, url, jwt, provider=None, timeout=10.0, page_size=100, verify=True,
                 min_validity=60, cache_seconds=10, managed=True):
        if not isinstance(url, str) or not url.strip():
            raise SDKException(ERROR_CODE, "BrokerTokenStore: url must be the broker's base URL")
        if jwt is None or (isinstance(jwt, str) and not jwt.strip()):
            raise SDKException(ERROR_CODE, "BrokerTokenStore: jwt is empty")
        if not isinstance(jwt, str) and not callable(jwt):
            raise SDKException(ERROR_CODE, "BrokerTokenStore: jwt must be a string or a function returning one")
        if not isinstance(page_size, int) or page_size < 1:
            raise SDKException(ERROR_CODE, "BrokerTokenStore: page_size must be a positive integer")
        if (not isinstance(min_validity, (int, float)) or isinstance(min_validity, bool)
                or not MIN_MIN_VALIDITY <= min_validity <= MAX_MIN_VALIDITY):
            raise SDKException(
                ERROR_CODE,
                "BrokerTokenStore: min_validity must be %d to %d seconds (the SDK refreshes by itself "
                "when less than 5 s remain)" % (MIN_MIN_VALIDITY, MAX_MIN_VALIDITY),
            )
        if not isinstance(cache_seconds, (int, float)) or isinstance(cache_seconds, bool) or cache_seconds < 0:
            raise SDKException(ERROR_CODE, "BrokerTokenStore: cache_seconds must be 0 or more")
        self.url = url.strip().rstrip("/")
        self.provider = provider
        self.timeout = timeout
        self.page_size = page_size
        self.verify = verify
        self.min_validity = int(min_validity)
        self.cache_seconds = cache_seconds
        self.managed = bool(managed)
        self._jwt = jwt
        self._local = threading.local()
        # Managed mode's in-process caches, all behind one lock:
        #   _access_cache: broker id -> (answer of the access-token endpoint, monotonic time fetched)
        #   _views:        broker id -> (stored token without secrets, monotonic time fetched)
        #   _matches:      what a find matched on -> (broker id, monotonic time)
        self._lock = threading.Lock()
        self._access_cache = {}
        self._views = {}
        self._matches = {}
        self._fetch_locks = {}

    def __repr__(self):
        return "BrokerTokenStore(url=%r, provider=%r, managed=%r)" % (self.url, self.provider, self.managed)

    # ----------------------------------------------------------------------------------------
    # The six TokenStore operations
    # ----------------------------------------------------------------------------------------

    def find_token(self, token):
        """Store-only: ``POST /v1/tokens/find``, fills ``token`` in place and returns it, or
        ``None``. Managed: the same match, then the token's access token from the broker (see the
        class docs); a grant or refresh token the broker does not have yet is handed to it."""
        if not isinstance(token, OAuthToken):
            return token
        if self.managed:
            return self._managed_find(token)
        body = self._match_body(token)
        if body is None:
            # Nothing the broker can match on. A token that carries only an id (as the SDK's
            # OAuthToken.revoke builds one) is looked up by its id instead.
            token_id = _text(token.get_id())
            if token_id is None:
                return None
            stored = self._get_stored("find_token", token_id)
        else:
            stored = self._find_stored("find_token", body)
        if stored is None:
            return None
        self._merge(token, stored, secrets=True)
        return token

    def save_token(self, token):
        """``PUT /v1/tokens``: upserts ``token`` and sets the stored token's id on it."""
        if not isinstance(token, OAuthToken):
            return
        body = self._save_body(token)
        stored = self._put("save_token", body)
        # The broker's id names the row from now on (it may differ from a stale id the token
        # carried: the broker then matched by user or token instead).
        token.set_id(stored.get("id"))
        self._forget(stored.get("id"))
        self._merge(token, stored, secrets=not self.managed)

    def delete_token(self, id):
        """``DELETE /v1/tokens/{id}``. Raises ``SDKException`` when there is no such token."""
        token_id = self._id("delete_token", id)
        self._forget(token_id)
        response = self._request("delete_token", "DELETE", self._token_path(token_id))
        if response.status_code == 404:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.delete_token: no token with the given id")
        self._check("delete_token", response, 204, 200)

    def get_tokens(self):
        """``GET /v1/tokens``, following ``next_cursor``: every token the JWT can see."""
        tokens = []
        cursor = None
        seen = set()
        while True:
            params = {"limit": self.page_size}
            if cursor is not None:
                params["cursor"] = cursor
            if self.provider is not None:
                params["provider"] = self.provider
            response = self._request("get_tokens", "GET", "/v1/tokens", params=params)
            page = self._json("get_tokens", response, 200)
            for stored in page.get("tokens") or []:
                tokens.append(self._new_token(stored))
            cursor = page.get("next_cursor")
            if not cursor:
                return tokens
            if cursor in seen:
                raise SDKException(ERROR_CODE, "BrokerTokenStore.get_tokens: the broker repeated a page cursor")
            seen.add(cursor)

    def delete_tokens(self):
        """``DELETE /v1/tokens?confirm=all``: deletes every token the JWT can see (needs
        ``tokens:admin``)."""
        response = self._request("delete_tokens", "DELETE", "/v1/tokens", params={"confirm": "all"})
        self._json("delete_tokens", response, 200)
        self._forget_all()

    def find_token_by_id(self, id):
        """``GET /v1/tokens/{id}``: a new ``OAuthToken`` (managed: with a valid access token from
        the broker). Raises ``SDKException`` when there is no such token (as the SDK's stores do)."""
        token_id = self._id("find_token_by_id", id)
        stored = self._get_stored("find_token_by_id", token_id)
        if stored is None:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.find_token_by_id: no token with the given id")
        token = OAuthToken(id=stored.get("id") or token_id)
        if not self.managed:
            self._merge(token, stored, secrets=True)
            return token
        access = self._access("find_token_by_id", token_id)
        if access is None:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.find_token_by_id: no token with the given id")
        self._apply(token, stored, access)
        _refresh_current_sdk_token(token.get_id(), access)
        return token

    # ----------------------------------------------------------------------------------------
    # Beyond the SDK's interface
    # ----------------------------------------------------------------------------------------

    def revoke_token(self, id):
        """``POST /v1/tokens/{id}/revoke``: the broker revokes the grant at Zoho and deletes the
        token. Raises ``SDKException`` when there is no such token. (The SDK's own
        ``OAuthToken.revoke(id)`` needs the refresh token in this process, so in managed mode it
        answers False; use this instead.)"""
        token_id = self._id("revoke_token", id)
        self._forget(token_id)
        response = self._request("revoke_token", "POST", self._token_path(token_id) + "/revoke")
        if response.status_code == 404:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.revoke_token: no token with the given id")
        self._check("revoke_token", response, 204, 200)

    def access_token(self, id):
        """The broker's ``GET /v1/tokens/{id}/access-token`` answer for ``id`` (through the
        in-process cache): ``{"access_token", "expiry_time", "expires_in", "api_domain", ...}``.
        Raises ``SDKException`` when there is no such token."""
        token_id = self._id("access_token", id)
        access = self._access("access_token", token_id)
        if access is None:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.access_token: no token with the given id")
        return dict(access)

    def clear_cache(self):
        """Forgets every access token and match this process cached."""
        self._forget_all()

    # ----------------------------------------------------------------------------------------
    # Managed mode
    # ----------------------------------------------------------------------------------------

    def _managed_find(self, token):
        op = "find_token"
        body = self._match_body(token)
        if body is None:
            token_id = _text(token.get_id())
            if token_id is None:
                return None
            stored = self._get_stored(op, token_id)
            if stored is None:
                return None
            access = self._access(op, token_id)
            if access is None:
                return None
            self._apply(token, stored, access)
            return token

        key = self._match_key(body)
        for attempt in (0, 1):
            token_id = self._cached_match(key) if attempt == 0 else None
            stored = self._cached_view(token_id) if token_id is not None else None
            if stored is None:
                token_id = None
                stored = self._find_stored(op, body)
                if stored is None:
                    stored = self._hand_over(op, token)
                    if stored is None:
                        return None
                token_id = stored.get("id")
                if not isinstance(token_id, str) or not token_id:
                    raise SDKException(ERROR_CODE, "BrokerTokenStore.%s: the broker answered a token without an id" % op)
                self._remember(token_id, stored, key)
            access = self._access(op, token_id)
            if access is not None:
                self._apply(token, stored, access)
                return token
            # Deleted meanwhile (by another process): forget it and look again, once.
            self._forget(token_id)
        return None

    def _hand_over(self, op, token):
        """A token the broker does not have yet: exchange its grant token through the broker, or
        save its (self-client) refresh token to the broker. ``None`` when it has neither."""
        client_id = _text(token.get_client_id())
        client_secret = _text(token.get_client_secret())
        grant_token = _text(token.get_grant_token())
        refresh_token = _text(token.get_refresh_token())
        user_name = _user_name(token)
        provider = self._provider_for_new()
        if grant_token is not None and client_id is not None:
            body = {"grant_token": grant_token, "client_id": client_id}
            if client_secret is not None:
                body["client_secret"] = client_secret
            redirect_url = _text(token.get_redirect_url())
            if redirect_url is not None:
                body["redirect_url"] = redirect_url
            if user_name is not None:
                body["user_name"] = user_name
            if provider is not None:
                body["provider"] = provider
            response = self._request(op, "POST", "/v1/oauth/exchange", json=body)
            stored = self._json(op, response, 201, 200)
            logger.info("exchanged a grant token through the broker (token id %s)", stored.get("id"))
        elif refresh_token is not None and client_id is not None:
            body = {"refresh_token": refresh_token, "client_id": client_id}
            for field in ("client_secret", "redirect_url", "api_domain"):
                value = _text(getattr(token, "get_" + field)())
                if value is not None:
                    body[field] = value
            if user_name is not None:
                body["user_name"] = user_name
            if provider is not None:
                body["provider"] = provider
            stored = self._put(op, body)
            logger.info("saved a refresh token to the broker (token id %s)", stored.get("id"))
        else:
            return None

        token_id = stored.get("id")
        if not isinstance(token_id, str) or not token_id:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.%s: the broker answered a token without an id" % op)
        if user_name is None and not stored.get("user_name") and _find_user(token):
            # What the SDK's own stores would do before saving: name the token after the CRM
            # user it belongs to (the SDK's own Utility.get_user_name), so that a later
            # OAuthToken(user_signature=UserSignature(name)) finds it.
            access = self._access(op, token_id)
            name = _sdk_user_name(access["access_token"]) if access else None
            if name:
                try:
                    stored = self._put(op, {"id": token_id, "user_name": name})
                except SDKException as ex:
                    logger.warning("could not name the new token after its user: %s", ex)
        return stored

    def _provider_for_new(self):
        if self.provider is not None:
            return self.provider
        try:
            from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

            initializer = Initializer.get_initializer()
            environment = getattr(initializer, "environment", None) if initializer is not None else None
            return provider_for_accounts_url(getattr(environment, "accounts_url", None))
        except Exception:  # the SDK not initialised: let the broker pick its default
            return None

    def _apply(self, token, stored, access):
        """Puts a broker-issued access token on an SDK token. Overwrites access_token,
        expires_in and api_domain (the SDK reuses its token objects, so nothing stale may
        survive); fills id, user and the plain fields; never a secret."""
        token.set_id(stored.get("id"))
        if token.get_user_signature() is None and stored.get("user_name"):
            token.set_user_signature(UserSignature(stored["user_name"]))
        for field in _PLAIN_FIELDS:
            if getattr(token, "get_" + field)() is None and stored.get(field) is not None:
                getattr(token, "set_" + field)(stored.get(field))
        token.set_access_token(access["access_token"])
        token.set_expires_in(str(_expiry_of(access)))
        token.set_api_domain(access.get("api_domain") or stored.get("api_domain"))

    def _access(self, op, token_id):
        """The access-token endpoint's answer for ``token_id`` (cached), or ``None`` on 404."""
        if self.cache_seconds <= 0:
            return self._fetch_access(op, token_id)
        hit = self._cached_access(token_id)
        if hit is not None:
            return hit
        with self._lock:
            fetch_lock = self._fetch_locks.setdefault(token_id, threading.Lock())
        # One request per token at a time from this process; the others wait and reuse it.
        with fetch_lock:
            hit = self._cached_access(token_id)
            if hit is not None:
                return hit
            access = self._fetch_access(op, token_id)
            if access is not None and access.get("expiry_time") is not None:
                with self._lock:
                    self._access_cache[token_id] = (access, time.monotonic())
            return access

    def _cached_access(self, token_id):
        with self._lock:
            entry = self._access_cache.get(token_id)
            if entry is None:
                return None
            access, fetched = entry
            fresh = time.monotonic() - fetched < self.cache_seconds
            # Never past expiry - min_validity, whatever cache_seconds says.
            valid = int(access["expiry_time"]) - _now_ms() >= self.min_validity * 1000
            if fresh and valid:
                return access
            del self._access_cache[token_id]
            return None

    def _fetch_access(self, op, token_id):
        response = self._request(op, "GET", self._token_path(token_id) + "/access-token",
                                 params={"min_validity": self.min_validity})
        if response.status_code == 404:
            return None
        answer = self._json(op, response, 200, hint_403=_ACCESS_HINT)
        if not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.%s: the broker answered no access token" % op)
        expiry = answer.get("expiry_time")
        if expiry is not None and (not isinstance(expiry, int) or isinstance(expiry, bool)):
            raise SDKException(ERROR_CODE, "BrokerTokenStore.%s: the broker answered a bad expiry_time" % op)
        return answer

    def _match_key(self, body):
        return tuple(sorted((k, v) for k, v in body.items() if k != "client_secret"))

    def _cached_match(self, key):
        if self.cache_seconds <= 0:
            return None
        with self._lock:
            entry = self._matches.get(key)
            if entry is None:
                return None
            token_id, at = entry
            if time.monotonic() - at < self.cache_seconds:
                return token_id
            del self._matches[key]
            return None

    def _cached_view(self, token_id):
        if self.cache_seconds <= 0:
            return None
        with self._lock:
            entry = self._views.get(token_id)
            if entry is None:
                return None
            view, at = entry
            if time.monotonic() - at < self.cache_seconds:
                return view
            del self._views[token_id]
            return None

    def _remember(self, token_id, stored, key=None):
        if self.cache_seconds <= 0 or not self.managed:
            return
        view = {k: v for k, v in stored.items() if k not in _SECRET_FIELDS}
        now = time.monotonic()
        with self._lock:
            self._views[token_id] = (view, now)
            if key is not None:
                self._matches[key] = (token_id, now)

    def _forget(self, token_id):
        if token_id is None:
            return
        with self._lock:
            self._access_cache.pop(token_id, None)
            self._views.pop(token_id, None)
            for key in [k for k, (i, _) in self._matches.items() if i == token_id]:
                del self._matches[key]

    def _forget_all(self):
        with self._lock:
            self._access_cache.clear()
            self._views.clear()
            self._matches.clear()

    # ----------------------------------------------------------------------------------------
    # Broker calls
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _token_path(token_id):
        return "/v1/tokens/" + quote(token_id, safe="")

    def _get_stored(self, op, token_id):
        """``GET /v1/tokens/{id}`` (managed: through the view cache), or ``None`` on 404."""
        if self.managed:
            view = self._cached_view(token_id)
            if view is not None:
                return view
        response = self._request(op, "GET", self._token_path(token_id))
        if response.status_code == 404:
            return None
        stored = self._json(op, response, 200)
        if self.managed:
            self._remember(token_id, stored)
        return stored

    def _find_stored(self, op, body):
        response = self._request(op, "POST", "/v1/tokens/find", json=body)
        if response.status_code == 404:
            return None
        return self._json(op, response, 200)

    def _put(self, op, body):
        response = self._request(op, "PUT", "/v1/tokens", json=body)
        return self._json(op, response, 200, 201)

    # ----------------------------------------------------------------------------------------
    # SDK token <-> broker JSON
    # ----------------------------------------------------------------------------------------

    def _match_body(self, token):
        """The find request: the fields the broker's (and the SDK's) matching rules look at.
        ``None`` when none of user_name, access_token, grant_token or refresh_token is given."""
        body = {}
        user_name = _user_name(token)
        if user_name is not None:
            body["user_name"] = user_name
        for field in ("client_id", "client_secret", "access_token", "grant_token", "refresh_token"):
            value = _text(getattr(token, "get_" + field)())
            if value is not None:
                body[field] = value
        if self.managed and "user_name" in body:
            # The broker matches by user name first; the SDK token's access token (handed out
            # by this store earlier) must not take part.
            body.pop("access_token", None)
        if not any(k in body for k in ("user_name", "access_token", "grant_token", "refresh_token")):
            return None
        if self.provider is not None:
            body["provider"] = self.provider
        return body

    def _save_body(self, token):
        body = {}
        token_id = _text(token.get_id())
        if token_id is not None:
            body["id"] = token_id
        user_name = _user_name(token)
        if user_name is not None:
            body["user_name"] = user_name
        for field in _STRING_FIELDS:
            value = _text(getattr(token, "get_" + field)())
            if value is not None:
                body[field] = value
        expiry = _expiry_ms(token.get_expires_in())
        if expiry is not None:
            body["expiry_time"] = expiry
        if self.provider is not None:
            body["provider"] = self.provider
        return body

    @staticmethod
    def _merge(token, stored, secrets):
        """Like the SDK stores' ``set_merge_data``: fill only the fields that are still None
        (never the secrets when ``secrets`` is False)."""
        if token.get_id() is None:
            token.set_id(stored.get("id"))
        if token.get_user_signature() is None and stored.get("user_name"):
            token.set_user_signature(UserSignature(stored["user_name"]))
        for field in _STRING_FIELDS:
            if not secrets and field in _SECRET_FIELDS:
                continue
            if getattr(token, "get_" + field)() is None:
                getattr(token, "set_" + field)(stored.get(field))
        if token.get_expires_in() is None and stored.get("expiry_time") is not None:
            # The SDK keeps expires_in as a string of milliseconds since the epoch.
            token.set_expires_in(str(stored["expiry_time"]))

    def _new_token(self, stored):
        token_id = stored.get("id")
        if not isinstance(token_id, str) or not token_id:
            raise SDKException(ERROR_CODE, "BrokerTokenStore: the broker answered a token without an id")
        token = OAuthToken(id=token_id)
        self._merge(token, stored, secrets=not self.managed)
        return token

    @staticmethod
    def _id(operation, id):
        token_id = _text(id)
        if token_id is None:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.%s: id is empty" % operation)
        return token_id

    # ----------------------------------------------------------------------------------------
    # HTTP
    # ----------------------------------------------------------------------------------------

    def _new_session(self):
        """The ``requests.Session`` of one thread (override to mount adapters or add hooks)."""
        return requests.Session()

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
            self._local.session = session
        return session

    def _bearer(self):
        jwt = self._jwt() if callable(self._jwt) else self._jwt
        if not isinstance(jwt, str) or not jwt.strip():
            raise SDKException(ERROR_CODE, "BrokerTokenStore: the jwt function returned no JWT")
        return jwt.strip()

    def _request(self, operation, method, path, json=None, params=None):
        headers = {"Authorization": "Bearer " + self._bearer(), "Accept": "application/json"}
        try:
            return self._session().request(
                method,
                self.url + path,
                json=json,
                params=params,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                verify=self.verify,
            )
        except requests.Timeout:
            raise SDKException(
                ERROR_CODE,
                "BrokerTokenStore.%s: the broker at %s did not answer within %s s" % (operation, self.url, self.timeout),
            ) from None
        except requests.RequestException as ex:
            raise SDKException(
                ERROR_CODE,
                "BrokerTokenStore.%s: cannot reach the broker at %s: %s" % (operation, self.url, _describe(ex)),
            ) from None

    def _check(self, operation, response, *expected, hint_403=None):
        if response.status_code in expected:
            return
        raise _error(operation, response, self.managed, hint_403)

    def _json(self, operation, response, *expected, hint_403=None):
        self._check(operation, response, *expected, hint_403=hint_403)
        try:
            data = response.json()
        except ValueError:
            raise SDKException(
                ERROR_CODE, "BrokerTokenStore.%s: the broker answered HTTP %d without JSON" % (operation, response.status_code)
            ) from None
        if not isinstance(data, dict):
            raise SDKException(
                ERROR_CODE, "BrokerTokenStore.%s: the broker answered HTTP %d with unexpected JSON" % (operation, response.status_code)
            )
        return data


def _refresh_current_sdk_token(token_id, access):
    """The SDK's ``get_token`` merges what ``find_token_by_id`` answers into its own token object
    only where that object has None, so once it holds an access token it would keep showing the
    first one. Overwrite access_token, expires_in and api_domain on the SDK's current token (the
    initializer's, of this thread) when it is the same stored token, so no stale value survives."""
    try:
        from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

        initializer = Initializer.get_initializer()
        current = getattr(initializer, "token", None) if initializer is not None else None
    except Exception:
        return
    if isinstance(current, OAuthToken) and current.get_id() == token_id:
        current.set_access_token(access["access_token"])
        current.set_expires_in(str(_expiry_of(access)))
        if access.get("api_domain"):
            current.set_api_domain(access["api_domain"])


def _sdk_user_name(access_token):
    """The SDK's own name for the user of an access token (``Utility.get_user_name``: two CRM
    calls, the current user and the org), or None when it cannot tell."""
    try:
        from zohocrmsdk.src.com.zoho.crm.api.util.utility import Utility

        name = Utility.get_user_name(access_token)
    except Exception as ex:  # the SDK logs and goes on without a user name too
        logger.warning("could not look up the user of a new token: %s", type(ex).__name__)
        return None
    return name if isinstance(name, str) and name else None


def _expiry_of(access):
    """The absolute expiry (ms since the epoch) of an access-token answer."""
    expiry = access.get("expiry_time")
    if isinstance(expiry, int) and not isinstance(expiry, bool):
        return expiry
    seconds = access.get("expires_in")
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        return _now_ms() + seconds * 1000
    # The broker promised min_validity; with no expiry at all, say no more than an hour.
    return _now_ms() + 3_600_000


def _describe(ex):
    """A transport error in one line (requests' messages name the URL and the cause, never the
    headers or the body)."""
    text = " ".join(str(ex).split())
    return type(ex).__name__ + (": " + text[:300] if text else "")


_HINTS = {
    401: "the JWT is missing, invalid or expired",
    403: "the JWT lacks a scope this needs (tokens:read, tokens:write, tokens:secrets; tokens:admin for delete_tokens)",
}
_MANAGED_403 = "the JWT lacks a scope this needs (managed mode: tokens:read tokens:access tokens:write)"
_ACCESS_HINT = (
    "managed mode gets every access token from the broker and needs the tokens:access scope: mint the JWT with "
    "--scope \"tokens:read tokens:access tokens:write\", or use managed=False"
)


def _error(operation, response, managed, hint_403=None):
    """A ``BrokerError``: ``BrokerTokenStore.<op>: the broker answered HTTP <status> <code>:
    <broker message>``. The broker promises its error bodies never carry a secret; anything that
    is not its JSON error shape is left out."""
    status = response.status_code
    code, message = None, None
    try:
        body = response.json()
        if isinstance(body, dict):
            code = body.get("error") if isinstance(body.get("error"), str) else None
            message = body.get("message") if isinstance(body.get("message"), str) else None
    except ValueError:
        pass
    retry_after = None
    raw = response.headers.get("Retry-After")
    if raw is not None and raw.strip().isdigit():
        retry_after = int(raw.strip())
    text = "BrokerTokenStore.%s: the broker answered HTTP %d" % (operation, status)
    if code:
        text += " " + code[:100]
    if message:
        text += ": " + message[:500]
    if status == 403 and hint_403:
        text += " (%s)" % hint_403
    elif status == 403 and managed:
        text += " (%s)" % _MANAGED_403
    else:
        hint = _HINTS.get(status)
        if hint and not message:
            text += " (%s)" % hint
    if code == "invalid_field" and message and message.startswith("provider") and operation == "find_token":
        text += " (pass provider= to BrokerTokenStore, e.g. provider=\"zoho-eu\")"
    if retry_after is not None:
        text += " (retry after %d s)" % retry_after
    return BrokerError(text, status=status, error=code, broker_message=message, retry_after=retry_after)


def _expiry_ms(value):
    """The SDK's ``expires_in`` (ms since the epoch, usually a string) as the broker's integer
    ``expiry_time``; ``None`` when unset."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        raise SDKException(
            ERROR_CODE, "BrokerTokenStore.save_token: expires_in must be milliseconds since the epoch"
        ) from None
