/**
 * token-broker-zoho: a TokenStore for the Zoho CRM Node.js SDK (@zohocrm/nodejs-sdk-8.0) backed by
 * token-broker.
 *
 *     import { BrokerTokenStore } from "token-broker-zoho";
 *     const store = new BrokerTokenStore({ url: "http://127.0.0.1:8080", jwt: process.env.TOKEN_BROKER_JWT });
 *     await (await new InitializeBuilder()).environment(env).token(token).store(store).initialize();
 *
 * Managed mode (the default): the SDK process holds no client secret and no refresh token and never
 * calls Zoho's token endpoint. Every findToken / findTokenById answers with an access token the broker
 * hands out (`GET /v1/tokens/{id}/access-token?min_validity=...`), valid for at least `minValidity`
 * seconds, so the SDK (which refreshes only when fewer than 5 s remain) never refreshes by itself; the
 * broker does every refresh (one at a time per token, within Zoho's refresh budget). A grant token is
 * exchanged once through the broker (`POST /v1/oauth/exchange`), a self-client's refresh token is
 * saved in the broker (`PUT /v1/tokens`).
 *
 * Store-only mode (`managed: false`): a plain store, like the SDK's FileStore/DBStore, that keeps the
 * SDK's tokens (secrets included) in the broker and lets the SDK refresh them itself. Needs the
 * `tokens:secrets` scope.
 */

import * as SDK from "@zohocrm/nodejs-sdk-8.0";

const { OAuthToken, SDKException, UserSignature, Initializer, Utility } = SDK;
// The SDK's index exports the token_store module as a namespace.
const TokenStore = SDK.TokenStore && SDK.TokenStore.TokenStore ? SDK.TokenStore.TokenStore : SDK.TokenStore;

export const VERSION = "0.1.0";

/** The `code` of the SDKExceptions this store raises for its own (non-broker) errors. */
export const ERROR_CODE = "TOKEN_STORE";

/** The Zoho accounts servers of the SDK's data centers and the broker's provider key for each. */
export const ACCOUNTS_PROVIDERS = Object.freeze({
  "accounts.zoho.com": "zoho-us",
  "accounts.zoho.eu": "zoho-eu",
  "accounts.zoho.in": "zoho-in",
  "accounts.zoho.com.au": "zoho-au",
  "accounts.zoho.com.cn": "zoho-cn",
  "accounts.zoho.jp": "zoho-jp",
  "accounts.zohocloud.ca": "zoho-ca",
  "accounts.zoho.sa": "zoho-sa",
});

/** The broker provider key for an SDK environment's accounts URL, or null when it is not a Zoho one. */
export function providerForAccountsUrl(accountsUrl) {
  if (typeof accountsUrl !== "string" || accountsUrl.length === 0) return null;
  let host;
  try {
    host = new URL(accountsUrl).hostname.toLowerCase();
  } catch {
    return null;
  }
  return ACCOUNTS_PROVIDERS[host] ?? null;
}

// The broker's token fields that map to the SDK's OAuthToken (getter, setter).
const FIELDS = {
  client_id: ["getClientId", "setClientId"],
  client_secret: ["getClientSecret", "setClientSecret"],
  refresh_token: ["getRefreshToken", "setRefreshToken"],
  access_token: ["getAccessToken", "setAccessToken"],
  grant_token: ["getGrantToken", "setGrantToken"],
  redirect_url: ["getRedirectURL", "setRedirectURL"],
  api_domain: ["getAPIDomain", "setAPIDomain"],
};
const SECRET_FIELDS = new Set(["client_secret", "refresh_token", "grant_token"]);

/** A field value as the SDK stores treat it: null, undefined and "" are absent. */
function text(value) {
  if (value === null || value === undefined) return null;
  const s = typeof value === "string" ? value : String(value);
  return s.length > 0 ? s : null;
}

function get(token, field) {
  return text(token[FIELDS[field][0]]());
}

function userName(token) {
  const signature = token.getUserSignature();
  if (signature === null || signature === undefined) return null;
  return text(typeof signature.getName === "function" ? signature.getName() : signature.name);
}

/** The SDK's expiresIn (ms since the epoch, usually a string) as the broker's integer expiry_time. */
function expiryMs(value, operation) {
  if (value === null || value === undefined) return null;
  if (typeof value === "number" && Number.isFinite(value)) return Math.trunc(value);
  const s = String(value).trim();
  if (s.length === 0) return null;
  const n = Number(s);
  if (!Number.isFinite(n)) {
    throw new SDKException(ERROR_CODE, `BrokerTokenStore.${operation}: expiresIn must be milliseconds since the epoch`);
  }
  return Math.trunc(n);
}

/** OAuthToken.getTokenExpiry of SDK 2.0.0 refreshes when fewer than 5000 ms remain; plus a margin. */
const SDK_REFRESH_THRESHOLD_MS = 6000;

/**
 * The user name to keep for a token the SDK's Utility.getUserName identified: the SDK's name as is
 * (SDK 2.0.0 answers "<email>:<org zgid>"), trimmed, empty -> null. That is the name the SDK's own
 * FileStore/DBStore (and the Python adapter) would keep, so `new UserSignature("<email>:<zgid>")`
 * finds the token in any process.
 */
export function brokerUserName(sdkUserName) {
  if (sdkUserName === null || sdkUserName === undefined) return null;
  return text(String(sdkUserName).trim());
}

const HINTS = {
  401: "the JWT is missing, invalid or expired",
  403: "the JWT lacks a scope this call needs",
};

/** Which scope each operation needs, for 403 messages. */
const SCOPES = {
  findToken: "tokens:read",
  findTokenById: "tokens:read",
  getTokens: "tokens:read",
  saveToken: "tokens:write",
  deleteToken: "tokens:write",
  revokeToken: "tokens:write",
  exchange: "tokens:write",
  deleteTokens: "tokens:admin",
  accessToken: "tokens:access",
};

/**
 * A Zoho CRM Node.js SDK TokenStore that keeps the SDK's tokens in token-broker.
 */
export class BrokerTokenStore extends TokenStore {
  /**
   * @param {object} options
   * @param {string} options.url the broker's base URL, e.g. "http://127.0.0.1:8080"
   * @param {string|function(): (string|Promise<string>)} options.jwt the caller JWT, or a (sync or
   *   async) function returning one, called for every request
   * @param {string} [options.provider] a broker provider key (e.g. "zoho-eu"): sent with every find,
   *   save and exchange; getTokens lists only that provider
   * @param {number} [options.timeout=10] seconds to wait for each broker answer
   * @param {number} [options.minValidity=60] managed: the access tokens handed to the SDK are valid for
   *   at least this many seconds
   * @param {number} [options.cacheSeconds=10] managed: reuse an access token per broker id for this
   *   long (never past its expiry minus minValidity); 0 disables the cache
   * @param {boolean} [options.managed=true] false: a plain store (the SDK refreshes; needs tokens:secrets)
   * @param {boolean} [options.lookupUserName=true] managed: after a grant token exchange or a
   *   self-client import without a UserSignature, ask CRM who the user is (as the SDK does) and store it
   * @param {number} [options.pageSize=100] tokens per page while getTokens walks every page
   * @param {function} [options.fetch] the fetch implementation (default: Node's global fetch)
   * @param {function} [options.onResponse] debug hook, called with {operation, method, path, status,
   *   body} (body: the answer's text) for every broker answer
   */
  constructor(options = {}) {
    super();
    if (options === null || typeof options !== "object") {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: options must be an object");
    }
    const {
      url,
      jwt,
      provider = null,
      timeout = 10,
      minValidity = 60,
      cacheSeconds = 10,
      managed = true,
      lookupUserName = true,
      pageSize = 100,
      fetch: fetchImpl = globalThis.fetch,
      onResponse = null,
    } = options;
    if (typeof url !== "string" || url.trim().length === 0) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: url must be the broker's base URL");
    }
    if (jwt === null || jwt === undefined || (typeof jwt === "string" && jwt.trim().length === 0)) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: jwt is empty");
    }
    if (typeof jwt !== "string" && typeof jwt !== "function") {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: jwt must be a string or a function returning one");
    }
    if (provider !== null && (typeof provider !== "string" || provider.length === 0)) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: provider must be a broker provider key such as zoho-eu");
    }
    for (const [name, value, min] of [["timeout", timeout, 0.001], ["minValidity", minValidity, 0], ["cacheSeconds", cacheSeconds, 0]]) {
      if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
        throw new SDKException(ERROR_CODE, `BrokerTokenStore: ${name} must be a number >= ${min}`);
      }
    }
    if (!Number.isInteger(pageSize) || pageSize < 1) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: pageSize must be a positive integer");
    }
    if (typeof fetchImpl !== "function") {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: no fetch implementation (Node 18+ has one built in)");
    }
    this.url = url.trim().replace(/\/+$/, "");
    this.provider = provider;
    this.timeout = timeout;
    this.minValidity = Math.ceil(minValidity);
    this.cacheSeconds = cacheSeconds;
    this.managed = managed !== false;
    this.lookupUserName = lookupUserName !== false;
    this.pageSize = pageSize;
    // Not enumerable: they stay out of util.inspect / JSON of the store.
    Object.defineProperty(this, "_jwt", { value: jwt });
    Object.defineProperty(this, "_fetch", { value: fetchImpl });
    Object.defineProperty(this, "_onResponse", { value: typeof onResponse === "function" ? onResponse : null });
    // managed: broker id -> { value: access-token answer, until: ms }
    Object.defineProperty(this, "_cache", { value: new Map() });
    // managed: broker id -> Promise of an access-token answer in flight
    Object.defineProperty(this, "_inflight", { value: new Map() });
    // managed: broker id -> the non-secret fields of the stored token (user_name, client_id, ...)
    Object.defineProperty(this, "_meta", { value: new Map() });
    // managed: exchanges / imports in flight, so concurrent first calls create one broker token
    Object.defineProperty(this, "_creating", { value: new Map() });
  }

  toString() {
    return `BrokerTokenStore(url=${this.url}, provider=${this.provider}, managed=${this.managed})`;
  }

  [Symbol.for("nodejs.util.inspect.custom")]() {
    return this.toString();
  }

  // ---------------------------------------------------------------------------------------------
  // The six TokenStore operations (plus revokeToken)
  // ---------------------------------------------------------------------------------------------

  /**
   * Managed: finds the stored token (by user name; else access token when the token has no client
   * credentials; else grant token, else refresh token, with the client id; an id-only token by its id),
   * exchanges a new grant token or saves a new self-client token, and sets a broker-issued access token
   * on `token`. Returns `token`, or null when nothing matches and there is nothing to store.
   *
   * Store-only: fills the fields of `token` that are still empty from the stored token and returns it,
   * or null.
   */
  async findToken(token) {
    if (!(token instanceof OAuthToken)) return token;
    const stored = await this._lookup("findToken", token);
    if (!this.managed) {
      if (stored === null) return null;
      this._mergePlain(token, stored);
      return token;
    }
    if (stored !== null) {
      this._remember(stored);
      this._mergeManaged(token, stored);
      this._apply(token, await this._access("findToken", stored.id));
      return token;
    }
    const created = await this._create(token);
    if (created === null) return null;
    return token;
  }

  /**
   * Managed: a new OAuthToken with the stored token's id, user and client id and a broker-issued
   * access token. Store-only: a new OAuthToken with every stored field. SDKException when there is no
   * token with that id.
   */
  async findTokenById(id) {
    const tokenId = this._id("findTokenById", id);
    if (!this.managed) {
      const res = await this._request("findTokenById", "GET", `/v1/tokens/${encodeURIComponent(tokenId)}`);
      if (res.status === 404) {
        throw new SDKException(ERROR_CODE, "BrokerTokenStore.findTokenById: no token with the given id");
      }
      return this._newToken("findTokenById", this._json("findTokenById", res, 200));
    }
    const access = this._access("findTokenById", tokenId);
    access.catch(() => {}); // awaited below; handled here so an early failure is not "unhandled"
    let meta = this._meta.get(tokenId);
    if (meta === undefined) {
      // Once per id and process: the user name and client id of the token.
      const res = await this._request("findTokenById", "GET", `/v1/tokens/${encodeURIComponent(tokenId)}`);
      if (res.status === 404) {
        throw new SDKException(ERROR_CODE, "BrokerTokenStore.findTokenById: no token with the given id");
      }
      meta = this._remember(this._json("findTokenById", res, 200));
    }
    const token = this._newToken("findTokenById", meta);
    this._apply(token, await access);
    return token;
  }

  /**
   * `PUT /v1/tokens`: upserts `token` and sets the broker's id on it (and fills its empty fields from
   * the stored token; managed: never a secret).
   */
  async saveToken(token) {
    if (!(token instanceof OAuthToken)) return token;
    const body = this._saveBody(token, this.managed && text(token.getId()) !== null);
    const res = await this._request("saveToken", "PUT", "/v1/tokens", { json: body });
    const stored = this._json("saveToken", res, 200, 201);
    this._forget(stored.id);
    token.setId(stored.id);
    if (this.managed) {
      this._remember(stored);
      this._mergeManaged(token, stored);
    } else {
      this._mergePlain(token, stored);
    }
  }

  /** `DELETE /v1/tokens/{id}`. SDKException when there is no such token (as the SDK's stores do). */
  async deleteToken(id) {
    const tokenId = this._id("deleteToken", id);
    const res = await this._request("deleteToken", "DELETE", `/v1/tokens/${encodeURIComponent(tokenId)}`);
    this._forget(tokenId);
    if (res.status === 404) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore.deleteToken: no token with the given id");
    }
    this._check("deleteToken", res, 204, 200);
  }

  /** `GET /v1/tokens`, every page: an OAuthToken for each token the JWT can see (managed: no secrets). */
  async getTokens() {
    const tokens = [];
    const seen = new Set();
    let cursor = null;
    for (;;) {
      const query = { limit: this.pageSize };
      if (cursor !== null) query.cursor = cursor;
      if (this.provider !== null) query.provider = this.provider;
      const res = await this._request("getTokens", "GET", "/v1/tokens", { query });
      const page = this._json("getTokens", res, 200);
      for (const stored of Array.isArray(page.tokens) ? page.tokens : []) {
        if (this.managed) this._remember(stored);
        tokens.push(this._newToken("getTokens", stored));
      }
      cursor = typeof page.next_cursor === "string" && page.next_cursor.length > 0 ? page.next_cursor : null;
      if (cursor === null) return tokens;
      if (seen.has(cursor)) {
        throw new SDKException(ERROR_CODE, "BrokerTokenStore.getTokens: the broker repeated a page cursor");
      }
      seen.add(cursor);
    }
  }

  /** `DELETE /v1/tokens?confirm=all`: deletes every token the JWT can see (needs tokens:admin). */
  async deleteTokens() {
    const res = await this._request("deleteTokens", "DELETE", "/v1/tokens", { query: { confirm: "all" } });
    this._cache.clear();
    this._meta.clear();
    const answer = this._json("deleteTokens", res, 200);
    return typeof answer.deleted === "number" ? answer.deleted : undefined;
  }

  /**
   * `POST /v1/tokens/{id}/revoke`: the broker revokes the refresh token at Zoho and deletes the token.
   * Use this instead of the SDK's `OAuthToken.revoke(id)`, which needs the refresh token in this process.
   * Returns true; SDKException when there is no such token.
   */
  async revokeToken(id) {
    const tokenId = this._id("revokeToken", id);
    const res = await this._request("revokeToken", "POST", `/v1/tokens/${encodeURIComponent(tokenId)}/revoke`);
    this._forget(tokenId);
    if (res.status === 404) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore.revokeToken: no token with the given id");
    }
    this._check("revokeToken", res, 204, 200);
    return true;
  }

  /** Drops every cached access token (managed). */
  clearCache() {
    this._cache.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // managed mode
  // ---------------------------------------------------------------------------------------------

  /** The broker's access-token answer for `id`: cached, single flight per id. */
  async _access(operation, id) {
    const cached = this._cache.get(id);
    if (cached !== undefined) {
      if (Date.now() < cached.until) return cached.value;
      this._cache.delete(id);
    }
    let pending = this._inflight.get(id);
    if (pending === undefined) {
      pending = this._fetchAccess(operation, id).finally(() => {
        if (this._inflight.get(id) === pending) this._inflight.delete(id);
      });
      this._inflight.set(id, pending);
    }
    return pending;
  }

  async _fetchAccess(operation, id) {
    const res = await this._request(operation, "GET", `/v1/tokens/${encodeURIComponent(id)}/access-token`, {
      query: { min_validity: this.minValidity },
      scope: "accessToken",
    });
    if (res.status === 404) {
      throw new SDKException(
        res.error ?? ERROR_CODE,
        `BrokerTokenStore.${operation}: the broker holds no token with the given id`,
      );
    }
    const answer = this._json(operation, res, 200);
    if (typeof answer.access_token !== "string" || answer.access_token.length === 0) {
      throw new SDKException(ERROR_CODE, `BrokerTokenStore.${operation}: the broker answered no access token`);
    }
    const value = {
      access_token: answer.access_token,
      expiry_time: typeof answer.expiry_time === "number" ? answer.expiry_time : null,
      api_domain: typeof answer.api_domain === "string" && answer.api_domain.length > 0 ? answer.api_domain : null,
    };
    if (value.expiry_time === null && typeof answer.expires_in === "number") {
      value.expiry_time = Date.now() + answer.expires_in * 1000;
    }
    if (this.cacheSeconds > 0 && value.expiry_time !== null) {
      const now = Date.now();
      const until = Math.min(now + this.cacheSeconds * 1000, value.expiry_time - this.minValidity * 1000);
      if (until > now) this._cache.set(id, { value, until });
    }
    return value;
  }

  /** Sets a broker access-token answer on an SDK token: always overwrites, never adds a secret. */
  _apply(token, access) {
    token.setAccessToken(access.access_token);
    // The SDK refreshes by itself (at Zoho, with the refresh token it does not have) when fewer than
    // 5 s remain. The broker never hands out less than minValidity, or half the token's granted
    // lifetime; should a token still come closer than that to its expiry, the SDK gets no expiry at
    // all (it then uses the token as it is and never refreshes), and the next call asks the broker.
    const expiry = access.expiry_time;
    const safe = expiry !== null && expiry - Date.now() > SDK_REFRESH_THRESHOLD_MS;
    token.setExpiresIn(safe ? String(expiry) : null);
    token.setAPIDomain(access.api_domain);
  }

  /** Managed merge: id, user and the non-secret fields the token lacks; never a secret or a token. */
  _mergeManaged(token, stored) {
    if (text(token.getId()) === null) token.setId(stored.id);
    if (userName(token) === null && text(stored.user_name) !== null) {
      token.setUserSignature(new UserSignature(stored.user_name));
    }
    if (get(token, "client_id") === null && text(stored.client_id) !== null) token.setClientId(stored.client_id);
    if (get(token, "redirect_url") === null && text(stored.redirect_url) !== null) {
      token.setRedirectURL(stored.redirect_url);
    }
  }

  /** Keeps the non-secret fields of a broker token for findTokenById. */
  _remember(stored) {
    if (stored === null || typeof stored !== "object" || typeof stored.id !== "string") {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: the broker answered a token without an id");
    }
    const meta = {
      id: stored.id,
      user_name: text(stored.user_name),
      client_id: text(stored.client_id),
      redirect_url: text(stored.redirect_url),
      api_domain: text(stored.api_domain),
      provider: text(stored.provider),
      status: text(stored.status),
    };
    this._meta.set(stored.id, meta);
    return meta;
  }

  _forget(id) {
    if (typeof id !== "string") return;
    this._cache.delete(id);
    this._meta.delete(id);
  }

  /** The provider for a token this store creates: the option, else the SDK environment's data center. */
  async _creationProvider() {
    if (this.provider !== null) return this.provider;
    try {
      const initializer = await Initializer.getInitializer();
      const environment = initializer ? initializer.getEnvironment() : null;
      return environment ? providerForAccountsUrl(environment.getAccountsUrl()) : null;
    } catch {
      return null;
    }
  }

  /**
   * A token the broker does not hold yet: a self-client (refresh token) is saved, a grant token is
   * exchanged, once per process even for concurrent calls. Sets the broker's id and access token on
   * `token`; null when there is nothing to store.
   */
  async _create(token) {
    const refreshToken = get(token, "refresh_token");
    const grantToken = get(token, "grant_token");
    if (refreshToken === null && grantToken === null) {
      const name = userName(token);
      if (name !== null && get(token, "access_token") === null) {
        throw new SDKException(
          ERROR_CODE,
          `BrokerTokenStore.findToken: the broker holds no token for the user ${name}; ` +
            "store one first (a grant token or refresh token with the client id and secret, or the broker's login flow)",
        );
      }
      return null;
    }
    const key = JSON.stringify([userName(token), get(token, "client_id"), refreshToken, refreshToken === null ? grantToken : null]);
    let pending = this._creating.get(key);
    if (pending === undefined) {
      pending = (refreshToken !== null ? this._import(token) : this._exchange(token)).finally(() => {
        if (this._creating.get(key) === pending) this._creating.delete(key);
      });
      this._creating.set(key, pending);
    }
    const { stored, access } = await pending;
    this._mergeManaged(token, stored);
    this._apply(token, access);
    await this._storeUserName(token, stored, access);
    return stored;
  }

  /** `PUT /v1/tokens` of a self-client token (client id, secret and refresh token). */
  async _import(token) {
    const body = this._saveBody(token, false);
    delete body.access_token;
    delete body.expiry_time;
    delete body.grant_token;
    delete body.id;
    if (body.provider === undefined) {
      const provider = await this._creationProvider();
      if (provider !== null) body.provider = provider;
    }
    const res = await this._request("saveToken", "PUT", "/v1/tokens", { json: body });
    const stored = this._json("saveToken", res, 200, 201);
    this._forget(stored.id);
    this._remember(stored);
    const access = await this._access("findToken", stored.id);
    return { stored, access };
  }

  /** `POST /v1/oauth/exchange` of a grant token: the broker exchanges it at Zoho and stores the result. */
  async _exchange(token) {
    const body = { grant_token: get(token, "grant_token") };
    for (const field of ["client_id", "client_secret", "redirect_url"]) {
      const value = get(token, field);
      if (value !== null) body[field] = value;
    }
    const name = userName(token);
    if (name !== null) body.user_name = name;
    const provider = await this._creationProvider();
    if (provider !== null) body.provider = provider;
    const res = await this._request("exchange", "POST", "/v1/oauth/exchange", { json: body });
    const stored = this._json("exchange", res, 201, 200);
    this._forget(stored.id);
    this._remember(stored);
    const access = await this._access("findToken", stored.id);
    return { stored, access };
  }

  /**
   * What the SDK does after it generated a token without a UserSignature: ask CRM who the user is (the
   * SDK's own Utility.getUserName) and keep the name, here in the broker (`PUT /v1/tokens {id,
   * user_name}`) so that other processes find the token by UserSignature.
   */
  async _storeUserName(token, stored, access) {
    if (userName(token) !== null || token.findUser === false || !this.lookupUserName) return;
    let name = null;
    try {
      name = brokerUserName(await new Utility().getUserName(access.access_token));
    } catch {
      name = null; // as the SDK: the lookup is best effort
    }
    if (name === null) return;
    const res = await this._request("saveToken", "PUT", "/v1/tokens", { json: { id: stored.id, user_name: name } });
    if (res.status === 409) {
      // Another token of this provider already belongs to that user (say, an earlier login). The new
      // token stays usable by its id and grant token; to replace the user's token, give the
      // UserSignature with the grant token (the broker's exchange then replaces it).
      process.emitWarning(
        `BrokerTokenStore: the broker already holds another token for the user ${name}; ` +
          `the new token ${stored.id} was stored without a user name (${res.error ?? "conflict"})`,
        { code: "TOKEN_BROKER_USER_CONFLICT" },
      );
      return;
    }
    const saved = this._json("saveToken", res, 200, 201);
    this._remember(saved);
    token.setUserSignature(new UserSignature(name));
  }

  // ---------------------------------------------------------------------------------------------
  // SDK token <-> broker JSON
  // ---------------------------------------------------------------------------------------------

  /** Finds the stored token as the SDK's stores match; null when none (or nothing to match on). */
  async _lookup(operation, token) {
    const body = this._matchBody(token);
    let res;
    if (body === null) {
      const id = text(token.getId());
      if (id === null) return null;
      res = await this._request(operation, "GET", `/v1/tokens/${encodeURIComponent(id)}`);
    } else {
      res = await this._request(operation, "POST", "/v1/tokens/find", { json: body });
    }
    if (res.status === 404) return null;
    return this._json(operation, res, 200);
  }

  /** The find request, by the SDK's rules; null when there is nothing to match on. */
  _matchBody(token) {
    const body = {};
    const name = userName(token);
    const clientId = get(token, "client_id");
    if (name !== null) {
      body.user_name = name;
    } else if (get(token, "access_token") !== null && clientId === null && get(token, "client_secret") === null) {
      body.access_token = get(token, "access_token");
    } else if (get(token, "grant_token") !== null) {
      body.grant_token = get(token, "grant_token");
      if (clientId !== null) body.client_id = clientId;
    } else if (get(token, "refresh_token") !== null) {
      body.refresh_token = get(token, "refresh_token");
      if (clientId !== null) body.client_id = clientId;
    } else {
      return null;
    }
    if (this.provider !== null) body.provider = this.provider;
    return body;
  }

  /** The save request. `brokerOwned`: leave the access token and expiry to the broker. */
  _saveBody(token, brokerOwned) {
    const body = {};
    const id = text(token.getId());
    if (id !== null) body.id = id;
    const name = userName(token);
    if (name !== null) body.user_name = name;
    for (const field of Object.keys(FIELDS)) {
      const value = get(token, field);
      if (value !== null) body[field] = value;
    }
    const expiry = expiryMs(token.getExpiresIn(), "saveToken");
    if (expiry !== null) body.expiry_time = expiry;
    if (brokerOwned) {
      delete body.access_token;
      delete body.expiry_time;
    }
    if (this.provider !== null) body.provider = this.provider;
    return body;
  }

  /** Like the SDK stores' setMergeData: fill only the fields that are still empty. */
  _mergePlain(token, stored) {
    if (text(token.getId()) === null) token.setId(stored.id);
    if (userName(token) === null && text(stored.user_name) !== null) {
      token.setUserSignature(new UserSignature(stored.user_name));
    }
    for (const [field, [getter, setter]] of Object.entries(FIELDS)) {
      if (text(token[getter]()) === null && text(stored[field]) !== null) token[setter](stored[field]);
    }
    if (text(token.getExpiresIn()) === null && typeof stored.expiry_time === "number") {
      token.setExpiresIn(String(stored.expiry_time));
    }
  }

  _newToken(operation, stored) {
    if (stored === null || typeof stored !== "object" || typeof stored.id !== "string" || stored.id.length === 0) {
      throw new SDKException(ERROR_CODE, `BrokerTokenStore.${operation}: the broker answered a token without an id`);
    }
    const token = new OAuthToken(null, null, null, null, null, stored.id, null, null);
    if (this.managed) {
      this._mergeManaged(token, stored);
      // a listing may carry the access token (tokens:access); never a secret
      if (text(stored.access_token) !== null) token.setAccessToken(stored.access_token);
      if (typeof stored.expiry_time === "number") token.setExpiresIn(String(stored.expiry_time));
      if (text(stored.api_domain) !== null) token.setAPIDomain(stored.api_domain);
    } else {
      this._mergePlain(token, stored);
    }
    return token;
  }

  _id(operation, id) {
    const tokenId = text(id);
    if (tokenId === null) throw new SDKException(ERROR_CODE, `BrokerTokenStore.${operation}: id is empty`);
    return tokenId;
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------------------------

  async _bearer() {
    let jwt;
    try {
      jwt = typeof this._jwt === "function" ? await this._jwt() : this._jwt;
    } catch (e) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: the jwt function failed", null, null);
    }
    if (typeof jwt !== "string" || jwt.trim().length === 0) {
      throw new SDKException(ERROR_CODE, "BrokerTokenStore: the jwt function returned no JWT");
    }
    return jwt.trim();
  }

  /**
   * One broker call. Returns {status, body (parsed JSON or null), error (the broker's error code or
   * null), message (its message or null)}.
   */
  async _request(operation, method, path, { json, query, scope } = {}) {
    let target = this.url + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) params.set(k, String(v));
      target += "?" + params.toString();
    }
    const headers = { Authorization: "Bearer " + (await this._bearer()), Accept: "application/json" };
    const init = { method, headers, redirect: "manual", signal: AbortSignal.timeout(Math.ceil(this.timeout * 1000)) };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let response;
    let raw;
    try {
      response = await this._fetch(target, init);
      raw = await response.text();
    } catch (e) {
      const name = e && (e.name === "TimeoutError" || e.name === "AbortError");
      if (name) {
        throw new SDKException(
          ERROR_CODE,
          `BrokerTokenStore.${operation}: the broker at ${this.url} did not answer within ${this.timeout} s`,
        );
      }
      const cause = e && e.cause && e.cause.code ? e.cause.code : e && e.name ? e.name : "error";
      throw new SDKException(ERROR_CODE, `BrokerTokenStore.${operation}: cannot reach the broker at ${this.url} (${cause})`);
    }
    if (this._onResponse !== null) {
      try {
        this._onResponse({ operation, method, path, status: response.status, body: raw });
      } catch {
        // a debug hook never breaks the store
      }
    }
    let body = null;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = null;
      }
    }
    const isObject = body !== null && typeof body === "object" && !Array.isArray(body);
    return {
      status: response.status,
      body: isObject ? body : null,
      error: isObject && typeof body.error === "string" ? body.error : null,
      message: isObject && typeof body.message === "string" ? body.message : null,
      scope: SCOPES[scope ?? operation] ?? null,
    };
  }

  _check(operation, res, ...expected) {
    if (expected.includes(res.status)) return;
    throw this._error(operation, res);
  }

  _json(operation, res, ...expected) {
    const statuses = expected.filter((s) => typeof s === "number");
    this._check(operation, res, ...statuses);
    if (res.body === null) {
      throw new SDKException(ERROR_CODE, `BrokerTokenStore.${operation}: the broker answered HTTP ${res.status} without a JSON object`);
    }
    return res.body;
  }

  /** `BrokerTokenStore.<op>: the broker answered HTTP <status> <code>: <message>` as an SDKException
   * whose code is the broker's error code. Never a token, secret or the JWT. */
  _error(operation, res) {
    let message = `BrokerTokenStore.${operation}: the broker answered HTTP ${res.status}`;
    if (res.error) message += " " + res.error;
    if (res.message) message += ": " + res.message.slice(0, 500);
    else if (HINTS[res.status]) message += ` (${HINTS[res.status]})`;
    if (res.status === 403 && res.scope) {
      if (res.scope === "tokens:access") {
        message +=
          " - managed mode needs a JWT with the tokens:access scope " +
          '(token-broker jwt mint --sub <service> --scope "tokens:read tokens:access tokens:write")';
      } else if (!message.includes(res.scope)) {
        message += ` - this call needs the ${res.scope} scope`;
      }
    }
    const error = new SDKException(res.error ?? ERROR_CODE, message);
    error.status = res.status;
    error.brokerError = res.error;
    return error;
  }
}

export default BrokerTokenStore;
