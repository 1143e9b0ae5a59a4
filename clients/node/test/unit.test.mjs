// The store against a scripted broker (an injected fetch): the cache bounds, single flight, error
// mapping and request shapes. Needs no broker; the SDK is real, its network is never used.

import { test } from "node:test";
import assert from "node:assert/strict";
import { BrokerTokenStore, providerForAccountsUrl, brokerUserName, ERROR_CODE } from "../index.js";
import { OAuthBuilder, OAuthToken, SDKException, UserSignature, SDK, initSDK } from "./helpers.mjs";
// The SDK's index does not export SADataCenter.
import { SADataCenter } from "@zohocrm/nodejs-sdk-8.0/lib/routes/dc/sa_data_center.js";

const JWT = "eyJhbGciOiJIUzI1NiJ9.unit-test-jwt.c2lnbmF0dXJl";
const URL_ = "http://127.0.0.1:9";

/** A fetch answering from `routes` ({"METHOD /path": (req) => [status, body]}); records requests. */
function scripted(routes) {
  const requests = [];
  const fetch = async (url, init) => {
    const u = new URL(url);
    const req = { method: init.method, path: u.pathname, query: Object.fromEntries(u.searchParams), headers: init.headers, body: init.body ? JSON.parse(init.body) : undefined };
    requests.push(req);
    const route = routes[`${req.method} ${req.path}`];
    const [status, body] = route ? await route(req) : [404, { error: "not_found", message: "no such token" }];
    return new Response(body === undefined ? null : typeof body === "string" ? body : JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  };
  return { fetch, requests };
}

const ID = "01a00000-0000-7000-8000-00000000abcd";
function stored(extra = {}) {
  return {
    id: ID, user_name: "alice@example.com", client_id: "1000.c", client_secret: "S3CRET", refresh_token: "1000.REFRESH",
    access_token: "1000.old", grant_token: "1000.GRANT", expiry_time: Date.now() + 3_600_000, redirect_url: null,
    api_domain: "https://www.zohoapis.com", provider: "zoho-us", tenant: null, status: "active",
    created_at: "2026-01-01T00:00:00Z", updated_at: "2026-01-01T00:00:00Z", ...extra,
  };
}
function accessAnswer(expiresInMs, token = "1000.fresh-" + Math.random()) {
  const expiry = Date.now() + expiresInMs;
  return { access_token: token, token_type: "Bearer", expiry_time: expiry, expires_in: Math.floor(expiresInMs / 1000), api_domain: "https://www.zohoapis.eu" };
}

test("constructor checks its options and never shows the JWT", () => {
  assert.throws(() => new BrokerTokenStore({ jwt: JWT }), SDKException);
  assert.throws(() => new BrokerTokenStore({ url: URL_ }), SDKException);
  assert.throws(() => new BrokerTokenStore({ url: URL_, jwt: 42 }), SDKException);
  assert.throws(() => new BrokerTokenStore({ url: URL_, jwt: JWT, minValidity: -1 }), SDKException);
  assert.throws(() => new BrokerTokenStore({ url: URL_, jwt: JWT, pageSize: 0 }), SDKException);
  const store = new BrokerTokenStore({ url: URL_ + "/", jwt: JWT });
  assert.equal(store.url, URL_);
  assert.ok(store instanceof SDK.TokenStore.TokenStore, "an SDK TokenStore (InitializeBuilder.store accepts it)");
  assert.ok(!JSON.stringify(store).includes(JWT));
  assert.ok(!String(store).includes(JWT));
});

test("provider keys for the SDK's data centers", () => {
  const dcs = { US: "zoho-us", EU: "zoho-eu", IN: "zoho-in", AU: "zoho-au", CN: "zoho-cn", JP: "zoho-jp", CA: "zoho-ca", SA: "zoho-sa" };
  for (const [dc, key] of Object.entries(dcs)) {
    const environment = (dc === "SA" ? SADataCenter : SDK[`${dc}DataCenter`]).PRODUCTION();
    assert.equal(providerForAccountsUrl(environment.getAccountsUrl()), key, dc);
  }
  assert.equal(providerForAccountsUrl("http://127.0.0.1:1234/oauth/v2/token"), null);
  assert.equal(providerForAccountsUrl(null), null);
  assert.equal(brokerUserName("bob@example.com:800000001"), "bob@example.com:800000001", "the SDK's name, as its own stores keep it");
  assert.equal(brokerUserName("  bob@example.com:800000001\n"), "bob@example.com:800000001");
  assert.equal(brokerUserName("bob@example.com"), "bob@example.com");
  assert.equal(brokerUserName("   "), null);
  assert.equal(brokerUserName(""), null);
  assert.equal(brokerUserName(null), null);
  assert.equal(brokerUserName(undefined), null);
});

test("managed: a found token gets the broker's access token, never a secret (even from a JWT with secrets)", async () => {
  const { fetch, requests } = scripted({
    "POST /v1/tokens/find": () => [200, stored()],
    [`GET /v1/tokens/${ID}/access-token`]: () => [200, accessAnswer(3_600_000, "1000.fresh")],
  });
  const store = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch, minValidity: 120 });
  const token = new OAuthBuilder().userSignature(new UserSignature("alice@example.com")).build();
  assert.equal(await store.findToken(token), token);
  assert.equal(token.getAccessToken(), "1000.fresh");
  assert.equal(token.getId(), ID);
  assert.equal(token.getClientSecret() ?? null, null);
  assert.equal(token.getRefreshToken() ?? null, null);
  assert.equal(token.getGrantToken() ?? null, null);
  assert.equal(token.getAPIDomain(), "https://www.zohoapis.eu", "overwritten");
  assert.equal(typeof token.getExpiresIn(), "string");
  assert.deepEqual(requests[0].body, { user_name: "alice@example.com" });
  assert.equal(requests[1].query.min_validity, "120");
  assert.equal(requests[1].headers.Authorization, "Bearer " + JWT);
  // An SDK token that carried an older access token and expiry: overwritten.
  const stale = new OAuthBuilder().id(ID).build();
  stale.setAccessToken("1000.stale");
  stale.setExpiresIn("1");
  await store.findToken(stale);
  assert.equal(stale.getAccessToken(), "1000.fresh");
  assert.ok(Number(stale.getExpiresIn()) > Date.now());
});

test("managed: the cache serves for cacheSeconds, never past expiry_time - minValidity; one request in flight per id", async () => {
  let n = 0;
  let lifetime = 3_600_000;
  const { fetch, requests } = scripted({
    [`GET /v1/tokens/${ID}`]: () => [200, stored()],
    [`GET /v1/tokens/${ID}/access-token`]: async () => {
      n += 1;
      await new Promise((r) => setTimeout(r, 30));
      return [200, accessAnswer(lifetime, "1000.t" + n)];
    },
  });
  const access = () => requests.filter((r) => r.path.endsWith("/access-token")).length;
  const store = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch, minValidity: 60, cacheSeconds: 0.2 });
  const many = await Promise.all(Array.from({ length: 10 }, () => store.findTokenById(ID)));
  assert.equal(access(), 1, "ten concurrent callers, one broker request");
  assert.ok(many.every((t) => t.getAccessToken() === "1000.t1"));
  await store.findTokenById(ID);
  assert.equal(access(), 1, "cached");
  await new Promise((r) => setTimeout(r, 250));
  assert.equal((await store.findTokenById(ID)).getAccessToken(), "1000.t2", "cacheSeconds passed");

  // A token valid for 60.15 s with minValidity 60: cached for at most 0.15 s although cacheSeconds is 10.
  const bounded = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch, minValidity: 60, cacheSeconds: 10 });
  lifetime = 60_150;
  const a = await bounded.findTokenById(ID);
  assert.equal((await bounded.findTokenById(ID)).getAccessToken(), a.getAccessToken());
  await new Promise((r) => setTimeout(r, 200));
  const before = access();
  const b = await bounded.findTokenById(ID);
  assert.equal(access(), before + 1, "not served past expiry - minValidity");
  assert.notEqual(b.getAccessToken(), a.getAccessToken());

  // A token already closer to its expiry than minValidity (the broker caps min_validity at half a
  // token's lifetime): never cached.
  lifetime = 30_000;
  bounded.clearCache();
  const c0 = access();
  await bounded.findTokenById(ID);
  await bounded.findTokenById(ID);
  assert.equal(access(), c0 + 2);
  // Closer than the SDK's own refresh threshold (5 s): no expiry for the SDK, so it never refreshes.
  lifetime = 3_000;
  const near = await bounded.findTokenById(ID);
  assert.equal(near.getExpiresIn(), null);
});

test("errors: 403 on the access token names tokens:access; others carry the broker's code; never the JWT", async () => {
  const { fetch } = scripted({
    [`GET /v1/tokens/${ID}`]: () => [200, stored()],
    [`GET /v1/tokens/${ID}/access-token`]: () => [403, { error: "forbidden", message: "this call needs the tokens:access scope" }],
    "POST /v1/tokens/find": () => [409, { error: "needs_reauth", message: "the user must log in again" }],
    "PUT /v1/tokens": () => [500, "<html>oops</html>"],
    "DELETE /v1/tokens": (req) => [200, { deleted: req.query.confirm === "all" ? 3 : 0 }],
  });
  const store = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch });
  await assert.rejects(store.findTokenById(ID), (err) => {
    assert.ok(err instanceof SDKException);
    assert.equal(err.code, "forbidden");
    assert.equal(err.status, 403);
    assert.match(err.message, /tokens:access/);
    assert.ok(!err.message.includes(JWT));
    return true;
  });
  await assert.rejects(store.findToken(new OAuthBuilder().userSignature(new UserSignature("x@example.com")).build()), (err) => {
    assert.equal(err.code, "needs_reauth");
    assert.match(err.message, /HTTP 409 needs_reauth: the user must log in again/);
    return true;
  });
  await assert.rejects(store.saveToken(new OAuthBuilder().id(ID).build()), (err) => {
    assert.equal(err.code, ERROR_CODE);
    assert.match(err.message, /HTTP 500/);
    assert.ok(!err.message.includes("oops"), "non-JSON bodies are left out");
    return true;
  });
  assert.equal(await store.deleteTokens(), 3);
});

test("errors: an unreachable broker and a broker that does not answer in time", async () => {
  const refused = new BrokerTokenStore({ url: "http://127.0.0.1:1", jwt: JWT });
  await assert.rejects(refused.findTokenById(ID), (err) => {
    assert.ok(err instanceof SDKException);
    assert.equal(err.code, ERROR_CODE);
    assert.match(err.message, /cannot reach the broker at http:\/\/127\.0\.0\.1:1/);
    assert.ok(!err.message.includes(JWT));
    return true;
  });
  // (AbortSignal.timeout's timer does not keep the process alive; a real socket would.)
  const hanging = (url, init) =>
    new Promise((_, reject) => {
      const keepAlive = setTimeout(() => {}, 5_000);
      init.signal.addEventListener("abort", () => {
        clearTimeout(keepAlive);
        reject(init.signal.reason);
      });
    });
  const slow = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch: hanging, timeout: 0.1 });
  await assert.rejects(slow.findTokenById(ID), /did not answer within 0.1 s/);
  const badJwt = new BrokerTokenStore({ url: URL_, jwt: () => "", fetch: hanging });
  await assert.rejects(badJwt.findTokenById(ID), /returned no JWT/);
});

test("exchange: the provider follows the SDK environment's data center; the grant token is not kept", async () => {
  const { fetch, requests } = scripted({
    "POST /v1/tokens/find": () => [404, { error: "not_found", message: "no token matches" }],
    "POST /v1/oauth/exchange": (req) => [201, stored({ user_name: null, grant_token: req.body.grant_token, client_secret: null, refresh_token: null })],
    [`GET /v1/tokens/${ID}/access-token`]: () => [200, { ...accessAnswer(3_600_000), api_domain: "https://www.zohoapis.eu" }],
  });
  const store = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch });
  // findUser(false): no CRM lookup, so nothing leaves this process but the scripted broker calls.
  const token = new OAuthBuilder().clientId("1000.c").clientSecret("csecret").grantToken("1000.code").redirectURL("https://app/cb").findUser(false).build();
  await initSDK(token, store, SDK.EUDataCenter.PRODUCTION());
  const exchange = requests.find((r) => r.path === "/v1/oauth/exchange");
  assert.deepEqual(exchange.body, { grant_token: "1000.code", client_id: "1000.c", client_secret: "csecret", redirect_url: "https://app/cb", provider: "zoho-eu" });
  assert.deepEqual(requests.find((r) => r.path === "/v1/tokens/find").body, { grant_token: "1000.code", client_id: "1000.c" });
  assert.equal(token.getId(), ID);
  assert.equal(token.getRefreshToken() ?? null, null);

  // An explicit provider wins; an unknown accounts server sends none (the broker's default).
  requests.length = 0;
  const explicit = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch, provider: "zoho-in" });
  await explicit.findToken(new OAuthBuilder().clientId("1000.c").clientSecret("s").grantToken("1000.other").findUser(false).build());
  assert.equal(requests.find((r) => r.path === "/v1/oauth/exchange").body.provider, "zoho-in");
});

test("getTokens walks every page and stops on a repeated cursor", async () => {
  const pages = { "": ["a", "b"], c1: ["c"] };
  const { fetch, requests } = scripted({
    "GET /v1/tokens": (req) => {
      const cursor = req.query.cursor ?? "";
      const ids = pages[cursor];
      return [200, { tokens: ids.map((id) => stored({ id })), next_cursor: cursor === "" ? "c1" : null }];
    },
  });
  const store = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch, pageSize: 2, provider: "zoho-us" });
  const tokens = await store.getTokens();
  assert.deepEqual(tokens.map((t) => t.getId()), ["a", "b", "c"]);
  assert.ok(tokens.every((t) => t instanceof OAuthToken && (t.getRefreshToken() ?? null) === null));
  assert.deepEqual(requests[0].query, { limit: "2", provider: "zoho-us" });
  assert.equal(requests[1].query.cursor, "c1");
  const looping = scripted({ "GET /v1/tokens": () => [200, { tokens: [], next_cursor: "same" }] });
  await assert.rejects(new BrokerTokenStore({ url: URL_, jwt: JWT, fetch: looping.fetch }).getTokens(), /repeated a page cursor/);
});

test("store-only: secrets are merged as the SDK's stores do; saves send every field", async () => {
  const { fetch, requests } = scripted({
    "POST /v1/tokens/find": () => [200, stored()],
    "PUT /v1/tokens": (req) => [201, stored({ ...req.body, id: ID })],
  });
  const store = new BrokerTokenStore({ url: URL_, jwt: JWT, fetch, managed: false });
  const token = new OAuthBuilder().userSignature(new UserSignature("alice@example.com")).build();
  await store.findToken(token);
  assert.equal(token.getRefreshToken(), "1000.REFRESH");
  assert.equal(token.getClientSecret(), "S3CRET");
  assert.equal(token.getAccessToken(), "1000.old");
  const fresh = new OAuthToken("1000.c", "sec", null, "1000.r", null, null, "1000.a", new UserSignature("bob@example.com"));
  fresh.setExpiresIn("1796000000000");
  await store.saveToken(fresh);
  assert.deepEqual(requests.at(-1).body, {
    user_name: "bob@example.com", client_id: "1000.c", client_secret: "sec", refresh_token: "1000.r", access_token: "1000.a", expiry_time: 1796000000000,
  });
  assert.equal(fresh.getId(), ID);
});
