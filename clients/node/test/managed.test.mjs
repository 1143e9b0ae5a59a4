// Managed mode through the real SDK (@zohocrm/nodejs-sdk-8.0): InitializeBuilder with an environment
// whose accounts server and CRM API are the fake Zoho, real UsersOperations.getUsers calls, the broker
// doing every refresh. Run by run-tests.sh (node --test --test-concurrency=1): the fake's counters are
// global, so these files run one at a time and the tests in a file in order.

import { test } from "node:test";
import assert from "node:assert/strict";
import { BrokerTokenStore } from "../index.js";
import {
  env,
  unique,
  fakeAdmin,
  fakeStats,
  broker,
  newClient,
  seedStored,
  expire,
  initSDK,
  currentUserEmail,
  recordingFetch,
  leaked,
  OAuthBuilder,
  UserSignature,
  SDKException,
  Initializer,
} from "./helpers.mjs";

/** The fake Zoho's org zgid (tests/fake_zoho/README.md): the SDK's Utility.getUserName answers
 * "<email>:<zgid>", and the store keeps that name as the SDK's own stores would. */
const FAKE_ZGID = "800000001";

function managedStore(extra = {}) {
  const e = env();
  const rec = recordingFetch();
  const store = new BrokerTokenStore({ url: e.brokerUrl, jwt: e.jwt, provider: e.provider, fetch: rec.fetch, ...extra });
  return { store, rec };
}

function delta(before, after, key) {
  return (after[key] ?? 0) - (before[key] ?? 0);
}

/** The SDK object never holds a secret the broker knows. */
function assertNoSecrets(token) {
  assert.equal(token.getClientSecret() ?? null, null, "client secret on the SDK token");
  assert.equal(token.getRefreshToken() ?? null, null, "refresh token on the SDK token");
  assert.equal(token.getGrantToken() ?? null, null, "grant token on the SDK token");
}

test("by user name, no credentials: one refresh by the broker, none by the SDK, real SDK calls work", async () => {
  const seeded = await seedStored({ expired: true });
  const { store, rec } = managedStore();
  const before = await fakeStats();
  const token = new OAuthBuilder().userSignature(new UserSignature(seeded.userName)).build();
  await initSDK(token, store);
  assert.equal(await currentUserEmail(), seeded.userName);
  assert.equal(await currentUserEmail(), seeded.userName);
  const after = await fakeStats();
  assert.equal(delta(before, after, "token_calls"), 1, "exactly one call to the token endpoint");
  assert.equal(delta(before, after, "refresh_calls"), 1, "and it was a refresh");
  assert.equal(token.getId(), seeded.id);
  assertNoSecrets(token);
  assert.equal(typeof token.getExpiresIn(), "string", "expiresIn is the SDK's string of ms");
  assert.ok(Number(token.getExpiresIn()) > Date.now() + 60_000, "valid for at least minValidity");
  assert.equal(token.getAPIDomain(), env().fakeUrl, "the api domain from the broker");
  assert.ok(rec.requests.some((r) => r.url.includes(`/v1/tokens/${seeded.id}/access-token?min_validity=60`)));
  assert.deepEqual(leaked(rec.answers, [seeded.clientSecret, seeded.refreshToken]), []);
});

test("by broker id, no credentials", async () => {
  const seeded = await seedStored({ expired: true });
  const { store, rec } = managedStore();
  const before = await fakeStats();
  const token = new OAuthBuilder().id(seeded.id).build();
  await initSDK(token, store);
  assert.equal(await currentUserEmail(), seeded.userName);
  const after = await fakeStats();
  assert.equal(delta(before, after, "token_calls"), 1);
  assert.equal(delta(before, after, "refresh_calls"), 1);
  assertNoSecrets(token);
  const byId = await store.findTokenById(seeded.id);
  assert.equal(byId.getId(), seeded.id);
  assert.equal(byId.getUserSignature().getName(), seeded.userName);
  assert.equal(byId.getClientId(), seeded.clientId);
  assertNoSecrets(byId);
  assert.deepEqual(leaked(rec.answers, [seeded.clientSecret, seeded.refreshToken]), []);
});

test("an expired token, uncached: every SDK call asks the broker, the broker refreshes once, the SDK never", async () => {
  const seeded = await seedStored({ expired: true });
  const { store, rec } = managedStore({ cacheSeconds: 0 });
  const before = await fakeStats();
  const token = new OAuthBuilder().userSignature(new UserSignature(seeded.userName)).build();
  await initSDK(token, store);
  for (let i = 0; i < 5; i++) assert.equal(await currentUserEmail(), seeded.userName);
  const after = await fakeStats();
  assert.equal(delta(before, after, "token_calls"), 1);
  const accessCalls = rec.requests.filter((r) => r.url.includes("/access-token")).length;
  assert.ok(accessCalls >= 6, `the broker was asked for every call (${accessCalls})`);
  // Expired again at the broker: the next SDK call gets a refreshed token, again one refresh.
  await expire(seeded.id);
  const mid = await fakeStats();
  assert.equal(await currentUserEmail(), seeded.userName);
  const end = await fakeStats();
  assert.equal(delta(mid, end, "token_calls"), 1);
  assert.equal(delta(mid, end, "refresh_calls"), 1);
  assert.deepEqual(leaked(rec.answers, [seeded.clientSecret, seeded.refreshToken]), []);
});

test("many concurrent SDK calls on an expired token: exactly one refresh", async () => {
  const seeded = await seedStored({ expired: false });
  const { store, rec } = managedStore({ cacheSeconds: 0 });
  // A valid stored access token first (the seeded one is not known to the fake CRM).
  await expire(seeded.id);
  const token = new OAuthBuilder().userSignature(new UserSignature(seeded.userName)).build();
  await initSDK(token, store);
  await expire(seeded.id);
  const before = await fakeStats();
  const results = await Promise.allSettled(Array.from({ length: 25 }, () => currentUserEmail()));
  const after = await fakeStats();
  const failed = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
  assert.deepEqual(failed, []);
  assert.ok(results.every((r) => r.value === seeded.userName));
  assert.equal(delta(before, after, "token_calls"), 1, "one refresh for 25 concurrent calls");
  assert.equal(delta(before, after, "refresh_calls"), 1);
  assert.deepEqual(leaked(rec.answers, [seeded.clientSecret, seeded.refreshToken]), []);
});

test("concurrent stores (separate processes' worth) on an expired token: the broker refreshes once", async () => {
  const seeded = await seedStored({ expired: true });
  const stores = Array.from({ length: 12 }, () => managedStore({ cacheSeconds: 0 }));
  const before = await fakeStats();
  const tokens = await Promise.all(stores.map(({ store }) => store.findTokenById(seeded.id)));
  const after = await fakeStats();
  assert.equal(new Set(tokens.map((t) => t.getAccessToken())).size, 1, "all got the same refreshed token");
  assert.equal(delta(before, after, "token_calls"), 1);
  for (const { rec } of stores) assert.deepEqual(leaked(rec.answers, [seeded.clientSecret, seeded.refreshToken]), []);
});

test("grant token: exchanged once through the broker, the user name stored, a second init finds it", async () => {
  const e = env();
  const { clientId, clientSecret } = await newClient();
  const email = unique("granted") + "@example.com";
  const code = "1000." + unique("code");
  await fakeAdmin("codes", { code, client_id: clientId, email });
  const sdkName = `${email}:${FAKE_ZGID}`; // what the SDK's Utility.getUserName answers
  const { store, rec } = managedStore();
  const before = await fakeStats();
  const token = new OAuthBuilder()
    .clientId(clientId)
    .clientSecret(clientSecret)
    .grantToken(code)
    .redirectURL("https://app.example.com/callback")
    .build();
  await initSDK(token, store);
  assert.equal(await currentUserEmail(), email);
  const after = await fakeStats();
  assert.equal(delta(before, after, "exchange_calls"), 1, "exactly one exchange");
  assert.equal(delta(before, after, "token_calls"), 1, "and no other token call");
  assert.ok(rec.requests.some((r) => r.method === "POST" && r.url.endsWith("/v1/oauth/exchange")));
  assert.equal(token.getUserSignature()?.getName(), sdkName, "the SDK's user lookup, done by the store, its name kept as is");
  assert.equal(delta(before, after, "crm_calls") >= 3, true, "users + org lookups and the API call");
  assert.equal(token.getClientSecret(), clientSecret, "the caller's own value stays");
  assert.equal(token.getRefreshToken() ?? null, null, "no refresh token in the process");

  // Stored in the broker with the user name: another process finds it by UserSignature alone.
  const found = await broker("POST", "/v1/tokens/find", { json: { user_name: sdkName } });
  assert.equal(found.status, 200);
  assert.equal(found.body.user_name, sdkName, "the name the SDK's own stores would have kept");
  assert.equal((await broker("POST", "/v1/tokens/find", { json: { user_name: email } })).status, 404, "not the bare email");
  assert.equal(found.body.id, token.getId());
  assert.equal(found.body.client_id, clientId);
  assert.ok(found.body.refresh_token, "the broker holds the refresh token");
  const refreshToken = found.body.refresh_token;

  const other = managedStore();
  await initSDK(new OAuthBuilder().userSignature(new UserSignature(sdkName)).build(), other.store);
  assert.equal(await currentUserEmail(), email);

  // A second init with the same grant token (a restarted process): found by grant token + client id.
  const again = managedStore();
  const mid = await fakeStats();
  const token2 = new OAuthBuilder().clientId(clientId).clientSecret(clientSecret).grantToken(code).build();
  await initSDK(token2, again.store);
  assert.equal(await currentUserEmail(), email);
  const end = await fakeStats();
  assert.equal(delta(mid, end, "exchange_calls"), 0, "never exchanged again");
  assert.equal(delta(mid, end, "token_calls"), 0);
  assert.equal(token2.getId(), token.getId());
  assert.ok(!again.rec.requests.some((r) => r.url.endsWith("/v1/oauth/exchange")));
  const secrets = [clientSecret, refreshToken];
  for (const r of [rec, other.rec, again.rec]) assert.deepEqual(leaked(r.answers, secrets), []);
  assert.equal(e.provider.length > 0, true);
});

test("a grant token for a user the broker already holds a token for: usable, the old token left alone", async () => {
  const email = unique("held") + "@example.com";
  // The broker already holds a token under the name the SDK's lookup will give this user.
  const seeded = await seedStored({ userName: `${email}:${FAKE_ZGID}`, expired: false });
  const { clientId, clientSecret } = await newClient();
  const code = "1000." + unique("code");
  await fakeAdmin("codes", { code, client_id: clientId, email });
  const { store } = managedStore();
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on("warning", onWarning);
  try {
    const token = new OAuthBuilder().clientId(clientId).clientSecret(clientSecret).grantToken(code).build();
    await initSDK(token, store);
    assert.equal(await currentUserEmail(), email);
    assert.notEqual(token.getId(), seeded.id);
    await new Promise((r) => setImmediate(r));
    assert.ok(warnings.some((w) => w.code === "TOKEN_BROKER_USER_CONFLICT"));
    assert.equal((await broker("GET", `/v1/tokens/${seeded.id}`)).body.user_name, seeded.userName);
  } finally {
    process.off("warning", onWarning);
  }
});

test("a grant token with a UserSignature: exchanged with that user name, no CRM lookup needed", async () => {
  const { clientId, clientSecret } = await newClient();
  const email = unique("named") + "@example.com";
  const code = "1000." + unique("code");
  await fakeAdmin("codes", { code, client_id: clientId, email });
  const { store, rec } = managedStore();
  const before = await fakeStats();
  const token = new OAuthBuilder().clientId(clientId).clientSecret(clientSecret).grantToken(code).userSignature(new UserSignature(email)).build();
  await initSDK(token, store);
  const after = await fakeStats();
  assert.equal(delta(before, after, "exchange_calls"), 1);
  assert.equal(delta(before, after, "crm_calls"), 0, "the user was given");
  const exchange = rec.requests.filter((r) => r.url.endsWith("/v1/oauth/exchange"));
  assert.equal(exchange.length, 1);
  const stored = await broker("GET", `/v1/tokens/${token.getId()}`);
  assert.equal(stored.body.user_name, email);
  assert.equal(await currentUserEmail(), email);
  assert.deepEqual(leaked(rec.answers, [clientSecret, stored.body.refresh_token]), []);
});

test("concurrent first calls with one grant token: one exchange", async () => {
  const { clientId, clientSecret } = await newClient();
  const email = unique("granted") + "@example.com";
  const code = "1000." + unique("code");
  await fakeAdmin("codes", { code, client_id: clientId, email });
  const { store } = managedStore();
  const before = await fakeStats();
  const tokens = Array.from({ length: 6 }, () =>
    new OAuthBuilder().clientId(clientId).clientSecret(clientSecret).grantToken(code).findUser(false).build(),
  );
  const found = await Promise.all(tokens.map((t) => store.findToken(t)));
  const after = await fakeStats();
  assert.equal(delta(before, after, "exchange_calls"), 1);
  assert.equal(new Set(found.map((t) => t.getId())).size, 1);
});

test("self-client (client id, secret, refresh token, user): saved in the broker, answered with a broker token", async () => {
  const { clientId, clientSecret } = await newClient();
  const email = unique("self") + "@example.com";
  const refreshToken = "1000." + unique("rt");
  await fakeAdmin("refresh_tokens", { refresh_token: refreshToken, client_id: clientId, email });
  const { store, rec } = managedStore();
  const before = await fakeStats();
  const token = new OAuthBuilder()
    .clientId(clientId)
    .clientSecret(clientSecret)
    .refreshToken(refreshToken)
    .userSignature(new UserSignature(email))
    .build();
  await initSDK(token, store);
  assert.equal(await currentUserEmail(), email);
  const after = await fakeStats();
  assert.equal(delta(before, after, "token_calls"), 1, "one refresh, by the broker");
  assert.ok(rec.requests.some((r) => r.method === "PUT" && r.url.endsWith("/v1/tokens")));
  const stored = await broker("POST", "/v1/tokens/find", { json: { user_name: email } });
  assert.equal(stored.status, 200);
  assert.equal(stored.body.refresh_token, refreshToken);
  assert.equal(stored.body.client_id, clientId);
  assert.equal(token.getId(), stored.body.id);
  assert.deepEqual(leaked(rec.answers, [clientSecret, refreshToken]), []);

  // Next process: user name only.
  const next = managedStore();
  const mid = await fakeStats();
  await initSDK(new OAuthBuilder().userSignature(new UserSignature(email)).build(), next.store);
  assert.equal(await currentUserEmail(), email);
  assert.equal(delta(mid, await fakeStats(), "token_calls"), 0, "the broker's token is still valid");
});

test("self-client without a user signature: imported, the user name looked up and stored", async () => {
  const { clientId, clientSecret } = await newClient();
  const email = unique("self") + "@example.com";
  const refreshToken = "1000." + unique("rt");
  await fakeAdmin("refresh_tokens", { refresh_token: refreshToken, client_id: clientId, email });
  const { store, rec } = managedStore();
  const token = new OAuthBuilder().clientId(clientId).clientSecret(clientSecret).refreshToken(refreshToken).build();
  await initSDK(token, store);
  assert.equal(await currentUserEmail(), email);
  const sdkName = `${email}:${FAKE_ZGID}`;
  assert.equal(token.getUserSignature()?.getName(), sdkName, "the SDK's name, as its own stores keep it");
  const stored = await broker("GET", `/v1/tokens/${token.getId()}`);
  assert.equal(stored.body.user_name, sdkName);
  assert.deepEqual(leaked(rec.answers, [clientSecret, refreshToken]), []);

  // Next process: found by that name.
  const next = managedStore();
  await initSDK(new OAuthBuilder().userSignature(new UserSignature(sdkName)).build(), next.store);
  assert.equal(await currentUserEmail(), email);
});

test("a JWT without tokens:access: a clear SDKException naming tokens:access", async () => {
  const e = env();
  const seeded = await seedStored({ expired: true });
  const store = new BrokerTokenStore({ url: e.brokerUrl, jwt: e.jwtNoAccess, provider: e.provider });
  const token = new OAuthBuilder().userSignature(new UserSignature(seeded.userName)).build();
  const before = await fakeStats();
  await assert.rejects(initSDK(token, store), (err) => {
    assert.ok(err instanceof SDKException, `an SDKException, got ${err?.constructor?.name}`);
    assert.match(String(err.message), /tokens:access/);
    assert.ok(!String(err.message).includes(e.jwtNoAccess), "never the JWT");
    return true;
  });
  assert.equal(delta(before, await fakeStats(), "token_calls"), 0, "and the SDK did not refresh by itself");
  await assert.rejects(store.findTokenById(seeded.id), (err) => err instanceof SDKException && /tokens:access/.test(err.message));
});

test("the JWT may be an async function, called per request", async () => {
  const e = env();
  const seeded = await seedStored({ expired: true });
  let calls = 0;
  const store = new BrokerTokenStore({
    url: e.brokerUrl,
    provider: e.provider,
    cacheSeconds: 0,
    jwt: async () => {
      calls += 1;
      return e.jwt;
    },
  });
  await initSDK(new OAuthBuilder().id(seeded.id).build(), store);
  assert.equal(await currentUserEmail(), seeded.userName);
  assert.ok(calls >= 2);
  const sync = new BrokerTokenStore({ url: e.brokerUrl, jwt: () => e.jwt });
  assert.equal((await sync.findTokenById(seeded.id)).getId(), seeded.id);
});

test("the cache never serves a token past expiry_time - minValidity (real broker, short-lived tokens)", async () => {
  const seeded = await seedStored({ expired: true });
  // 8 s tokens, minValidity 3 s: the broker refreshes when fewer than 3 s are left (it caps
  // min_validity at half a token's granted lifetime), the store caches for at most expiry - 3 s
  // even though cacheSeconds is 60.
  await fakeAdmin("config", { expires_in: 8 });
  try {
    const { store, rec } = managedStore({ cacheSeconds: 60, minValidity: 3 });
    const accessCalls = () => rec.requests.filter((r) => r.url.includes("/access-token")).length;
    const first = await store.findTokenById(seeded.id);
    const expiry = Number(first.getExpiresIn());
    assert.ok(expiry - Date.now() <= 8_000 && expiry - Date.now() > 6_000, `a fresh 8 s token (${expiry - Date.now()} ms)`);
    const again = await store.findTokenById(seeded.id);
    assert.equal(again.getAccessToken(), first.getAccessToken(), "served from the cache meanwhile");
    assert.equal(accessCalls(), 1);
    await new Promise((r) => setTimeout(r, Math.max(0, expiry - 3_000 - Date.now()) + 300));
    const before = await fakeStats();
    const later = await store.findTokenById(seeded.id);
    assert.equal(accessCalls(), 2, "asked the broker again once expiry - minValidity passed");
    assert.notEqual(later.getAccessToken(), first.getAccessToken());
    assert.ok(Number(later.getExpiresIn()) - Date.now() > 3_000);
    assert.equal(delta(before, await fakeStats(), "refresh_calls"), 1, "which refreshed");
  } finally {
    await fakeAdmin("config", { expires_in: 3600 });
  }
});

test("revokeToken revokes at Zoho through the broker; deleteToken deletes; both then answer SDKException", async () => {
  const revoked = await seedStored({ expired: true });
  const deleted = await seedStored({ expired: true });
  const { store, rec } = managedStore();
  await store.findTokenById(revoked.id); // cached
  const before = await fakeStats();
  assert.equal(await store.revokeToken(revoked.id), true);
  assert.equal(delta(before, await fakeStats(), "revoke_calls"), 1);
  assert.equal((await broker("GET", `/v1/tokens/${revoked.id}`)).status, 404);
  await assert.rejects(store.findTokenById(revoked.id), SDKException);
  await assert.rejects(store.revokeToken(revoked.id), SDKException);

  await store.deleteToken(deleted.id);
  assert.equal((await broker("GET", `/v1/tokens/${deleted.id}`)).status, 404);
  await assert.rejects(store.deleteToken(deleted.id), SDKException);

  // The SDK's own OAuthToken.revoke(id) needs the refresh token in the process: in managed mode it
  // never reaches Zoho (and SDK 2.0.0's fails before it asks the store). The token stays.
  const kept = await seedStored({ expired: true });
  const sdkToken = new OAuthBuilder().id(kept.id).build();
  await initSDK(sdkToken, store);
  const mid = await fakeStats();
  let sdkRevoked = false;
  try {
    sdkRevoked = await sdkToken.revoke(kept.id);
  } catch (err) {
    assert.ok(err instanceof SDKException);
  }
  assert.equal(sdkRevoked, false);
  assert.equal(delta(mid, await fakeStats(), "revoke_calls"), 0);
  assert.equal((await broker("GET", `/v1/tokens/${kept.id}`)).status, 200);

  // The SDK's own remove() goes through deleteToken.
  const removed = await seedStored({ expired: true });
  const token = new OAuthBuilder().id(removed.id).build();
  await initSDK(token, store);
  assert.equal(await token.remove(), true);
  assert.equal((await broker("GET", `/v1/tokens/${removed.id}`)).status, 404);
  assert.deepEqual(leaked(rec.answers, [revoked.clientSecret, revoked.refreshToken, deleted.refreshToken, removed.refreshToken]), []);
});

test("broker errors are SDKExceptions with the broker's code and message: needs_reauth, unknown user", async () => {
  const e = env();
  // A stored token whose refresh token Zoho does not know: the broker answers 409 needs_reauth.
  const { clientId, clientSecret } = await newClient();
  const userName = unique("dead") + "@example.com";
  const put = await broker("PUT", "/v1/tokens", {
    json: { user_name: userName, client_id: clientId, client_secret: clientSecret, refresh_token: "1000." + unique("unknown"), expiry_time: 1, provider: e.provider },
  });
  assert.equal(put.status, 201);
  const { store } = managedStore();
  await assert.rejects(store.findTokenById(put.body.id), (err) => {
    assert.ok(err instanceof SDKException);
    assert.equal(err.code, "needs_reauth");
    assert.match(err.message, /409 needs_reauth/);
    return true;
  });
  const token = new OAuthBuilder().userSignature(new UserSignature(unique("nobody") + "@example.com")).build();
  await assert.rejects(initSDK(token, store), (err) => err instanceof SDKException && /holds no token for the user/.test(err.message));
});

test("getTokens in managed mode: the JWT's tokens, never a secret", async () => {
  const seeded = await seedStored({ expired: false });
  const { store, rec } = managedStore({ pageSize: 2 });
  const tokens = await store.getTokens();
  const mine = tokens.find((t) => t.getId() === seeded.id);
  assert.ok(mine, "the seeded token is listed");
  assert.equal(mine.getUserSignature().getName(), seeded.userName);
  for (const t of tokens) assertNoSecrets(t);
  assert.deepEqual(leaked(rec.answers, [seeded.clientSecret, seeded.refreshToken]), []);
  assert.ok(rec.requests.filter((r) => r.url.includes("/v1/tokens?")).length >= 1);
});

test("the SDK's Initializer keeps our store", async () => {
  const seeded = await seedStored({ expired: true });
  const { store } = managedStore();
  await initSDK(new OAuthBuilder().id(seeded.id).build(), store);
  const initializer = await Initializer.getInitializer();
  assert.equal(initializer.getStore(), store);
});
