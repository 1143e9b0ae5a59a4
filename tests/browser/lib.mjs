// Helpers for the browser tests: Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), the oidc-provider harness's INTERACTIVE pages, a request watch
// for the broker's pages, screenshots, and a small client for the broker's HTTP API.

import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
/** The flags every browser is started with (plus a fresh --user-data-dir per browser). */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
/** Upper bound on any one wait for a page or element. */
export const TIMEOUT_MS = Number(process.env.BROWSER_TIMEOUT_MS || 15000);

/** True for URLs the browser may load: loopback http(s), data:, blob:, about:. */
export function isAllowedUrl(raw) {
  let u;
  try { u = new URL(raw); } catch { return false; }
  if (['data:', 'blob:', 'about:', 'chrome-error:'].includes(u.protocol)) return true;
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
  return u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
}

// The last main-frame document response (not a redirect) of each page, for documentStatus().
const lastDocument = new WeakMap();
function trackDocuments(page) {
  page.on('response', (response) => {
    const request = response.request();
    if (!request.isNavigationRequest() || request.frame() !== page.mainFrame()) return;
    const status = response.status();
    if (status >= 300 && status < 400) return;
    lastDocument.set(page, { status, url: response.url(), headers: response.headers() });
  });
}

/**
 * A fresh browser: a persistent context in a new temporary --user-data-dir, so no
 * cookies are shared with any other browser. Requests to anything but loopback are
 * aborted (and counted in `blocked`). Returns {context, page(), newPage(), blocked, close}.
 */
export async function openBrowser({ viewport = DESKTOP } = {}) {
  const userDataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-browser-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport,
      timeout: 30000,
    });
  } catch (err) {
    await fs.rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(TIMEOUT_MS);
  context.setDefaultNavigationTimeout(TIMEOUT_MS);
  const blocked = [];
  await context.route((url) => !isAllowedUrl(url.href), (route) => {
    blocked.push(route.request().url());
    return route.abort('blockedbyclient');
  });
  for (const p of context.pages()) trackDocuments(p);
  context.on('page', trackDocuments);
  let closed = false;
  return {
    context,
    blocked,
    /** The context's first tab (a persistent context opens with one). */
    async page() {
      return context.pages()[0] ?? context.newPage();
    },
    newPage: () => context.newPage(),
    async close() {
      if (closed) return;
      closed = true;
      await context.close().catch(() => {});
      await fs.rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    },
  };
}

/** {status, url, headers} of the document the page shows (its last non-redirect navigation response). */
export function documentStatus(page) {
  return lastDocument.get(page) ?? null;
}

// ------------------------------------------------------- the provider's pages --

const originOf = (u) => new URL(u).origin;

/** Waits until the page shows the provider's login form or consent page; returns 'login' | 'consent'. */
export async function providerPrompt(page) {
  const form = page.locator('#login, #allow').first();
  await form.waitFor({ state: 'visible' });
  return (await page.locator('#login').count()) > 0 ? 'login' : 'consent';
}

/** On the provider's login form: types `login` and presses "Sign in"; returns once the next page loaded. */
export async function signIn(page, login) {
  await page.locator('#login').waitFor({ state: 'visible' });
  const before = page.url();
  await page.fill('#login', login);
  await Promise.all([
    page.waitForURL((u) => u.href !== before),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
}

/**
 * On the provider's consent page: presses "Allow" (allow = true) or "Deny". With
 * `wait` (the default) returns once the browser has left the provider (the page
 * then shows wherever the provider sent it: the broker's callback or its return_to).
 */
export async function consent(page, allow, { wait = true } = {}) {
  const button = page.locator(allow ? '#allow' : '#deny');
  await button.waitFor({ state: 'visible' });
  const provider = originOf(page.url());
  if (!wait) {
    await button.click();
    return;
  }
  await Promise.all([
    page.waitForURL((u) => u.origin !== provider),
    button.click(),
  ]);
}

/**
 * Drives the provider's pages until the browser leaves the provider: signs in as
 * `login` when asked, then allows (or denies) consent. Returns which pages were shown.
 */
export async function passProvider(page, { login, allow = true, issuer }) {
  const provider = originOf(issuer);
  const shown = [];
  for (let i = 0; i < 4 && originOf(page.url()) === provider; i += 1) {
    let prompt;
    try {
      prompt = await providerPrompt(page);
    } catch (err) {
      const text = (await page.locator('body').innerText().catch(() => '')).slice(0, 300);
      throw new Error(`the provider shows neither a login form nor a consent page at ${page.url()}: ${text || err.message}`);
    }
    shown.push(prompt);
    if (prompt === 'login') {
      if (!login) throw new Error('the provider asks for a login but none was given');
      await signIn(page, login);
    } else {
      await consent(page, allow);
    }
  }
  if (originOf(page.url()) === provider) throw new Error(`still on the provider after ${shown.join(', ')}`);
  return { shown, loginShown: shown.includes('login'), consentShown: shown.includes('consent') };
}

/**
 * Keeps the browser from reaching the broker's callback, and hands over the
 * callback URL (with code and state) instead: for "a login finished in another browser".
 *
 * page.route() cannot do this on the callback URL itself: Playwright calls a route
 * handler only for the first URL of a redirect chain, and the provider reaches the
 * callback through redirects (POST /interaction/<uid>/confirm -> 303 /auth/<uid> ->
 * 303 callback). So this routes the consent form's POST (confirm or abort), sends it
 * and follows the provider's redirects itself with the context's request client
 * (which shares the browser's cookies), stops at the first Location under
 * `callbackPrefix`, and shows the browser a plain "stopped" page.
 * Returns {callbackUrl: Promise<string>, stop()}.
 */
export async function interceptCallback(page, { issuer, callbackPrefix }) {
  const provider = originOf(issuer);
  let resolve;
  let reject;
  const callbackUrl = new Promise((res, rej) => { resolve = res; reject = rej; });
  callbackUrl.catch(() => {}); // reported to whoever awaits it
  const matches = (u) => u.origin === provider && /^\/interaction\/[^/]+\/(confirm|abort)\/?$/.test(u.pathname);
  const handler = async (route) => {
    try {
      let response = await route.fetch({ maxRedirects: 0 });
      for (let hop = 0; hop < 6; hop += 1) {
        const location = response.headers().location;
        if (!location) break;
        const next = new URL(location, response.url()).href;
        if (next.startsWith(callbackPrefix)) {
          resolve(next);
          await route.fulfill({
            status: 200,
            contentType: 'text/html; charset=utf-8',
            body: '<!doctype html><title>stopped</title><p>The test stopped this browser before the broker\'s callback.</p>',
          });
          return;
        }
        // eslint-disable-next-line no-await-in-loop
        response = await page.context().request.get(next, { maxRedirects: 0 });
      }
      throw new Error(`the provider did not redirect to ${callbackPrefix} (last: HTTP ${response.status()} ${response.url()})`);
    } catch (err) {
      reject(err);
      await route.abort().catch(() => {});
    }
  };
  await page.route(matches, handler);
  return { callbackUrl, stop: () => page.unroute(matches, handler) };
}

// ----------------------------------------------------- the broker's pages --

/**
 * Records every request the page makes while its document (or a frame's parent
 * document) is on `brokerOrigin`: subresources, fetches, iframes. Navigations of
 * the main frame itself (the test's goto, the broker's redirects) are not counted.
 * `outside()` lists those that went anywhere but the broker origin (data:/blob: are fine);
 * `assertOnlyBroker()` throws with that list. `stop()` removes the listener.
 */
export function watchRequests(page, brokerOrigin) {
  const origin = originOf(brokerOrigin);
  const requests = [];
  const onRequest = (request) => {
    const frame = request.frame();
    let documentUrl;
    if (request.isNavigationRequest()) {
      if (frame === page.mainFrame()) return;
      documentUrl = frame.parentFrame()?.url();
    } else {
      documentUrl = frame.url();
    }
    let documentOrigin;
    try { documentOrigin = documentUrl && originOf(documentUrl); } catch { return; }
    if (documentOrigin !== origin) return;
    requests.push({ url: request.url(), type: request.resourceType(), document: documentUrl });
  };
  page.on('request', onRequest);
  const outside = () => requests.filter(({ url }) => {
    if (/^(data|blob):/.test(url)) return false;
    try { return originOf(url) !== origin; } catch { return true; }
  });
  return {
    requests,
    outside,
    assertOnlyBroker() {
      const bad = outside();
      if (bad.length) {
        throw new Error(`the broker page made requests outside ${origin}: ${bad.map((r) => `${r.type} ${r.url}`).join(', ')}`);
      }
    },
    stop() { page.off('request', onRequest); },
  };
}

/**
 * What a broker page says: {outcome (main[data-outcome]), h1, reason (the first
 * paragraph in main), text (main's text), status (HTTP), contentType, url}.
 */
export async function brokerPage(page) {
  await page.waitForLoadState('load');
  const main = page.locator('main[data-outcome]');
  const doc = documentStatus(page);
  const found = (await main.count()) > 0;
  const text = found ? await main.innerText() : await page.locator('body').innerText().catch(() => '');
  return {
    outcome: found ? await main.getAttribute('data-outcome') : null,
    h1: (await page.locator('h1').first().innerText().catch(() => null)) ?? null,
    reason: found ? await main.locator('p').first().innerText().catch(() => null) : null,
    text,
    status: doc?.status ?? null,
    contentType: doc?.headers?.['content-type'] ?? null,
    url: page.url(),
  };
}

// ------------------------------------------------------------ screenshots --

export const SCREENSHOT_DIR = path.resolve(REPO_ROOT, process.env.SCREENSHOT_DIR || 'target/browser-screenshots');

/** A full-page PNG of the page as SCREENSHOT_DIR/<name> ('.png' added when missing); returns the path. */
export async function screenshot(page, name) {
  await fs.mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, name.endsWith('.png') ? name : `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// ------------------------------------------------------- the broker's API --

/**
 * A client for the broker's HTTP API: every call sends `Authorization: Bearer <jwt>`
 * and returns {status, body (parsed JSON or null), text, headers}. It never follows redirects.
 */
export function brokerApi(base = process.env.TOKEN_BROKER_URL, jwt = process.env.TOKEN_BROKER_JWT) {
  if (!base) throw new Error('TOKEN_BROKER_URL is not set');
  const root = base.replace(/\/+$/, '');
  async function call(method, pathAndQuery, body) {
    const headers = { authorization: `Bearer ${jwt}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${root}${pathAndQuery}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: res.status, body: json, text, headers: res.headers };
  }
  const id = (v) => encodeURIComponent(v);
  return {
    base: root,
    call,
    createSession: (request) => call('POST', '/v1/connect/sessions', request),
    getSession: (sessionId) => call('GET', `/v1/connect/sessions/${id(sessionId)}`),
    getToken: (tokenId) => call('GET', `/v1/tokens/${id(tokenId)}`),
    listTokens: (query = {}) => call('GET', `/v1/tokens?${new URLSearchParams(query)}`),
    refresh: (tokenId) => call('POST', `/v1/tokens/${id(tokenId)}/refresh`),
    accessToken: (tokenId) => call('GET', `/v1/tokens/${id(tokenId)}/access-token`),
  };
}

/** Throws `message` (plus `detail` as JSON) unless `condition` holds. */
export function check(condition, message, detail) {
  if (!condition) {
    throw new Error(detail === undefined ? message : `${message}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  }
}
