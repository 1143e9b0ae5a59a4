"""A Zoho CRM Python SDK ``TokenStore`` backed by token-broker.

Swap the SDK's ``FileStore``/``DBStore`` for the broker with one line::

    from token_broker_zoho import BrokerTokenStore

    store = BrokerTokenStore(url="http://127.0.0.1:8080", jwt=os.environ["TOKEN_BROKER_JWT"])
    Initializer.initialize(environment=..., token=..., store=store)

Each of the six ``TokenStore`` methods is one call to the broker's v1 HTTP API (see the broker's
``API.md``). The semantics follow the SDK's own ``FileStore``/``DBStore``:

* ``find_token(token)`` fills the fields of ``token`` that are still ``None`` with the stored values
  (caller-given values win, as in the SDK stores), sets its id, and returns the same object; it
  returns ``None`` when nothing matches.
* ``save_token(token)`` upserts and sets the stored token's id on ``token``.
* ``find_token_by_id(id)`` returns a new ``OAuthToken``; an unknown id raises ``SDKException``.
* ``delete_token(id)`` raises ``SDKException`` when there is no such token (as ``FileStore`` does).
* ``get_tokens()`` returns every token the JWT can see (all pages), ``delete_tokens()`` deletes them.

Every failure is raised as the SDK's ``SDKException`` with code ``TOKEN_STORE`` and a message naming
the operation, the HTTP status and the broker's error code; no token value or JWT is ever put in
a message.
"""

import threading
from urllib.parse import quote

import requests

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import TokenStore
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

__all__ = ["BrokerTokenStore"]
__version__ = "0.1.0"

#: The ``code`` of every ``SDKException`` this store raises (the SDK's ``Constants.TOKEN_STORE``).
ERROR_CODE = "TOKEN_STORE"

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


class BrokerTokenStore(TokenStore):
    """A ``TokenStore`` that keeps the SDK's tokens in a token-broker.

    Parameters:
        url: the broker's base URL, e.g. ``"http://127.0.0.1:8080"``.
        jwt: the caller JWT (a string), or a function returning one (called for every request,
            so a rotating JWT can be supplied). It needs the scopes ``tokens:read tokens:write
            tokens:secrets`` (and ``tokens:admin`` for ``delete_tokens``).
        provider: optional broker provider key (e.g. ``"zoho-eu"``). When given it is sent with
            every find and save, and ``get_tokens`` lists only that provider's tokens. When not
            given, new tokens get the broker's default provider.
        timeout: seconds for connecting and for reading each answer (a number, or a
            ``(connect, read)`` tuple as ``requests`` takes it).
        page_size: how many tokens ``get_tokens`` asks for per page.
        verify: TLS verification, passed to ``requests`` (``True``, ``False`` or a CA bundle path).
    """

    def __init__(self, url, jwt, provider=None, timeout=10.0, page_size=100, verify=True):
        if not isinstance(url, str) or not url.strip():
            raise SDKException(ERROR_CODE, "BrokerTokenStore: url must be the broker's base URL")
        if jwt is None or (isinstance(jwt, str) and not jwt.strip()):
            raise SDKException(ERROR_CODE, "BrokerTokenStore: jwt is empty")
        if not isinstance(jwt, str) and not callable(jwt):
            raise SDKException(ERROR_CODE, "BrokerTokenStore: jwt must be a string or a function returning one")
        if not isinstance(page_size, int) or page_size < 1:
            raise SDKException(ERROR_CODE, "BrokerTokenStore: page_size must be a positive integer")
        self.url = url.strip().rstrip("/")
        self.provider = provider
        self.timeout = timeout
        self.page_size = page_size
        self.verify = verify
        self._jwt = jwt
        self._local = threading.local()

    def __repr__(self):
        return "BrokerTokenStore(url=%r, provider=%r)" % (self.url, self.provider)

    # ----------------------------------------------------------------------------------------
    # The six TokenStore operations
    # ----------------------------------------------------------------------------------------

    def find_token(self, token):
        """``POST /v1/tokens/find``: fills ``token`` in place and returns it, or ``None``."""
        if not isinstance(token, OAuthToken):
            return token
        body = self._match_body(token)
        if body is None:
            # Nothing the broker can match on. A token that carries only an id (as the SDK's
            # OAuthToken.revoke builds one) is looked up by its id instead.
            token_id = _text(token.get_id())
            if token_id is None:
                return None
            response = self._request("find_token", "GET", "/v1/tokens/" + quote(token_id, safe=""))
            if response.status_code == 404:
                return None
            stored = self._json("find_token", response, 200)
        else:
            response = self._request("find_token", "POST", "/v1/tokens/find", json=body)
            if response.status_code == 404:
                return None
            stored = self._json("find_token", response, 200)
        self._merge(token, stored)
        return token

    def save_token(self, token):
        """``PUT /v1/tokens``: upserts ``token`` and sets the stored token's id on it."""
        if not isinstance(token, OAuthToken):
            return
        body = self._save_body(token)
        response = self._request("save_token", "PUT", "/v1/tokens", json=body)
        stored = self._json("save_token", response, 200, 201)
        # The broker's id names the row from now on (it may differ from a stale id the token
        # carried: the broker then matched by user or token instead).
        token.set_id(stored.get("id"))
        self._merge(token, stored)

    def delete_token(self, id):
        """``DELETE /v1/tokens/{id}``. Raises ``SDKException`` when there is no such token."""
        token_id = self._id("delete_token", id)
        response = self._request("delete_token", "DELETE", "/v1/tokens/" + quote(token_id, safe=""))
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

    def find_token_by_id(self, id):
        """``GET /v1/tokens/{id}``: a new ``OAuthToken``. Raises ``SDKException`` when there is
        no such token (as the SDK's stores do)."""
        token_id = self._id("find_token_by_id", id)
        response = self._request("find_token_by_id", "GET", "/v1/tokens/" + quote(token_id, safe=""))
        if response.status_code == 404:
            raise SDKException(ERROR_CODE, "BrokerTokenStore.find_token_by_id: no token with the given id")
        return self._new_token(self._json("find_token_by_id", response, 200))

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
    def _merge(token, stored):
        """Like the SDK stores' ``set_merge_data``: fill only the fields that are still None."""
        if token.get_id() is None:
            token.set_id(stored.get("id"))
        if token.get_user_signature() is None and stored.get("user_name"):
            token.set_user_signature(UserSignature(stored["user_name"]))
        for field in _STRING_FIELDS:
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
        self._merge(token, stored)
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

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
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

    def _check(self, operation, response, *expected):
        if response.status_code in expected:
            return
        raise SDKException(ERROR_CODE, _error_message(operation, response))

    def _json(self, operation, response, *expected):
        self._check(operation, response, *expected)
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


def _describe(ex):
    """A transport error in one line (requests' messages name the URL and the cause, never the
    headers or the body)."""
    text = " ".join(str(ex).split())
    return type(ex).__name__ + (": " + text[:300] if text else "")


_HINTS = {
    401: "the JWT is missing, invalid or expired",
    403: "the JWT lacks a scope this needs (tokens:read, tokens:write, tokens:secrets; tokens:admin for delete_tokens)",
}


def _error_message(operation, response):
    """``BrokerTokenStore.<op>: HTTP <status> <code>: <broker message>``. The broker promises its
    error bodies never carry a secret; anything that is not its JSON error shape is left out."""
    status = response.status_code
    code, message = None, None
    try:
        body = response.json()
        if isinstance(body, dict):
            code = body.get("error") if isinstance(body.get("error"), str) else None
            message = body.get("message") if isinstance(body.get("message"), str) else None
    except ValueError:
        pass
    text = "BrokerTokenStore.%s: the broker answered HTTP %d" % (operation, status)
    if code:
        text += " " + code
    if message:
        text += ": " + message[:500]
    hint = _HINTS.get(status)
    if hint and not message:
        text += " (%s)" % hint
    return text


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
