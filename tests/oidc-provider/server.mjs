// Loopback-only OAuth 2.0 / OIDC test server for token-broker integration tests.
//
// Usage: node server.mjs [PORT]        (PORT 0 or omitted = pick a free port)
// stdout: exactly one line, `READY http://127.0.0.1:<port>`, once listening.
//         (That URL is the issuer.) Everything else goes to stderr.
// Exits 0 on SIGTERM / SIGINT, and when stdin reaches EOF / is closed
// (set OIDC_IGNORE_STDIN=1 to disable the stdin watch).
//
// See README.md in this folder for endpoints, clients and the login flow.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// oidc-provider prints its NOTICEs with console.info (i.e. to stdout). Keep
// stdout reserved for the READY line: route every console method to stderr.
// This must happen before oidc-provider is imported (hence the dynamic import).
const stderrConsole = console.error.bind(console);
for (const m of ['log', 'info', 'debug', 'warn']) {
  console[m] = (...args) => {
    // expected: the harness itself reads /token bodies (see STRICT_CLIENT_AUTH)
    if (String(args[0]).includes('already parsed request body detected')) return;
    stderrConsole(...args);
  };
}
const { default: Provider, errors } = await import('oidc-provider');

const log = (msg) => process.stderr.write(`[oidc-provider-harness] ${msg}\n`);

// ---------------------------------------------------------------- settings --
const HOST = '127.0.0.1';
const requestedPort = Number.parseInt(process.argv[2] ?? '0', 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  log(`invalid port argument: ${process.argv[2]}`);
  process.exit(2);
}

function positiveIntEnv(name, dflt) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number.parseInt(raw, 10);
  if (!Number.isInteger(n) || n <= 0 || String(n) !== raw.trim()) {
    log(`invalid ${name}=${raw}: must be a positive integer (seconds)`);
    process.exit(2);
  }
  return n;
}

const ACCESS_TOKEN_TTL = positiveIntEnv('ACCESS_TOKEN_TTL', 60);
const REFRESH_TOKEN_TTL = positiveIntEnv('REFRESH_TOKEN_TTL', 24 * 60 * 60);
const REDIRECT_URIS = (process.env.REDIRECT_URIS || 'http://127.0.0.1:8080/v1/oauth/callback')
  .split(',').map((s) => s.trim()).filter(Boolean);
const DEFAULT_ACCOUNT = 'alice@example.com';
// Requested by the brief: 's3cr3t +/=&%?é'. oidc-provider only accepts client
// secrets made of VSCHAR (printable ASCII 0x20-0x7E, RFC 6749 Appendix A), so
// the 'é' is dropped. Overridable with CLIENT_SECRET (same rule applies).
const CLIENT_SECRET = process.env.CLIENT_SECRET || 's3cr3t +/=&%?';
// oidc-provider lets a client registered for client_secret_basic authenticate
// with client_secret_post and vice versa. The harness rejects that (401
// invalid_client) unless STRICT_CLIENT_AUTH=0.
const STRICT_CLIENT_AUTH = process.env.STRICT_CLIENT_AUTH !== '0';
// Scope names accepted (and auto-granted) besides openid and offline_access,
// space or comma separated. Unlisted scopes are silently dropped by the library.
const EXTRA_SCOPES = (process.env.EXTRA_SCOPES || '').split(/[\s,]+/).filter(Boolean);
// INTERACTIVE=1: /interaction/:uid shows a login form and a consent page (for a
// browser), and refresh tokens follow the library's default (only when
// offline_access was granted). Otherwise every interaction is auto-approved.
const INTERACTIVE = process.env.INTERACTIVE === '1';
// ID_TOKEN_CLAIMS=1: the ID token also carries the claims of the granted scopes
// (email, email_verified, name), as many real providers do. By default the
// library follows OIDC Core 5.4: in the code flow they come from userinfo only,
// and the ID token has just `sub`.
const ID_TOKEN_CLAIMS = process.env.ID_TOKEN_CLAIMS === '1';
// CALLER_TOKENS=1: the harness is also the identity provider of the services
// that call the broker. The client `caller-svc` gets JWT access tokens (RS256,
// the same key as the ID tokens, so the broker can verify them against
// ISSUER/jwks) by the client_credentials grant. Off by default: it needs
// resourceIndicators, which the default mode keeps disabled (see below).
const CALLER_TOKENS = process.env.CALLER_TOKENS === '1';
for (const name of ['INTERACTIVE', 'ID_TOKEN_CLAIMS', 'CALLER_TOKENS']) {
  if (!['', '0', '1'].includes(process.env[name] ?? '')) {
    log(`invalid ${name}=${process.env[name]}: must be 0 or 1`);
    process.exit(2);
  }
}
// The `tenant` claim of caller tokens. '*' (all tenants) unless set. Setting it
// without CALLER_TOKENS=1 would silently do nothing, so that is an error.
if (process.env.CALLER_TENANT && !CALLER_TOKENS) {
  log('invalid CALLER_TENANT: only used with CALLER_TOKENS=1');
  process.exit(2);
}
const CALLER_TENANT = process.env.CALLER_TENANT || '*';
// The one resource server caller tokens are for: the broker. A token request
// without a `resource` parameter gets this one (defaultResource below).
const CALLER_RESOURCE = 'urn:token-broker';
const CALLER_CLIENT_ID = 'caller-svc';

// ------------------------------------------------------------- the clients --
const baseClient = {
  client_secret: CLIENT_SECRET,
  redirect_uris: REDIRECT_URIS,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
};
const clients = [
  { ...baseClient, client_id: 'broker-client', token_endpoint_auth_method: 'client_secret_basic' },
  { ...baseClient, client_id: 'broker-client-post', token_endpoint_auth_method: 'client_secret_post' },
];
if (CALLER_TOKENS) {
  // A calling service: no browser, no redirect, client_credentials only. Its own
  // secret (not CLIENT_SECRET): plain ASCII, so `curl -u caller-svc:caller-secret`
  // works without any url-encoding.
  clients.push({
    client_id: CALLER_CLIENT_ID,
    client_secret: 'caller-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  });
}

// -------------------------------------------------------- start the socket --
// Listen first (so that port 0 can be resolved), then build the provider with
// the final issuer URL and attach it.
let handler = (req, res) => { res.statusCode = 503; res.end(); };
const server = http.createServer((req, res) => handler(req, res));
server.keepAliveTimeout = 1000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requestedPort, HOST, resolve);
}).catch((err) => {
  log(`cannot listen on ${HOST}:${requestedPort}: ${err.code || err.message}`);
  process.exit(1);
});

const { port } = server.address();
const ISSUER = `http://${HOST}:${port}`;

// ------------------------------------------------------- provider settings --
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'harness-rs256', use: 'sig', alg: 'RS256' };

const configuration = {
  clients,
  jwks: { keys: [signingJwk] },
  cookies: {
    // random per process; cookies are signed (each cookie gets a `<name>.sig` twin)
    keys: [crypto.randomBytes(32).toString('base64url')],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', ...EXTRA_SCOPES],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Any account id exists. Its claims: sub, email (the id itself when it has an
  // '@', else <id>@example.com), email_verified, name (the part before '@').
  // The library hands out only those of the granted scopes.
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: sub.includes('@') ? sub : `${sub}@example.com`,
          email_verified: true,
          name: sub.split('@')[0],
        };
      },
    };
  },
  features: {
    devInteractions: { enabled: false }, // replaced by the automatic /interaction/:uid below
    revocation: { enabled: true },
    introspection: { enabled: false },
    userinfo: { enabled: true },
    // Default mode: no `resource` param => opaque tokens, OIDC scopes only.
    // CALLER_TOKENS=1 needs it for JWT access tokens (the library only issues a
    // JWT for a resource server). It is then scoped to caller-svc so that the
    // broker clients see no difference (no resource is defaulted for them).
    resourceIndicators: CALLER_TOKENS ? {
      enabled: true,
      // client_credentials without a `resource` param => the broker. Other
      // clients keep the library's default (none), hence their opaque tokens.
      defaultResource: async (_ctx, client, oneOf) => (
        oneOf ?? (client?.clientId === CALLER_CLIENT_ID ? CALLER_RESOURCE : undefined)),
      useGrantedResource: async () => true,
      async getResourceServerInfo(_ctx, resourceIndicator, client) {
        if (resourceIndicator !== CALLER_RESOURCE || client?.clientId !== CALLER_CLIENT_ID) {
          throw new errors.InvalidTarget();
        }
        return {
          // The token carries only those of the requested scopes that are listed here.
          scope: 'tokens:read tokens:access tokens:write',
          audience: 'token-broker',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          // kid pins the harness key (the only RS256 key; named for clarity).
          jwt: { sign: { alg: 'RS256', kid: signingJwk.kid } },
        };
      },
    } : { enabled: false },
    ...(CALLER_TOKENS ? { clientCredentials: { enabled: true } } : {}),
  },
  // The tenant claim on caller tokens (JWT: a top-level claim; it never
  // overrides the library's own claims). Other tokens get nothing extra.
  ...(CALLER_TOKENS ? {
    extraTokenClaims: async (_ctx, token) => (
      token.kind === 'ClientCredentials' ? { tenant: CALLER_TENANT } : undefined),
  } : {}),
  pkce: {
    // Every authorization request must carry code_challenge + code_challenge_method=S256.
    methods: ['S256'],
    required: () => true,
  },
  // Always issue a refresh token to these clients (by default oidc-provider only
  // does so when `offline_access` was granted). INTERACTIVE mode keeps the
  // library's default: like a real provider, no refresh token without
  // offline_access (which the library only grants with prompt=consent).
  ...(INTERACTIVE ? {} : {
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  }),
  // Rotation ON: every refresh_token grant consumes the presented RT and returns a new one.
  rotateRefreshToken: true,
  // Tokens do not die with the (cookie) session.
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: REFRESH_TOKEN_TTL,
    Interaction: 600,
    Session: 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
    // the resource server's accessTokenTTL (600 s); set to avoid the library's
    // "define the expiration" notice.
    ...(CALLER_TOKENS ? { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || 600 } : {}),
  },
  // oidc-provider's default is 15 s of leeway when checking the expiry of opaque
  // tokens: an access token would still be accepted up to 15 s after expires_in.
  clockTolerance: 0,
  conformIdTokenClaims: !ID_TOKEN_CLAIMS,
  interactions: {
    url: async (_ctx, interaction) => `${ISSUER}/interaction/${interaction.uid}`,
  },
  clientBasedCORS: () => false,
  // Render authorization-endpoint errors that cannot be redirected as JSON.
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

let provider;
try {
  provider = new Provider(ISSUER, configuration);
} catch (err) {
  log(`invalid provider configuration: ${err.message}`);
  process.exit(1);
}

// Clients are validated lazily; load them now so a bad secret/redirect URI fails at startup.
for (const { client_id: id } of clients) {
  try {
    // eslint-disable-next-line no-await-in-loop
    if (!(await provider.Client.find(id))) throw new Error('not found');
  } catch (err) {
    log(`invalid client ${id}: ${err.error_description || err.message}`);
    process.exit(1);
  }
}

// -------------------------------------------------------------- logging --
// One line per request: method, path (never the query string), status.
provider.use(async (ctx, next) => {
  const { method, path } = ctx;
  try {
    await next();
  } finally {
    log(`${method} ${path} -> ${ctx.respond === false ? ctx.res.statusCode : ctx.status}`);
  }
});

// RFC 8414 metadata path: same document as /.well-known/openid-configuration.
provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/oauth-authorization-server') ctx.path = '/.well-known/openid-configuration';
  return next();
});

// Strict token_endpoint_auth_method (see STRICT_CLIENT_AUTH above) on the
// endpoints that authenticate clients. The form body is read here and handed to
// oidc-provider as an "already parsed" body (a path the library supports).
// caller-svc is left out: like the library, it accepts basic and post (a
// service's OAuth library may pick either).
const registeredAuthMethod = new Map(clients
  .filter((c) => c.client_id !== CALLER_CLIENT_ID)
  .map((c) => [c.client_id, c.token_endpoint_auth_method]));
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/revocation']);
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) { reject(new Error('body too large')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
provider.use(async (ctx, next) => {
  if (!STRICT_CLIENT_AUTH || ctx.method !== 'POST' || !CLIENT_AUTH_PATHS.has(ctx.path)
      || !ctx.is('application/x-www-form-urlencoded')) {
    return next();
  }
  const body = await readBody(ctx.req, 56 * 1024);
  ctx.req.body = body;
  let used;
  let clientId;
  const authorization = ctx.get('authorization');
  if (/^basic /i.test(authorization)) {
    used = 'client_secret_basic';
    try {
      const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
      clientId = decodeURIComponent(decoded.slice(0, decoded.indexOf(':')).replace(/\+/g, '%20'));
    } catch { /* malformed: let oidc-provider produce its error */ }
  } else {
    const form = new URLSearchParams(body);
    if (form.has('client_secret')) {
      used = 'client_secret_post';
      clientId = form.get('client_id');
    }
  }
  const expected = clientId && registeredAuthMethod.get(clientId);
  if (used && expected && used !== expected) {
    log(`rejecting ${clientId}: used ${used}, registered for ${expected}`);
    ctx.status = 401;
    ctx.type = 'json';
    ctx.body = { error: 'invalid_client', error_description: 'client authentication failed' };
    return undefined;
  }
  return next();
});

// ---------------------------------------------- interactive interaction --
// INTERACTIVE=1: GET /interaction/:uid renders a login form (login prompt) or a
// consent page (consent prompt); the forms POST to /interaction/:uid/login,
// /interaction/:uid/confirm and /interaction/:uid/abort.
const escapeHtml = (v) => String(v).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function htmlPage(title, body) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - Test Identity Provider</title>
<style>
  body { font-family: system-ui, sans-serif; background: #eef1f5; color: #1d2430; margin: 0; }
  main { max-width: 24rem; margin: 3rem auto; background: #fff; border-radius: 8px;
         box-shadow: 0 1px 4px rgba(0,0,0,.15); padding: 1.5rem 1.75rem; }
  @media (max-width: 30rem) { main { margin: 1rem .75rem; } }
  .brand { font-size: .8rem; letter-spacing: .08em; text-transform: uppercase; color: #6b7585; margin: 0 0 .5rem; }
  h1 { font-size: 1.35rem; margin: 0 0 1rem; }
  label { display: block; font-weight: 600; margin-bottom: .35rem; }
  input[type=text] { box-sizing: border-box; width: 100%; padding: .55rem .6rem; font-size: 1rem;
                     border: 1px solid #b9c0cc; border-radius: 4px; }
  button { font-size: 1rem; padding: .55rem 1.2rem; border-radius: 4px; border: 1px solid #2d5bd7;
           background: #2d5bd7; color: #fff; cursor: pointer; margin-top: 1rem; }
  button.secondary { background: #fff; color: #2d5bd7; }
  .buttons { display: flex; gap: .75rem; }
  ul { padding-left: 1.2rem; }
  code { background: #eef1f5; padding: 0 .25rem; border-radius: 3px; }
  .error { color: #a8201a; }
</style>
</head>
<body>
<main>
<p class="brand">Test Identity Provider</p>
${body}
</main>
</body>
</html>
`;
}

function renderLogin(ctx, uid, { loginHint = '', error } = {}) {
  ctx.type = 'html';
  ctx.body = htmlPage('Sign in', `<h1>Sign in</h1>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>\n` : ''}<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="login">Email or user name</label>
<input type="text" name="login" id="login" value="${escapeHtml(loginHint)}" autofocus required>
<button type="submit">Sign in</button>
</form>`);
}

const SCOPE_TEXT = {
  openid: 'Sign you in (your user id)',
  email: 'Your email address',
  profile: 'Your name',
  offline_access: 'Keep access while you are away (refresh token)',
};

function renderConsent(ctx, uid, details) {
  const { params, session } = details;
  const requested = new Set(String(params.scope ?? '').split(' ').filter(Boolean));
  for (const s of details.prompt.details?.missingOIDCScope ?? []) requested.add(s);
  const items = [...requested].map((s) => `<li><code>${escapeHtml(s)}</code>${
    SCOPE_TEXT[s] ? ` - ${escapeHtml(SCOPE_TEXT[s])}` : ''}</li>`).join('\n');
  ctx.type = 'html';
  ctx.body = htmlPage('Allow access', `<h1>Allow access?</h1>
<p>Signed in as <strong id="account">${escapeHtml(session?.accountId ?? '')}</strong>.</p>
<p>The application <strong id="client">${escapeHtml(params.client_id)}</strong> asks for:</p>
<ul id="scopes">
${items}
</ul>
<div class="buttons">
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm"><button type="submit" id="allow">Allow</button></form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button type="submit" id="deny" class="secondary">Deny</button></form>
</div>`);
}

function renderInteractionError(ctx, err) {
  ctx.status = err.statusCode || 500;
  ctx.type = 'html';
  ctx.body = htmlPage('Error', `<h1>Something went wrong</h1>
<p class="error"><code>${escapeHtml(err.error || 'server_error')}</code>: ${escapeHtml(err.error_description || err.message)}</p>`);
}

if (INTERACTIVE) {
  provider.use(async (ctx, next) => {
    const m = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?\/?$/.exec(ctx.path);
    if (!m) return next();
    const [, uid, action] = m;
    if (action ? ctx.method !== 'POST' : ctx.method !== 'GET') {
      ctx.status = 405;
      return undefined;
    }
    try {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== uid) throw new errors.SessionNotFound('interaction uid does not match the _interaction cookie');
      const { prompt, params, session } = details;

      if (!action) {
        ctx.set('Cache-Control', 'no-store');
        if (prompt.name === 'login') {
          renderLogin(ctx, uid, { loginHint: typeof params.login_hint === 'string' ? params.login_hint : '' });
        } else {
          renderConsent(ctx, uid, details);
        }
        log(`interaction ${prompt.name}: page shown client=${params.client_id}`);
        return undefined;
      }

      const form = new URLSearchParams(await readBody(ctx.req, 16 * 1024));
      let result;
      let merge = false;
      if (action === 'login') {
        if (prompt.name !== 'login') throw new errors.InvalidRequest(`the pending prompt is ${prompt.name}, not login`);
        const accountId = (form.get('login') ?? '').trim();
        if (!accountId) {
          ctx.status = 400;
          renderLogin(ctx, uid, { error: 'Enter an email address or user name.' });
          return undefined;
        }
        result = { login: { accountId } };
        log(`interaction login: signed in account=${accountId} client=${params.client_id}`);
      } else if (action === 'confirm') {
        if (prompt.name !== 'consent') throw new errors.InvalidRequest(`the pending prompt is ${prompt.name}, not consent`);
        const accountId = session?.accountId;
        if (!accountId) throw new errors.InvalidRequest('no signed-in account');
        let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
        if (!grant || grant.accountId !== accountId || grant.clientId !== params.client_id) {
          grant = new provider.Grant({ accountId, clientId: params.client_id });
        }
        if (params.scope) grant.addOIDCScope(params.scope);
        const missing = prompt.details ?? {};
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        result = { consent: { grantId: await grant.save() } };
        merge = true;
        log(`interaction consent: allowed account=${accountId} client=${params.client_id} scope="${params.scope ?? ''}"`);
      } else {
        result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
        log(`interaction ${prompt.name}: denied client=${params.client_id}`);
      }
      ctx.respond = false;
      await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
    } catch (err) {
      ctx.respond = true;
      renderInteractionError(ctx, err);
    }
    return undefined;
  });
}

// ------------------------------------------------ automatic interaction --
// GET /interaction/:uid completes login (+ consent) without any UI and 303s
// to the resume URL /auth/:uid.
provider.use(async (ctx, next) => {
  const m = /^\/interaction\/([^/]+)\/?$/.exec(ctx.path);
  if (!m) return next();
  if (ctx.method !== 'GET' && ctx.method !== 'POST') {
    ctx.status = 405;
    return undefined;
  }
  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== m[1]) throw new errors.SessionNotFound('interaction uid does not match the _interaction cookie');
    const { prompt, params, session } = details;

    // login: the login_hint (else alice@example.com) when the login prompt is
    // pending; for a consent-only prompt the session's account stays.
    const loginRequired = prompt.name === 'login' || !session?.accountId;
    const accountId = loginRequired
      ? ((typeof params.login_hint === 'string' && params.login_hint) || DEFAULT_ACCOUNT)
      : session.accountId;

    const result = {};
    if (loginRequired) result.login = { accountId };

    // consent: grant everything that was requested
    let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    if (!grant || grant.accountId !== accountId || grant.clientId !== params.client_id) {
      grant = new provider.Grant({ accountId, clientId: params.client_id });
    }
    if (params.scope) grant.addOIDCScope(params.scope);
    if (params.claims) {
      try {
        const { userinfo = {}, id_token: idToken = {} } = JSON.parse(params.claims);
        grant.addOIDCClaims([...Object.keys(userinfo), ...Object.keys(idToken)]);
      } catch { /* invalid claims were already rejected by the authorization endpoint */ }
    }
    result.consent = { grantId: await grant.save() };

    log(`interaction ${prompt.name}: auto-approved account=${accountId} client=${params.client_id} scope="${params.scope ?? ''}"`);
    ctx.respond = false;
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  } catch (err) {
    ctx.respond = true;
    ctx.status = err.statusCode || 500;
    ctx.type = 'json';
    ctx.body = { error: err.error || 'server_error', error_description: err.error_description || err.message };
  }
  return undefined;
});

provider.on('server_error', (_ctx, err) => log(`server_error: ${err.stack || err}`));

handler = provider.callback();

// ------------------------------------------------------------ lifecycle --
let stopping = false;
function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  log(`shutting down (${reason})`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGHUP', () => shutdown('SIGHUP'));
if (process.env.OIDC_IGNORE_STDIN !== '1') {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume(); // discard anything written to stdin
}
process.stdout.on('error', () => {}); // parent stopped reading stdout: keep serving

process.stdout.write(`READY ${ISSUER}\n`);
log(`listening, issuer ${ISSUER}, clients broker-client (client_secret_basic) broker-client-post (client_secret_post)${STRICT_CLIENT_AUTH ? ' strictly' : ' interchangeably'}, redirect_uris ${REDIRECT_URIS.join(' ')}, access token ttl ${ACCESS_TOKEN_TTL}s${INTERACTIVE ? ', INTERACTIVE (login and consent pages)' : ''}${ID_TOKEN_CLAIMS ? ', ID tokens with scope claims' : ''}${CALLER_TOKENS ? `, CALLER_TOKENS (caller-svc, client_credentials, JWT for ${CALLER_RESOURCE}, tenant ${CALLER_TENANT})` : ''}`);
