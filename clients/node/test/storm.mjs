#!/usr/bin/env node
// A storm of real SDK calls through a managed BrokerTokenStore, for the broker's own tests
// (not a node:test file; run-tests.sh does not run it).
//
//   node clients/node/test/storm.mjs
//
// Env:
//   BROKER_URL          the broker's base URL
//   TOKEN_BROKER_JWT    a JWT with "tokens:read tokens:access tokens:write"
//   USER_NAME           the user of a token stored in the broker (its access token may be expired)
//   FAKE_ZOHO_URL       the fake Zoho (its CRM API answers the SDK's calls)
//   CALLS               how many concurrent SDK API calls (UsersOperations.getUsers, type CurrentUser)
//                       after the SDK's initialization; default 12
//   FORBIDDEN           comma-separated strings (e.g. the client secret and the refresh token) that must
//                       never appear in a broker answer the store receives, nor on the SDK's token
//   CACHE_SECONDS       the store's cacheSeconds; default 0, so every SDK call asks the broker
//   MIN_VALIDITY        the store's minValidity; default 60
//   TOKEN_BROKER_PROVIDER  optional provider option
//
// Prints one JSON line {"ok": n, "errors": [...], "leaks": n} and exits 0 only when all CALLS calls
// succeeded (each answered the user USER_NAME), none failed and nothing leaked; 1 otherwise.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as SDK from "@zohocrm/nodejs-sdk-8.0";
import { BrokerTokenStore } from "../index.js";

const result = { ok: 0, errors: [], leaks: 0 };

function finish() {
  process.stdout.write(JSON.stringify(result) + "\n");
  const calls = callsWanted();
  process.exit(result.errors.length === 0 && result.leaks === 0 && result.ok === calls ? 0 : 1);
}

function callsWanted() {
  const n = Number(process.env.CALLS ?? "12");
  return Number.isInteger(n) && n > 0 ? n : 12;
}

function describe(err) {
  const text = err && typeof err.message === "string" && err.message.length > 0 ? err.message : String(err);
  const code = err && err.code ? `${err.code}: ` : "";
  return (code + text).slice(0, 500);
}

async function main() {
  if (process.env.NODE_TEST_CONTEXT && !process.env.BROKER_URL) {
    // A bare `node --test` in clients/node runs every file under test/ (Node 20), this one too.
    console.error("storm.mjs is not a node:test file; run-tests.sh runs test/*.test.mjs");
    process.exit(0);
  }
  const missing = ["BROKER_URL", "TOKEN_BROKER_JWT", "USER_NAME", "FAKE_ZOHO_URL"].filter((n) => !process.env[n]);
  if (missing.length > 0) {
    result.errors.push(`not set: ${missing.join(", ")}`);
    return;
  }
  const forbidden = (process.env.FORBIDDEN ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  const fake = process.env.FAKE_ZOHO_URL.replace(/\/+$/, "");
  const userName = process.env.USER_NAME;

  const recordingFetch = async (url, init) => {
    const res = await fetch(url, init);
    const text = await res.clone().text();
    for (const s of forbidden) if (text.includes(s)) result.leaks += 1;
    return res;
  };
  const store = new BrokerTokenStore({
    url: process.env.BROKER_URL,
    jwt: process.env.TOKEN_BROKER_JWT,
    provider: process.env.TOKEN_BROKER_PROVIDER || null,
    cacheSeconds: Number(process.env.CACHE_SECONDS ?? "0"),
    minValidity: Number(process.env.MIN_VALIDITY ?? "60"),
    fetch: recordingFetch,
  });

  const token = new SDK.OAuthBuilder().userSignature(new SDK.UserSignature(userName)).build();
  const environment = SDK.DataCenter.setEnvironment(fake, `${fake}/oauth/v2/token`, fake);
  try {
    await (await new SDK.InitializeBuilder())
      .environment(environment)
      .token(token)
      .store(store)
      .SDKConfig(new SDK.SDKConfigBuilder().autoRefreshFields(false).pickListValidation(false).build())
      .resourcePath(mkdtempSync(join(tmpdir(), "tb-storm-")))
      .logger(new SDK.LogBuilder().level(SDK.Levels.OFF).filePath(null).build())
      .initialize();
  } catch (err) {
    result.errors.push("initialize: " + describe(err));
    return;
  }

  const { UsersOperations, GetUsersParam, ResponseWrapper } = SDK.Users;
  const one = async () => {
    const params = new SDK.ParameterMap();
    await params.add(GetUsersParam.TYPE, "CurrentUser");
    const response = await new UsersOperations().getUsers(params);
    const object = response ? response.getObject() : null;
    if (!(object instanceof ResponseWrapper)) {
      throw new Error(`getUsers answered HTTP ${response ? response.getStatusCode() : "nothing"}`);
    }
    const email = object.getUsers()[0].getEmail();
    if (email !== userName) throw new Error("getUsers answered another user");
  };
  const settled = await Promise.allSettled(Array.from({ length: callsWanted() }, one));
  for (const s of settled) {
    if (s.status === "fulfilled") result.ok += 1;
    else result.errors.push(describe(s.reason));
  }
  // The SDK's token object never holds a forbidden string either.
  for (const value of [token.getClientSecret(), token.getRefreshToken(), token.getGrantToken(), token.getAccessToken()]) {
    for (const s of forbidden) if (typeof value === "string" && value.includes(s)) result.leaks += 1;
  }
}

main()
  .catch((err) => result.errors.push(describe(err)))
  .finally(finish);
