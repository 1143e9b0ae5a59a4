// Browser tests of the broker's connect sessions: a person opens a connect link in
// Chromium, signs in at the oidc-provider harness (INTERACTIVE mode: real login
// form and consent page) and ends on the broker's page or the caller's return_to.
//
// Environment (run-tests.sh passes it through):
//   TOKEN_BROKER_URL   the broker, e.g. http://127.0.0.1:PORT (its pages must be on this origin)
//   TOKEN_BROKER_JWT   scopes tokens:read tokens:access tokens:write tokens:admin, no tenant
//   OIDC_ISSUER        the oidc-provider harness (INTERACTIVE=1)
//   PROVIDER           the broker's key for that provider (default oidc)
//   STRICT_PROVIDER    the same provider, configured to require the login to match user_name
//                      (default oidc-strict)
//   RETURN_TO_BASE     http://127.0.0.1:<port> the broker allows for return_to; this script
//                      serves that port itself (200 "done" to anything)
//   SCREENSHOT_DIR     where the PNGs go (default target/browser-screenshots in the repo)
//   SCENARIOS          comma list of scenario letters (a..i) or names; default all
//
// Prints `ok - <name>` or `not ok - <name>: <reason>` per scenario (plus `# ` lines of
// detail), then `N passed, N failed`; exits 1 when any failed, 2 on a usage error.

import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import {
  brokerApi, brokerPage, check, consent, documentStatus, interceptCallback, openBrowser,
  passProvider, PHONE, DESKTOP, screenshot, SCREENSHOT_DIR, signIn, watchRequests,
} from './lib.mjs';

const env = process.env;
const missing = ['TOKEN_BROKER_URL', 'TOKEN_BROKER_JWT', 'OIDC_ISSUER'].filter((n) => !env[n]);
if (missing.length) {
  console.error(`login.mjs: not set: ${missing.join(' ')}`);
  process.exit(2);
}
const BROKER = new URL(env.TOKEN_BROKER_URL).origin;
const ISSUER = env.OIDC_ISSUER.replace(/\/+$/, '');
const PROVIDER = env.PROVIDER || 'oidc';
const STRICT_PROVIDER = env.STRICT_PROVIDER || 'oidc-strict';
const RETURN_TO_BASE = env.RETURN_TO_BASE ? new URL(env.RETURN_TO_BASE).origin : null;
const CALLBACK = `${BROKER}/v1/oauth/callback`;
const SCENARIO_TIMEOUT_MS = Number(env.SCENARIO_TIMEOUT_MS || 120000);

const api = brokerApi(BROKER, env.TOKEN_BROKER_JWT);
const note = (line) => console.log(`# ${line}`);

// ---------------------------------------------------------------- helpers --

const isClientError = (status) => status >= 400 && status < 500;

/** POST /v1/connect/sessions, checked against the contract; returns the session. */
async function createSession(request) {
  const res = await api.createSession(request);
  check(res.status === 201, `POST /v1/connect/sessions: expected 201, got ${res.status}`, res.text.slice(0, 300));
  const s = res.body;
  check(s && typeof s.id === 'string' && s.id, 'session without id', s);
  check(typeof s.connect_url === 'string' && s.connect_url.startsWith(`${BROKER}/connect/`),
    `connect_url is not under ${BROKER}/connect/`, s.connect_url);
  check(s.status === 'pending', `new session status: expected pending, got ${s.status}`);
  check(Number.isFinite(s.expires_at) && s.expires_at > Date.now(), 'expires_at is not a future ms epoch', s.expires_at);
  return s;
}

/** GET /v1/connect/sessions/{id} → the session (200 checked). */
async function getSession(id) {
  const res = await api.getSession(id);
  check(res.status === 200, `GET /v1/connect/sessions/${id}: expected 200, got ${res.status}`, res.text.slice(0, 300));
  return res.body;
}

async function getToken(id) {
  const res = await api.getToken(id);
  check(res.status === 200, `GET /v1/tokens/${id}: expected 200, got ${res.status}`, res.text.slice(0, 300));
  return res.body;
}

async function tokensOf(userName) {
  const res = await api.listTokens({ user_name: userName });
  check(res.status === 200, `GET /v1/tokens?user_name=${userName}: expected 200, got ${res.status}`, res.text.slice(0, 300));
  check(Array.isArray(res.body?.tokens), 'token list without tokens[]', res.body);
  return res.body.tokens;
}

/**
 * Opens the session's connect_url in `page`, checks that the broker sent the browser
 * on to the provider, and drives the provider's pages (sign in as `login` when asked;
 * Allow or Deny). Returns what the provider showed and where the browser ended.
 */
async function throughProvider(page, session, { login, allow = true }) {
  const response = await page.goto(session.connect_url);
  if (new URL(page.url()).origin !== new URL(ISSUER).origin) {
    const shown = await brokerPage(page);
    throw new Error(`opening connect_url did not lead to the provider: HTTP ${response?.status()} at ${page.url()}`
      + ` (outcome=${shown.outcome}: ${shown.text.replace(/\s+/g, ' ').slice(0, 200)})`);
  }
  return passProvider(page, { login, allow, issuer: ISSUER });
}

/** A brand-new connection for `user` in browser `b` (for scenarios run without their predecessors). */
async function connectOnce(b, user) {
  const page = await b.newPage();
  const session = await createSession({ provider: PROVIDER, user_name: user });
  await throughProvider(page, session, { login: user, allow: true });
  const shown = await brokerPage(page);
  check(shown.outcome === 'connected', `setup login for ${user}: expected outcome connected, got ${shown.outcome}`, shown.text.slice(0, 200));
  await page.close();
  return { session, connected: await getSession(session.id) };
}

function describe(shown) {
  return `HTTP ${shown.status}, outcome=${shown.outcome}, h1=${JSON.stringify(shown.h1)}, text=${JSON.stringify(shown.text.replace(/\s+/g, ' ').slice(0, 240))}`;
}

// ------------------------------------------------------ shared state, cleanup --

const browsers = new Set();
async function browser() {
  const b = await openBrowser();
  browsers.add(b);
  return b;
}
async function closeBrowser(b) {
  if (!b) return;
  browsers.delete(b);
  await b.close();
}
/** Scenario a's browser (kept for b and d) and its results. */
const shared = { browserA: null, a: null };

// The return_to target: answers 200 "done" to anything, remembers what it got.
const returnToHits = [];
let returnToServer = null;
let returnToError = null;
if (RETURN_TO_BASE) {
  const { hostname, port } = new URL(RETURN_TO_BASE);
  returnToServer = http.createServer((req, res) => {
    returnToHits.push(req.url);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('done');
  });
  await new Promise((resolve) => {
    returnToServer.once('error', (err) => { returnToError = err; returnToServer = null; resolve(); });
    returnToServer.listen(Number(port), hostname, resolve);
  });
}

// -------------------------------------------------------------- scenarios --

const scenarios = [
  {
    key: 'a',
    name: 'a person connects their account',
    async run(ctx) {
      const A = await browser();
      shared.browserA = A;
      const page = await A.page();
      ctx.page = page;
      const session = await createSession({ provider: PROVIDER, user_name: 'alice@example.com' });
      note(`session ${session.id}`);
      const watch = watchRequests(page, BROKER);
      const { shown } = await throughProvider(page, session, { login: 'alice@example.com', allow: true });
      check(shown.join(',') === 'login,consent', `a fresh browser should see the login form then consent, saw: ${shown.join(', ')}`);
      const result = await brokerPage(page);
      check(result.url.startsWith(`${BROKER}/`), `the browser did not end on the broker: ${result.url}`);
      check(result.outcome === 'connected', 'expected data-outcome=connected', describe(result));
      check(result.status === 200, `expected HTTP 200, got ${result.status}`);
      check(result.text.includes('alice@example.com'), 'the page does not name the account alice@example.com', describe(result));
      note(`screenshot ${await screenshot(page, 'connected.png')}`);
      await page.setViewportSize(PHONE);
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      note(`screenshot ${await screenshot(page, 'connected-phone.png')}`);
      check(scrollWidth <= PHONE.width, `on a ${PHONE.width}px wide phone the page is ${scrollWidth}px wide`);
      await page.setViewportSize(DESKTOP);
      watch.assertOnlyBroker();
      check(A.blocked.length === 0, 'the browser tried to leave loopback', A.blocked);

      const s = await getSession(session.id);
      check(s.status === 'connected', `session status: expected connected, got ${s.status}`, s);
      check(typeof s.token_id === 'string' && s.token_id, 'connected session without token_id', s);
      check(s.provider === PROVIDER && s.user_name === 'alice@example.com', 'session provider/user_name', s);
      const token = await getToken(s.token_id);
      note(`token ${s.token_id}: identity=${JSON.stringify(token.identity)} scopes=${JSON.stringify(token.scopes)} refreshable=${token.refreshable}`);
      check(token.identity?.subject === 'alice@example.com', 'token identity.subject', token.identity);
      check(Array.isArray(token.scopes) && token.scopes.includes('offline_access'), 'token scopes lack offline_access', token.scopes);
      check(token.refreshable === true, `token refreshable: expected true, got ${token.refreshable}`);
      const refresh = await api.refresh(s.token_id);
      check(refresh.status === 200, `POST /v1/tokens/${s.token_id}/refresh: expected 200, got ${refresh.status}`, refresh.text.slice(0, 300));
      check(typeof refresh.body?.access_token === 'string', 'refresh answer without access_token', Object.keys(refresh.body ?? {}));
      shared.a = { session, tokenId: s.token_id };
    },
  },
  {
    key: 'b',
    name: 'a second login in the same browser keeps the new grant alive',
    async run(ctx) {
      let A = shared.browserA;
      if (!A) {
        A = await browser();
        shared.browserA = A;
        await connectOnce(A, 'alice@example.com');
        note('scenario a did not run: made a first connection in this browser first');
      }
      const page = await A.newPage();
      ctx.page = page;
      const session = await createSession({ provider: PROVIDER, user_name: 'alice@example.com' });
      note(`session ${session.id}`);
      const watch = watchRequests(page, BROKER);
      const { shown } = await throughProvider(page, session, { login: 'alice@example.com', allow: true });
      check(shown.join(',') === 'consent', `with the provider's session the login form is skipped and consent asked, saw: ${shown.join(', ')}`);
      const result = await brokerPage(page);
      check(result.outcome === 'connected', 'expected data-outcome=connected', describe(result));
      check(result.status === 200, `expected HTTP 200, got ${result.status}`);
      note(`screenshot ${await screenshot(page, 'second-login.png')}`);
      watch.assertOnlyBroker();

      const s = await getSession(session.id);
      check(s.status === 'connected' && s.token_id, 'session after the second login', s);
      if (shared.a) note(`token ids: first login ${shared.a.tokenId}, second login ${s.token_id}`);
      const refresh = await api.refresh(s.token_id);
      check(refresh.status === 200,
        `POST /v1/tokens/${s.token_id}/refresh after the second login: expected 200, got ${refresh.status}`
        + ' (the provider reuses one grant per browser session and client: revoking the earlier'
        + ' refresh token revokes the new tokens too)', refresh.text.slice(0, 300));
      const access = await api.accessToken(s.token_id);
      check(access.status === 200, `GET /v1/tokens/${s.token_id}/access-token: expected 200, got ${access.status}`, access.text.slice(0, 300));
    },
  },
  {
    key: 'c',
    name: 'a denied consent says so',
    async run(ctx) {
      const b = await browser();
      const page = await b.page();
      ctx.page = page;
      const session = await createSession({ provider: PROVIDER, user_name: 'carol@example.com' });
      note(`session ${session.id}`);
      const watch = watchRequests(page, BROKER);
      await throughProvider(page, session, { login: 'carol@example.com', allow: false });
      const result = await brokerPage(page);
      check(result.url.startsWith(`${BROKER}/`), `the browser did not end on the broker: ${result.url}`);
      note(`screenshot ${await screenshot(page, 'denied.png')}`);
      check(result.outcome === 'failed', 'expected data-outcome=failed', describe(result));
      check(isClientError(result.status), `expected a 4xx, got ${result.status}`);
      check(/declined/i.test(result.reason ?? ''), 'the paragraph does not say the person declined', result.reason);
      check(!result.text.includes('access_denied'), 'the page shows the raw code access_denied', describe(result));
      watch.assertOnlyBroker();
      const s = await getSession(session.id);
      check(s.status === 'failed', `session status: expected failed, got ${s.status}`, s);
      check(s.token_id == null, 'a declined session has a token_id', s);
      note(`session error: ${JSON.stringify(s.error)}`);
      await closeBrowser(b);
    },
  },
  {
    key: 'd',
    name: 'a link opens once',
    async run(ctx) {
      let A = shared.browserA;
      let connectUrl = shared.a?.session.connect_url;
      if (!A) {
        A = await browser();
        shared.browserA = A;
      }
      if (!connectUrl) {
        connectUrl = (await connectOnce(A, 'alice@example.com')).session.connect_url;
        note('scenario a did not run: used a new connection\'s link');
      }
      const page = await A.newPage();
      ctx.page = page;
      const watch = watchRequests(page, BROKER);
      await page.goto(connectUrl);
      const result = await brokerPage(page);
      check(result.url.startsWith(`${BROKER}/`), `re-opening the link left the broker: ${result.url}`);
      note(`screenshot ${await screenshot(page, 'used.png')}`);
      check(['used', 'expired'].includes(result.outcome), 'expected data-outcome=used (or expired)', describe(result));
      check(isClientError(result.status), `expected a 4xx, got ${result.status}`);
      watch.assertOnlyBroker();
    },
  },
  {
    key: 'e',
    name: 'a login finished in another browser is refused',
    async run(ctx) {
      const user = 'erin@example.com';
      const first = await browser();
      const page = await first.page();
      ctx.page = page;
      const session = await createSession({ provider: PROVIDER, user_name: user });
      note(`session ${session.id}`);
      await page.goto(session.connect_url);
      check(new URL(page.url()).origin === new URL(ISSUER).origin, `connect_url did not lead to the provider: ${page.url()}`);
      await signIn(page, user);
      const intercepted = await interceptCallback(page, { issuer: ISSUER, callbackPrefix: CALLBACK });
      await consent(page, true, { wait: false });
      const callbackUrl = await Promise.race([
        intercepted.callbackUrl,
        new Promise((_, reject) => { setTimeout(() => reject(new Error('the provider never redirected to the broker callback')), 15000); }),
      ]);
      await intercepted.stop();
      check(new URL(callbackUrl).searchParams.has('code'), 'the intercepted callback has no code', callbackUrl.replace(/code=[^&]*/, 'code=…'));
      await closeBrowser(first);

      const other = await browser();
      const page2 = await other.page();
      ctx.page = page2;
      const watch = watchRequests(page2, BROKER);
      await page2.goto(callbackUrl);
      const result = await brokerPage(page2);
      note(`screenshot ${await screenshot(page2, 'other-browser.png')}`);
      check(result.outcome === 'other-browser', 'expected data-outcome=other-browser', describe(result));
      check(isClientError(result.status), `expected a 4xx, got ${result.status}`);
      watch.assertOnlyBroker();
      const s = await getSession(session.id);
      check(s.status === 'failed', `session status: expected failed, got ${s.status}`, s);
      check(s.token_id == null, 'the session has a token_id', s);
      const tokens = await tokensOf(user);
      check(tokens.length === 0, `${user} has tokens`, tokens.map((t) => t.id));
      await closeBrowser(other);
    },
  },
  {
    key: 'f',
    name: 'a login as another person is refused',
    async run(ctx) {
      const b = await browser();
      const page = await b.page();
      ctx.page = page;
      const session = await createSession({ provider: STRICT_PROVIDER, user_name: 'bob@example.com' });
      note(`session ${session.id} (provider ${STRICT_PROVIDER})`);
      const watch = watchRequests(page, BROKER);
      const { shown } = await throughProvider(page, session, { login: 'mallory@example.com', allow: true });
      check(shown[0] === 'login', `a fresh browser should see the login form first, saw: ${shown.join(', ')}`);
      const result = await brokerPage(page);
      check(result.url.startsWith(`${BROKER}/`), `the browser did not end on the broker: ${result.url}`);
      note(`screenshot ${await screenshot(page, 'mismatch.png')}`);
      check(result.outcome === 'mismatch', 'expected data-outcome=mismatch', describe(result));
      check(isClientError(result.status), `expected a 4xx, got ${result.status}`);
      check(/mallory/i.test(result.text), 'the page does not mention mallory', describe(result));
      watch.assertOnlyBroker();
      const tokens = await tokensOf('bob@example.com');
      check(tokens.length === 0, 'bob@example.com has tokens', tokens.map((t) => `${t.id} (${t.provider})`));
      const s = await getSession(session.id);
      check(s.status === 'failed' && s.token_id == null, 'session after the mismatch', s);
      note(`session error: ${JSON.stringify(s.error)}`);
      await closeBrowser(b);
    },
  },
  {
    key: 'g',
    name: 'return_to gets the outcome',
    async run(ctx) {
      check(RETURN_TO_BASE, 'RETURN_TO_BASE is not set');
      check(returnToServer, `cannot serve ${RETURN_TO_BASE}: ${returnToError?.code || returnToError?.message}`);
      const returnTo = `${RETURN_TO_BASE}/done`;
      const b = await browser();
      const page = await b.page();
      ctx.page = page;

      const ok = await createSession({ provider: PROVIDER, user_name: 'gina@example.com', return_to: returnTo });
      note(`session ${ok.id}`);
      await throughProvider(page, ok, { login: 'gina@example.com', allow: true });
      await page.waitForLoadState('load');
      const landed = new URL(page.url());
      check(`${landed.origin}${landed.pathname}` === returnTo, `after Allow the browser is at ${page.url()}, not ${returnTo}`);
      check(landed.searchParams.get('status') === 'connected', 'return_to status', page.url());
      const tokenId = landed.searchParams.get('token_id');
      check(tokenId, 'return_to without token_id', page.url());
      check(documentStatus(page)?.status === 200, 'the return_to page did not load');
      const s = await getSession(ok.id);
      check(s.status === 'connected' && s.token_id === tokenId, `session ${ok.id} vs return_to token_id ${tokenId}`, s);

      const denied = await createSession({ provider: PROVIDER, user_name: 'gina@example.com', return_to: returnTo });
      note(`session ${denied.id}`);
      await throughProvider(page, denied, { login: 'gina@example.com', allow: false });
      await page.waitForLoadState('load');
      const back = new URL(page.url());
      check(`${back.origin}${back.pathname}` === returnTo, `after Deny the browser is at ${page.url()}, not ${returnTo}`);
      check(back.searchParams.get('status') === 'failed' && back.searchParams.get('error') === 'access_denied',
        'expected ?status=failed&error=access_denied', page.url());
      check(!back.searchParams.has('token_id'), 'a failed return_to carries a token_id', page.url());
      const sd = await getSession(denied.id);
      check(sd.status === 'failed', `denied session status: ${sd.status}`, sd);
      await closeBrowser(b);
    },
  },
  {
    key: 'h',
    name: 'opening the authorize endpoint directly explains itself',
    async run(ctx) {
      const b = await browser();
      const page = await b.page();
      ctx.page = page;
      const watch = watchRequests(page, BROKER);
      const response = await page.goto(`${BROKER}/v1/oauth/authorize?provider=${encodeURIComponent(PROVIDER)}`);
      const contentType = response?.headers()['content-type'] ?? '';
      const body = await page.locator('body').innerText();
      note(`HTTP ${response?.status()} ${contentType}`);
      note(`screenshot ${await screenshot(page, 'authorize-direct.png')}`);
      check(/^text\/html/i.test(contentType), `expected an HTML page, got content-type ${contentType}`, body.slice(0, 200));
      let isJson = false;
      try { JSON.parse(body); isJson = true; } catch { /* good */ }
      check(!isJson, 'the page is JSON', body.slice(0, 200));
      check(/application/i.test(body), 'the page does not say the address is for applications', body.replace(/\s+/g, ' ').slice(0, 300));
      watch.assertOnlyBroker();
      await closeBrowser(b);
    },
  },
  {
    key: 'i',
    name: 'the API reference renders from the broker alone',
    async run(ctx) {
      const b = await browser();
      const page = await b.page();
      ctx.page = page;
      const watch = watchRequests(page, BROKER);
      const errors = [];
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      const response = await page.goto(`${BROKER}/docs`);
      check(response?.status() === 200, `GET /docs: expected 200, got ${response?.status()}`);
      // Redoc renders the document's title and an operation once /openapi.json is loaded.
      await page.locator('h1', { hasText: 'token-broker' }).first().waitFor({ timeout: 20000 });
      await page.locator('[data-section-id^="operation/"]').first().waitFor({ timeout: 20000 });
      const operations = await page.locator('[data-section-id^="operation/"]').count();
      note(`${operations} operations rendered`);
      check(operations >= 15, `expected every operation to be rendered, saw ${operations}`);
      await fs.mkdir(SCREENSHOT_DIR, { recursive: true });
      const top = path.join(SCREENSHOT_DIR, 'docs-top.png');
      await page.screenshot({ path: top });
      note(`screenshot ${top}`);
      const loaded = watch.requests.map((r) => r.url);
      check(loaded.some((u) => u.endsWith('/docs/redoc.standalone.js')), 'the page did not load the embedded Redoc script', loaded);
      check(loaded.some((u) => u.endsWith('/openapi.json')), 'the page did not load /openapi.json', loaded);
      watch.assertOnlyBroker();
      check(b.blocked.length === 0, 'the browser tried to leave loopback', b.blocked);
      check(!errors.some((e) => /Content Security Policy/i.test(e)), 'the page broke its own CSP', errors);
      await closeBrowser(b);
    },
  },
];

// ---------------------------------------------------------------- runner --

const wanted = (env.SCENARIOS || '').split(',').map((s) => s.trim()).filter(Boolean);
const unknown = wanted.filter((w) => !scenarios.some((s) => s.key === w || s.name === w));
if (unknown.length) {
  console.error(`login.mjs: unknown SCENARIOS entries: ${unknown.join(', ')} (use ${scenarios.map((s) => s.key).join(',')} or full names)`);
  process.exit(2);
}
const selected = wanted.length ? scenarios.filter((s) => wanted.includes(s.key) || wanted.includes(s.name)) : scenarios;

let passed = 0;
let failed = 0;
for (const scenario of selected) {
  const ctx = { page: null };
  let timer;
  try {
    // eslint-disable-next-line no-await-in-loop
    await Promise.race([
      scenario.run(ctx),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${SCENARIO_TIMEOUT_MS} ms`)), SCENARIO_TIMEOUT_MS); }),
    ]);
    passed += 1;
    console.log(`ok - ${scenario.name}`);
  } catch (err) {
    failed += 1;
    const [first, ...rest] = String(err?.message ?? err).split('\n');
    console.log(`not ok - ${scenario.name}: ${first.slice(0, 600)}`);
    for (const line of rest.filter((l) => l.trim()).slice(0, 8)) note(`  ${line.trim()}`);
    if (ctx.page && !ctx.page.isClosed()) {
      try {
        const at = ctx.page.url().replace(/([?&]code=)[^&]*/, '$1…');
        note(`at ${at}; screenshot ${await screenshot(ctx.page, `failed-${scenario.key}.png`)}`);
      } catch { /* the browser may be gone */ }
    }
  } finally {
    clearTimeout(timer);
  }
}

for (const b of [...browsers]) {
  // eslint-disable-next-line no-await-in-loop
  await closeBrowser(b);
}
if (returnToServer) {
  returnToServer.closeAllConnections?.();
  await new Promise((resolve) => { returnToServer.close(resolve); });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
