// Shared test plumbing: the broker, the fake Zoho (admin API and stats), and the real SDK.
// Not a test file itself (run-tests.sh passes test/*.test.mjs to node --test).

import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as SDK from "@zohocrm/nodejs-sdk-8.0";

export { SDK };
export const {
  DataCenter,
  InitializeBuilder,
  Initializer,
  LogBuilder,
  Levels,
  OAuthBuilder,
  OAuthToken,
  SDKConfigBuilder,
  SDKException,
  UserSignature,
  ParameterMap,
  Choice,
} = SDK;

function need(name) {
  const value = process.env[name];
  if (typeof value !== "string" || value.trim().length === 0) {
    throw new Error(`the environment variable ${name} is not set (see clients/node/README.md, "Tests")`);
  }
  return value.trim();
}

/** The env contract of run-tests.sh. Every test fails (never skips) when something is missing. */
export function env() {
  return {
    brokerUrl: need("TOKEN_BROKER_URL").replace(/\/+$/, ""),
    jwt: need("TOKEN_BROKER_JWT"),
    jwtStore: need("TOKEN_BROKER_JWT_STORE"),
    jwtNoAccess: need("TOKEN_BROKER_JWT_NO_ACCESS"),
    fakeUrl: need("FAKE_ZOHO_URL").replace(/\/+$/, ""),
    provider: process.env.TOKEN_BROKER_PROVIDER?.trim() || "zoho-us",
  };
}

export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}

async function call(url, { method = "GET", json, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let body = null;
  try {
    body = text.length ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

/** The fake Zoho's admin API. */
export async function fakeAdmin(what, json) {
  const { fakeUrl } = env();
  const res = await call(`${fakeUrl}/__admin/${what}`, { method: "POST", json });
  if (res.status !== 200) throw new Error(`fake Zoho /__admin/${what} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function fakeStats() {
  const { fakeUrl } = env();
  const res = await call(`${fakeUrl}/__admin/stats`);
  if (res.status !== 200) throw new Error(`fake Zoho /__admin/stats answered ${res.status}`);
  return res.body;
}

/** A broker call with a given JWT (default: the store JWT, which sees secrets). */
export async function broker(method, path, { json, jwt } = {}) {
  const e = env();
  return call(e.brokerUrl + path, { method, json, headers: { Authorization: `Bearer ${jwt ?? e.jwtStore}` } });
}

/** A client at the fake Zoho: {clientId, clientSecret}. */
export async function newClient() {
  const clientId = "1000." + randomBytes(12).toString("hex").toUpperCase();
  const clientSecret = randomBytes(20).toString("hex");
  await fakeAdmin("clients", { client_id: clientId, client_secret: clientSecret });
  return { clientId, clientSecret };
}

/** A user whose grant (refresh token) the fake knows and the broker stores, with an expired access
 * token: {id, userName, clientId, clientSecret, refreshToken}. */
export async function seedStored({ userName = unique("user") + "@example.com", expired = true } = {}) {
  const e = env();
  const { clientId, clientSecret } = await newClient();
  const refreshToken = "1000." + randomBytes(16).toString("hex") + "." + randomBytes(16).toString("hex");
  await fakeAdmin("refresh_tokens", { refresh_token: refreshToken, client_id: clientId, email: userName });
  const res = await broker("PUT", "/v1/tokens", {
    json: {
      user_name: userName,
      client_id: clientId,
      client_secret: clientSecret,
      refresh_token: refreshToken,
      access_token: "1000.expired." + randomBytes(8).toString("hex"),
      expiry_time: expired ? Date.now() - 60_000 : Date.now() + 3_600_000,
      provider: e.provider,
    },
  });
  if (res.status !== 201 && res.status !== 200) {
    throw new Error(`seeding the broker answered ${res.status}: ${JSON.stringify(res.body)}`);
  }
  return { id: res.body.id, userName, clientId, clientSecret, refreshToken };
}

/** Makes a stored token's access token expired again (through the broker). */
export async function expire(id) {
  const res = await broker("PUT", "/v1/tokens", {
    json: { id, access_token: "1000.expired." + randomBytes(8).toString("hex"), expiry_time: Date.now() - 60_000 },
  });
  if (res.status !== 200) throw new Error(`expiring ${id} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** An SDK environment whose accounts server and CRM API are the fake Zoho. */
export function fakeEnvironment() {
  const { fakeUrl } = env();
  return DataCenter.setEnvironment(fakeUrl, `${fakeUrl}/oauth/v2/token`, fakeUrl);
}

const resourcePath = mkdtempSync(join(tmpdir(), "tb-node-sdk-"));

/** `Initializer` through the SDK's own builder, with the fake environment and `store`. */
export async function initSDK(token, store, environment = fakeEnvironment()) {
  // Every init as in a new process. (SDK 2.0.0: once a process has initialized, a later
  // Initializer.initialize with an id-only token crashes in Initializer.getEncodedKey before it
  // reaches the store, because the token has no user, refresh token or access token yet.)
  Initializer.LOCAL.clear();
  Initializer.initializer = undefined;
  const sdkConfig = new SDKConfigBuilder().autoRefreshFields(false).pickListValidation(false).build();
  const logger = new LogBuilder().level(Levels.OFF).filePath(null).build();
  await (await new InitializeBuilder())
    .environment(environment)
    .token(token)
    .store(store)
    .SDKConfig(sdkConfig)
    .resourcePath(resourcePath)
    .logger(logger)
    .initialize();
}

/** One real SDK API call: UsersOperations.getUsers(type=CurrentUser) against the fake CRM. Returns the
 * email of the current user; throws on an API error. */
export async function currentUserEmail() {
  const { UsersOperations, GetUsersParam, ResponseWrapper, APIException } = SDK.Users;
  const params = new ParameterMap();
  await params.add(GetUsersParam.TYPE, "CurrentUser");
  const response = await new UsersOperations().getUsers(params);
  if (response == null) throw new Error("getUsers answered nothing");
  const object = response.getObject();
  if (object instanceof ResponseWrapper) {
    const users = object.getUsers();
    return users[0].getEmail();
  }
  if (object instanceof APIException) {
    throw new Error(`getUsers: ${response.getStatusCode()} ${object.getCode()?.getValue()} ${object.getMessage()?.getValue()}`);
  }
  throw new Error(`getUsers answered HTTP ${response.getStatusCode()}`);
}

/** A fetch that records every broker answer's text, so tests can check what the adapter received. */
export function recordingFetch() {
  const answers = [];
  const requests = [];
  const wrapped = async (url, init) => {
    requests.push({ url: String(url), method: init?.method ?? "GET" });
    const res = await fetch(url, init);
    const text = await res.clone().text();
    answers.push({ url: String(url), status: res.status, text });
    return res;
  };
  return { fetch: wrapped, answers, requests };
}

/** Strings (secrets) that appear in any of `answers`. */
export function leaked(answers, secrets) {
  const found = [];
  for (const a of answers) {
    for (const s of secrets) {
      if (s && a.text.includes(s)) found.push({ url: a.url, secret: s.slice(0, 6) + "…" });
    }
  }
  return found;
}
