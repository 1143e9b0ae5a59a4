// Store-only mode (managed: false) against the broker with TOKEN_BROKER_JWT_STORE
// (tokens:read tokens:write tokens:secrets tokens:admin): a plain TokenStore, as the SDK's FileStore/DBStore.

import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { BrokerTokenStore } from "../index.js";
import {
  env,
  unique,
  broker,
  fakeStats,
  seedStored,
  initSDK,
  currentUserEmail,
  OAuthBuilder,
  OAuthToken,
  UserSignature,
  SDKException,
} from "./helpers.mjs";

function plainStore(extra = {}) {
  const e = env();
  return new BrokerTokenStore({ url: e.brokerUrl, jwt: e.jwtStore, managed: false, provider: e.provider, ...extra });
}

function sdkToken({ userName, clientId, clientSecret, refreshToken, accessToken, grantToken, expiresIn }) {
  const token = new OAuthToken(clientId ?? null, clientSecret ?? null, grantToken ?? null, refreshToken ?? null, null, null, accessToken ?? null, userName ? new UserSignature(userName) : null);
  if (expiresIn !== undefined) token.setExpiresIn(expiresIn);
  return token;
}

test("saveToken, then findToken by user, by refresh token + client id, by access token; findTokenById", async () => {
  const store = plainStore();
  const values = {
    userName: unique("plain") + "@example.com",
    clientId: "1000." + randomBytes(8).toString("hex"),
    clientSecret: randomBytes(16).toString("hex"),
    refreshToken: "1000." + randomBytes(16).toString("hex"),
    accessToken: "1000." + randomBytes(16).toString("hex"),
    expiresIn: String(Date.now() + 3_600_000),
  };
  const token = sdkToken(values);
  await store.saveToken(token);
  assert.ok(token.getId(), "the broker's id is set on the token");

  const byUser = await store.findToken(sdkToken({ userName: values.userName }));
  assert.equal(byUser.getId(), token.getId());
  assert.equal(byUser.getClientSecret(), values.clientSecret, "store-only: secrets come back (tokens:secrets)");
  assert.equal(byUser.getRefreshToken(), values.refreshToken);
  assert.equal(byUser.getAccessToken(), values.accessToken);
  assert.equal(byUser.getExpiresIn(), values.expiresIn, "expiresIn round-trips as the SDK's string");

  const byRefresh = await store.findToken(
    sdkToken({ clientId: values.clientId, clientSecret: values.clientSecret, refreshToken: values.refreshToken }),
  );
  assert.equal(byRefresh.getId(), token.getId());
  assert.equal(byRefresh.getUserSignature().getName(), values.userName);

  const byAccess = await store.findToken(sdkToken({ accessToken: values.accessToken }));
  assert.equal(byAccess.getId(), token.getId());

  const mine = sdkToken({ userName: values.userName, clientId: "1000.mine" });
  await store.findToken(mine);
  assert.equal(mine.getClientId(), "1000.mine", "the caller's values win, as in the SDK's stores");

  const byId = await store.findTokenById(token.getId());
  assert.ok(byId instanceof OAuthToken);
  assert.equal(byId.getUserSignature().getName(), values.userName);
  assert.equal(byId.getRefreshToken(), values.refreshToken);

  assert.equal(await store.findToken(sdkToken({ userName: unique("nobody") + "@example.com" })), null);
  await assert.rejects(store.findTokenById("01a00000-0000-7000-8000-000000000000"), SDKException);
  const notAToken = { hello: "world" };
  assert.equal(await store.findToken(notAToken), notAToken);
});

test("saveToken updates the token find matches, getTokens lists it, deleteToken deletes it", async () => {
  const store = plainStore({ pageSize: 3 });
  const userName = unique("plain") + "@example.com";
  const first = sdkToken({ userName, clientId: "1000.a", clientSecret: "s1", refreshToken: "1000.r-" + unique("r") });
  await store.saveToken(first);
  const second = sdkToken({ userName, clientId: "1000.a", clientSecret: "s1", refreshToken: first.getRefreshToken(), accessToken: "1000.at-" + unique("a"), expiresIn: String(Date.now() + 60_000) });
  await store.saveToken(second);
  assert.equal(second.getId(), first.getId(), "no second row for the same user");
  const listed = await store.getTokens();
  const mine = listed.filter((t) => t.getUserSignature()?.getName() === userName);
  assert.equal(mine.length, 1);
  assert.equal(mine[0].getAccessToken(), second.getAccessToken());
  await store.deleteToken(first.getId());
  assert.equal((await broker("GET", `/v1/tokens/${first.getId()}`)).status, 404);
  await assert.rejects(store.deleteToken(first.getId()), SDKException);
});

test("store-only through the SDK: a stored valid access token is used as it is, no token calls", async () => {
  const e = env();
  const seeded = await seedStored({ expired: true });
  // A valid access token, which the broker gets from the fake for us.
  const access = await broker("GET", `/v1/tokens/${seeded.id}/access-token`, { jwt: e.jwt });
  assert.equal(access.status, 200);
  const store = plainStore();
  const before = await fakeStats();
  const token = new OAuthBuilder().userSignature(new UserSignature(seeded.userName)).build();
  await initSDK(token, store);
  assert.equal(await currentUserEmail(), seeded.userName);
  assert.equal((await fakeStats()).token_calls - before.token_calls, 0);
  assert.equal(token.getAccessToken(), access.body.access_token);
  assert.equal(token.getRefreshToken(), seeded.refreshToken, "store-only: the SDK holds the refresh token");
});

test("store-only with a JWT lacking tokens:secrets: secrets come back empty", async () => {
  const e = env();
  const seeded = await seedStored({ expired: false });
  const store = new BrokerTokenStore({ url: e.brokerUrl, jwt: e.jwtNoAccess, managed: false });
  const found = await store.findToken(sdkToken({ userName: seeded.userName }));
  assert.equal(found.getId(), seeded.id);
  assert.equal(found.getRefreshToken() ?? null, null);
  assert.equal(found.getClientSecret() ?? null, null);
});

test("deleteTokens deletes every token the JWT sees (on the broker with TOKEN_BROKER_TEST_DELETE_ALL=1)", async () => {
  if (process.env.TOKEN_BROKER_TEST_DELETE_ALL === "1") {
    // The last broker test of the suite (files run in order: managed, store, unit).
    await seedStored({ expired: false });
    await seedStored({ expired: false });
    const store = plainStore({ provider: null });
    const deleted = await store.deleteTokens();
    assert.ok(deleted >= 2, `deleted ${deleted}`);
    assert.deepEqual(await store.getTokens(), []);
    const managed = new BrokerTokenStore({ url: env().brokerUrl, jwt: env().jwt });
    await assert.rejects(managed.deleteTokens(), (err) => err instanceof SDKException && err.status === 403 && /tokens:admin/.test(err.message));
    return;
  }
  // A shared broker: the same call against a scripted one.
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url: String(url), method: init.method });
    return new Response(JSON.stringify({ deleted: 7 }), { status: 200 });
  };
  const store = new BrokerTokenStore({ url: "http://127.0.0.1:9", jwt: "x.y.z", managed: false, fetch });
  assert.equal(await store.deleteTokens(), 7);
  assert.deepEqual(calls, [{ url: "http://127.0.0.1:9/v1/tokens?confirm=all", method: "DELETE" }]);
});
