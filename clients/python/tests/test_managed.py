"""BrokerTokenStore in managed mode (the default): the broker does every refresh, the SDK process
holds no client secret or refresh token and never calls Zoho's token endpoint.

Driven through the real SDK (Initializer.initialize, OAuthToken.get_token, real CRM calls) against
a running broker whose zoho provider points at the fake Zoho (tests/fake_zoho/fake_zoho.py), which
also serves the SDK's CRM calls. Needs TOKEN_BROKER_URL, TOKEN_BROKER_JWT (tokens:read
tokens:access tokens:write), TOKEN_BROKER_JWT_STORE, TOKEN_BROKER_JWT_NO_ACCESS, FAKE_ZOHO_URL and
TOKEN_BROKER_PROVIDER (the broker's provider for the fake, default zoho-us).

Every test registers its own client, codes and refresh tokens in the fake and uses unique user
names, so the suite can share a broker and a fake with others; "exactly one call" checks count
per client id / refresh token.
"""

import threading
import time

import pytest
import requests

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
from zohocrmsdk.src.com.zoho.crm.api.util.utility import Utility

import token_broker_zoho
from token_broker_zoho import BrokerError, BrokerTokenStore, provider_for_accounts_url

from conftest import BROKER_URL, HOUR_MS, JWT, JWT_NO_ACCESS, PROVIDER, now_ms

pytestmark = pytest.mark.skipif(
    not BROKER_URL or not JWT,
    reason="set TOKEN_BROKER_URL and TOKEN_BROKER_JWT (tokens:read tokens:access tokens:write) to a running broker",
)


@pytest.fixture(autouse=True)
def no_sdk_token_calls(sdk_token_calls):
    """No managed-mode test may let the SDK call Zoho's token endpoint itself."""
    yield sdk_token_calls
    assert sdk_token_calls.calls == [], "the SDK called Zoho itself: %r" % sdk_token_calls.calls


def initialize(fake, token, store, tmp_path):
    Initializer.initialize(environment=fake.environment, token=token, store=store, resource_path=str(tmp_path))


def current_user_type():
    """The users "type" parameter as this SDK takes it: zohocrmsdk7-0 wants a Choice, 8-0 a str
    (each SDK's own Utility.get_user_name shows which)."""
    import inspect

    from zohocrmsdk.src.com.zoho.crm.api.util import Choice
    from zohocrmsdk.src.com.zoho.crm.api.util.utility import Utility

    if "Choice(Constants.CURRENTUSER)" in inspect.getsource(Utility.get_user_name):
        return Choice("CurrentUser")
    return "CurrentUser"


def current_user_email():
    """One real SDK API call: GET /crm/v8/users?type=CurrentUser through UsersOperations."""
    from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
    from zohocrmsdk.src.com.zoho.crm.api.users import GetUsersParam, ResponseWrapper, UsersOperations

    params = ParameterMap()
    params.add(GetUsersParam.type, current_user_type())
    response = UsersOperations().get_users(params)
    assert response.get_status_code() == 200, "the CRM call failed with HTTP %s" % response.get_status_code()
    wrapper = response.get_object()
    assert isinstance(wrapper, ResponseWrapper), type(wrapper).__name__
    return wrapper.get_users()[0].get_email()


def assert_no_secrets(token):
    assert token.get_client_secret() is None
    assert token.get_refresh_token() is None
    assert token.get_grant_token() is None


def seed(admin_store, fake, uid, forbidden, user_name=None, access_token=None, expiry_time=None, api_domain=None):
    """A grant known to the fake and stored in the broker (through the store-only JWT), as an
    earlier login would have left it. Returns (broker token, client_id, secret, refresh_token)."""
    email = uid + "@crm.example"
    client_id, secret, refresh_token = fake.grant(uid, email)
    forbidden.add(secret, refresh_token)
    token = OAuthToken(client_id=client_id, client_secret=secret, refresh_token=refresh_token,
                       user_signature=UserSignature(user_name) if user_name else None,
                       api_domain=api_domain or fake.url)
    if access_token is not None:
        token.set_access_token(access_token)
        token.set_expires_in(str(expiry_time))
    admin_store.provider = PROVIDER
    admin_store.save_token(token)
    admin_store.provider = None
    return token, client_id, secret, refresh_token


# ------------------------------------------------------------------------------------------------
# No credentials in the process
# ------------------------------------------------------------------------------------------------


def test_by_user_with_no_credentials_and_a_real_api_call(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    seeded, client_id, secret, refresh_token = seed(admin_store, fake, uid, forbidden, user_name=user)
    store = managed()

    token = OAuthToken(user_signature=UserSignature(user))
    initialize(fake, token, store, tmp_path)
    assert token.get_id() == seeded.get_id()
    assert_no_secrets(token)
    assert int(token.get_expires_in()) - now_ms() > 60_000
    assert current_user_email() == uid + "@crm.example"
    # The stored token had no access token: the broker refreshed once, nobody else did.
    assert fake.token_calls(client_id) == 1
    assert fake.refreshes(refresh_token) == 1
    assert_no_secrets(token)


def test_by_id_with_no_credentials(admin_store, fake, managed, forbidden, uid, tmp_path):
    seeded, client_id, _, _ = seed(admin_store, fake, uid, forbidden, user_name=uid + "@example.com")
    store = managed()

    token = OAuthToken(id=seeded.get_id())
    initialize(fake, token, store, tmp_path)
    assert current_user_email() == uid + "@crm.example"
    assert current_user_email() == uid + "@crm.example"
    assert fake.token_calls(client_id) == 1

    found = store.find_token_by_id(seeded.get_id())
    assert found.get_user_signature().get_name() == uid + "@example.com"
    assert found.get_client_id() == client_id
    assert_no_secrets(found)
    with pytest.raises(SDKException):
        store.find_token_by_id("no-such-id-" + uid)


def test_an_expired_stored_token_is_refreshed_once_by_the_broker(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    _, client_id, secret, refresh_token = seed(
        admin_store, fake, uid, forbidden, user_name=user,
        access_token="1000.stale." + uid, expiry_time=now_ms() - 60_000)
    store = managed()
    before = fake.stats()

    token = OAuthToken(user_signature=UserSignature(user))
    initialize(fake, token, store, tmp_path)
    for _ in range(3):
        assert current_user_email() == uid + "@crm.example"
    # A second process-like store (no shared cache) sees the refreshed token too.
    other = managed(cache_seconds=0)
    again = OAuthToken(user_signature=UserSignature(user))
    assert other.find_token(again) is again
    assert again.get_access_token() == token.get_access_token()

    after = fake.stats()
    assert fake.token_calls(client_id) == 1
    assert fake.refreshes(refresh_token) == 1
    assert after["token_calls"] - before["token_calls"] >= 1
    assert token.get_access_token() != "1000.stale." + uid
    assert fake.crm_status(token.get_access_token()) == 200


def test_the_sdk_token_object_is_overwritten_with_the_current_access_token(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    seeded, client_id, _, _ = seed(admin_store, fake, uid, forbidden, user_name=user)
    store = managed(cache_seconds=0)
    token = OAuthToken(user_signature=UserSignature(user))
    initialize(fake, token, store, tmp_path)
    first, first_expiry = token.get_access_token(), token.get_expires_in()

    # The broker refreshes (forced): the SDK reuses its token object, and must get the new one.
    response = requests.post(BROKER_URL + "/v1/tokens/%s/refresh" % seeded.get_id(),
                             headers={"Authorization": "Bearer " + JWT}, timeout=10)
    assert response.status_code == 200, response.text
    fresh = response.json()["access_token"]
    assert fresh != first
    assert current_user_email() == uid + "@crm.example"
    assert token.get_access_token() == fresh
    assert int(token.get_expires_in()) >= int(first_expiry)
    assert fake.token_calls(client_id) == 2


# ------------------------------------------------------------------------------------------------
# Handing a grant token or a refresh token to the broker
# ------------------------------------------------------------------------------------------------


def test_a_grant_token_is_exchanged_once_through_the_broker(admin_store, fake, managed, forbidden, uid, tmp_path):
    email = uid + "@crm.example"
    client_id, secret = fake.client(uid)
    code = fake.code(client_id, email, "1000.code." + uid)
    forbidden.add(secret)
    store = managed()

    token = OAuthToken(client_id=client_id, client_secret=secret, grant_token=code,
                       redirect_url="https://app.example.com/callback")
    initialize(fake, token, store, tmp_path)
    assert fake.token_calls(client_id) == 1
    assert fake.stats()["errors"].get("invalid_code", 0) >= 0
    assert token.get_id()
    assert current_user_email() == email

    # Named as the SDK's own stores name it: Utility.get_user_name (the CRM current user).
    expected_name = Utility.get_user_name(token.get_access_token())
    assert expected_name and expected_name.startswith(email)
    stored = admin_store.find_token_by_id(token.get_id())
    assert stored.get_user_signature().get_name() == expected_name
    assert stored.get_client_id() == client_id
    assert stored.get_grant_token() == code
    assert stored.get_refresh_token(), "the broker keeps the refresh token"
    forbidden.add(stored.get_refresh_token())
    assert token.get_user_signature().get_name() == expected_name

    # Another process: by user name, no credentials.
    elsewhere = managed()
    by_user = OAuthToken(user_signature=UserSignature(expected_name))
    assert elsewhere.find_token(by_user) is by_user
    assert by_user.get_id() == token.get_id()
    assert_no_secrets(by_user)

    # The same grant token handed to initialize again finds the stored token: no second exchange.
    again = OAuthToken(client_id=client_id, client_secret=secret, grant_token=code,
                       redirect_url="https://app.example.com/callback")
    initialize(fake, again, managed(), tmp_path)
    assert again.get_id() == token.get_id()
    assert current_user_email() == email
    assert fake.token_calls(client_id) == 1


def test_a_grant_token_with_a_user_signature_keeps_that_name(admin_store, fake, managed, forbidden, uid, tmp_path):
    email = uid + "@crm.example"
    client_id, secret = fake.client(uid)
    code = fake.code(client_id, email, "1000.code." + uid)
    forbidden.add(secret)
    user = "given-" + uid + "@example.com"

    token = OAuthToken(client_id=client_id, client_secret=secret, grant_token=code,
                       redirect_url="https://app.example.com/callback", user_signature=UserSignature(user))
    initialize(fake, token, managed(), tmp_path)
    assert current_user_email() == email
    stored = admin_store.find_token(OAuthToken(user_signature=UserSignature(user)))
    assert stored is not None and stored.get_id() == token.get_id()
    forbidden.add(stored.get_refresh_token())
    assert fake.token_calls(client_id) == 1


def test_a_used_grant_token_is_a_clear_error(fake, managed, forbidden, uid, tmp_path):
    client_id, secret = fake.client(uid)
    forbidden.add(secret)
    token = OAuthToken(client_id=client_id, client_secret=secret, grant_token="1000.unknown." + uid,
                       redirect_url="https://app.example.com/callback")
    with pytest.raises(SDKException) as err:
        initialize(fake, token, managed(), tmp_path)
    message = str(err.value)
    assert "invalid_grant" in message
    assert secret not in message and "1000.unknown." + uid not in message and JWT not in message


def test_a_self_client_refresh_token_is_saved_to_the_broker(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    client_id, secret, refresh_token = fake.grant(uid, uid + "@crm.example")
    forbidden.add(secret, refresh_token)

    token = OAuthToken(client_id=client_id, client_secret=secret, refresh_token=refresh_token,
                       user_signature=UserSignature(user))
    initialize(fake, token, managed(), tmp_path)
    assert current_user_email() == uid + "@crm.example"
    assert fake.token_calls(client_id) == 1  # the broker's refresh, not the SDK's

    stored = admin_store.find_token(OAuthToken(user_signature=UserSignature(user)))
    assert stored.get_id() == token.get_id()
    assert stored.get_refresh_token() == refresh_token
    assert stored.get_client_secret() == secret

    # A process without credentials now finds it, with no further refresh.
    other = OAuthToken(user_signature=UserSignature(user))
    initialize(fake, other, managed(), tmp_path)
    assert other.get_id() == token.get_id()
    assert current_user_email() == uid + "@crm.example"
    assert fake.token_calls(client_id) == 1


def test_a_self_client_refresh_token_without_a_user_is_named_like_the_sdk_does(admin_store, fake, managed, forbidden, uid, tmp_path):
    client_id, secret, refresh_token = fake.grant(uid, uid + "@crm.example")
    forbidden.add(secret, refresh_token)
    token = OAuthToken(client_id=client_id, client_secret=secret, refresh_token=refresh_token)
    initialize(fake, token, managed(), tmp_path)
    assert current_user_email() == uid + "@crm.example"
    stored = admin_store.find_token_by_id(token.get_id())
    assert stored.get_user_signature().get_name() == Utility.get_user_name(token.get_access_token())
    assert fake.token_calls(client_id) == 1


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_a_jwt_without_tokens_access_is_a_clear_error(admin_store, fake, managed, forbidden, uid, tmp_path):
    if not JWT_NO_ACCESS:
        pytest.skip("set TOKEN_BROKER_JWT_NO_ACCESS (tokens:read tokens:write)")
    user = uid + "@example.com"
    seed(admin_store, fake, uid, forbidden, user_name=user)
    store = managed(jwt=JWT_NO_ACCESS)
    with pytest.raises(SDKException) as err:
        initialize(fake, OAuthToken(user_signature=UserSignature(user)), store, tmp_path)
    message = str(err.value)
    assert "tokens:access" in message and "403" in message
    assert JWT_NO_ACCESS not in message
    assert isinstance(err.value, BrokerError) and err.value.status == 403


def test_needs_reauth_is_an_sdk_exception_with_the_brokers_code(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    _, client_id, secret, refresh_token = seed(admin_store, fake, uid, forbidden, user_name=user,
                                               access_token="1000.stale." + uid, expiry_time=now_ms() - 1000)
    fake.admin("refresh_tokens", {"refresh_token": "1000.other." + uid, "client_id": client_id})
    # Revoke the seeded grant at the fake behind the broker's back: its next refresh fails.
    assert requests.post(fake.url + "/oauth/v2/token/revoke", params={"token": refresh_token}, timeout=10).json() == {"status": "success"}
    with pytest.raises(SDKException) as err:
        initialize(fake, OAuthToken(user_signature=UserSignature(user)), managed(), tmp_path)
    message = str(err.value)
    assert "409" in message and "needs_reauth" in message
    assert err.value.error == "needs_reauth"
    for value in (secret, refresh_token, JWT):
        assert value not in message


def test_min_validity_and_cache_seconds_are_checked():
    for bad in (0, 5, 9, 86_401, "60", True):
        with pytest.raises(SDKException):
            BrokerTokenStore(url="http://127.0.0.1:1", jwt="x", min_validity=bad)
    with pytest.raises(SDKException):
        BrokerTokenStore(url="http://127.0.0.1:1", jwt="x", cache_seconds=-1)
    assert BrokerTokenStore(url="http://127.0.0.1:1", jwt="x").managed is True


def test_the_provider_follows_the_sdk_data_center():
    from zohocrmsdk.src.com.zoho.crm.api.dc import (AUDataCenter, CADataCenter, CNDataCenter, EUDataCenter,
                                                    INDataCenter, JPDataCenter, SADataCenter, USDataCenter)

    expected = {USDataCenter: "zoho-us", EUDataCenter: "zoho-eu", INDataCenter: "zoho-in", AUDataCenter: "zoho-au",
                CNDataCenter: "zoho-cn", JPDataCenter: "zoho-jp", CADataCenter: "zoho-ca", SADataCenter: "zoho-sa"}
    for dc, key in expected.items():
        assert provider_for_accounts_url(dc.PRODUCTION().accounts_url) == key
        assert provider_for_accounts_url(dc.SANDBOX().accounts_url) == key
    assert provider_for_accounts_url("http://127.0.0.1:9/oauth/v2/token") is None
    assert provider_for_accounts_url(None) is None


# ------------------------------------------------------------------------------------------------
# The in-process cache
# ------------------------------------------------------------------------------------------------


def test_the_cache_never_serves_past_expiry_minus_min_validity(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    client_id, secret, refresh_token = fake.grant(uid, uid + "@crm.example")
    forbidden.add(secret, refresh_token)
    short = fake.fresh_access_token(client_id, secret, refresh_token)
    expiry = now_ms() + 14_000  # the broker believes it expires in 14 s
    token = OAuthToken(client_id=client_id, client_secret=secret, refresh_token=refresh_token,
                       user_signature=UserSignature(user))
    token.set_access_token(short)
    token.set_expires_in(str(expiry))
    admin_store.provider = PROVIDER
    admin_store.save_token(token)
    admin_store.provider = None

    store = managed(min_validity=10, cache_seconds=600)
    sdk_token = OAuthToken(user_signature=UserSignature(user))
    initialize(fake, sdk_token, store, tmp_path)
    assert sdk_token.get_access_token() == short
    assert current_user_email() == uid + "@crm.example"
    assert len(store.calls("/access-token")) == 1, "the second use comes from the cache"

    time.sleep(max(0.0, (expiry - 10_000 - now_ms()) / 1000.0) + 0.3)
    assert current_user_email() == uid + "@crm.example"
    assert len(store.calls("/access-token")) == 2, "past expiry - min_validity the cache must ask the broker"
    assert sdk_token.get_access_token() != short
    assert int(sdk_token.get_expires_in()) - now_ms() > 600_000
    assert fake.refreshes(refresh_token) == 2  # ours above, then the broker's


def test_cache_seconds_zero_asks_the_broker_every_time(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    seed(admin_store, fake, uid, forbidden, user_name=user)
    store = managed(cache_seconds=0)
    initialize(fake, OAuthToken(user_signature=UserSignature(user)), store, tmp_path)
    current_user_email()
    current_user_email()
    # The first lookup is by user; once the SDK token has the broker's id, the SDK looks it up
    # by id (find_token_by_id): every use asks the broker again.
    assert len(store.calls("/access-token")) == 3
    assert len(store.calls("/v1/tokens/find")) == 1
    assert len([a for a in store.answers if a[0] == "GET" and not a[1].endswith("/access-token")]) == 2


def test_the_cache_is_per_id_and_one_fetch_at_a_time(admin_store, fake, managed, forbidden, uid):
    user = uid + "@example.com"
    seeded, client_id, _, _ = seed(admin_store, fake, uid, forbidden, user_name=user)
    store = managed(cache_seconds=60)
    start = threading.Barrier(8)
    results, errors = [], []

    def work():
        try:
            start.wait()
            token = OAuthToken(user_signature=UserSignature(user))
            store.find_token(token)
            results.append(token.get_access_token())
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(repr(ex))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert len(store.calls("/access-token")) == 1
    assert fake.token_calls(client_id) == 1
    assert store.access_token(seeded.get_id())["access_token"] == results[0]


# ------------------------------------------------------------------------------------------------
# remove, revoke and the rest of the interface
# ------------------------------------------------------------------------------------------------


def test_remove_deletes_and_revoke_token_revokes_at_zoho(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    seeded, client_id, _, refresh_token = seed(admin_store, fake, uid, forbidden, user_name=user)
    store = managed()
    token = OAuthToken(id=seeded.get_id())
    initialize(fake, token, store, tmp_path)
    access = token.get_access_token() or store.access_token(seeded.get_id())["access_token"]

    # The SDK's own revoke needs the refresh token in this process: in managed mode it cannot.
    try:
        assert token.revoke(seeded.get_id()) is False
    except SDKException:
        pass  # zohocrmsdk7-0 6.0.0's revoke builds OAuthToken() with nothing, which raises
    assert fake.crm_status(access) == 200

    store.revoke_token(seeded.get_id())
    assert fake.crm_status(access) == 401, "the broker revoked the grant at Zoho"
    with pytest.raises(SDKException):
        store.find_token_by_id(seeded.get_id())
    assert store.find_token(OAuthToken(user_signature=UserSignature(user))) is None
    with pytest.raises(SDKException) as err:
        store.revoke_token(seeded.get_id())
    assert "no token" in str(err.value)

    # remove() is delete_token: the row goes, the grant at Zoho stays.
    second, _, _, refresh2 = seed(admin_store, fake, uid + "b", forbidden, user_name="b-" + user)
    other = OAuthToken(id=second.get_id())
    initialize(fake, other, store, tmp_path)
    assert other.remove() is True
    assert other.remove() is False
    with pytest.raises(SDKException):
        store.find_token_by_id(second.get_id())
    assert fake.stats()["live_access_tokens"].get(__import__("conftest").token_hash(refresh2), 0) >= 1


def test_get_tokens_and_save_token_never_carry_secrets(admin_store, fake, managed, forbidden, uid, tmp_path):
    user = uid + "@example.com"
    seeded, _, _, _ = seed(admin_store, fake, uid, forbidden, user_name=user)
    store = managed()
    mine = [t for t in store.get_tokens() if t.get_id() == seeded.get_id()]
    assert len(mine) == 1
    assert mine[0].get_user_signature().get_name() == user
    assert_no_secrets(mine[0])

    # An access-token-only token the SDK saves itself (find_user=False: no CRM lookup).
    given = OAuthToken(access_token="1000.given." + uid, find_user=False)
    initialize(fake, given, store, tmp_path)
    assert given.get_id()
    stored = admin_store.find_token(OAuthToken(access_token="1000.given." + uid))
    assert stored.get_id() == given.get_id()
    assert stored.get_refresh_token() is None
    admin_store.delete_token(given.get_id())


def test_the_recording_store_sees_every_answer(admin_store, fake, managed, forbidden, uid, tmp_path):
    """The leak check itself works: a store-only JWT's answers do carry the secrets."""
    user = uid + "@example.com"
    _, _, secret, refresh_token = seed(admin_store, fake, uid, forbidden, user_name=user)
    import conftest

    leaky = conftest.RecordingStore(url=BROKER_URL, jwt=conftest.JWT_STORE, managed=False)
    leaky.find_token(OAuthToken(user_signature=UserSignature(user)))
    assert any(secret in body and refresh_token in body for _, _, _, body in leaky.answers)

    safe = managed()
    initialize(fake, OAuthToken(user_signature=UserSignature(user)), safe, tmp_path)
    assert safe.answers and not any(secret in body or refresh_token in body for _, _, _, body in safe.answers)
