//! Interop with a real OAuth 2.0 server (npm oidc-provider) on loopback.
//!
//! Each test starts `tests/oidc-provider/server.mjs` (oidc-provider 8.8.1: PKCE S256 required,
//! refresh-token rotation, RFC 7009 revocation, automatic login and consent; see its README) and
//! a broker that knows it as the generic `oauth2` provider `oidc`. The tests then drive the
//! broker's HTTP API the way a caller and a browser would. The provider is called directly only to
//! check what the broker handed out: userinfo (`/me`) for access tokens, and `/token` for a
//! refresh token that must be dead.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::{header, redirect, Client, RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use token_broker::config::ProviderSettings;
use url::form_urlencoded::byte_serialize;
use url::Url;

use crate::client;
use crate::helpers::{now_ms, spawn_app_with, Backend, TestApp};

/// The provider key the broker knows the oidc-provider harness by.
const PROVIDER: &str = "oidc";
/// The secret of both harness clients: a space and `+/=&%?` test the client-auth encodings.
const CLIENT_SECRET: &str = "s3cr3t +/=&%?";
const ALICE: &str = "alice@example.com";
/// Bound on every HTTP call the tests make themselves and on waiting for the provider to start.
const TIMEOUT: Duration = Duration::from_secs(20);

/// How a client registered at the provider authenticates at `/token` and `/token/revocation`
/// (the harness rejects the other method).
#[derive(Debug, Clone, Copy)]
enum AuthMethod {
    /// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
    Basic,
    /// `client_id` and `client_secret` as form fields.
    Post,
}

/// One of the two clients registered in `server.mjs`.
#[derive(Debug, Clone, Copy)]
struct RegisteredClient {
    id: &'static str,
    auth_method: AuthMethod,
}

const BASIC_CLIENT: RegisteredClient = RegisteredClient {
    id: "broker-client",
    auth_method: AuthMethod::Basic,
};

const POST_CLIENT: RegisteredClient = RegisteredClient {
    id: "broker-client-post",
    auth_method: AuthMethod::Post,
};

impl RegisteredClient {
    /// The broker's name for the method (`providers.<key>.auth_method`).
    fn auth_method_setting(self) -> &'static str {
        match self.auth_method {
            AuthMethod::Basic => "client_secret_basic",
            AuthMethod::Post => "client_secret_post",
        }
    }

    /// Adds this client's authentication to a form request to the provider.
    fn authenticate(self, request: RequestBuilder, mut form: Vec<(&str, &str)>) -> RequestBuilder {
        match self.auth_method {
            AuthMethod::Basic => {
                let encode = |s: &str| byte_serialize(s.as_bytes()).collect::<String>();
                let credentials = format!("{}:{}", encode(self.id), encode(CLIENT_SECRET));
                request
                    .header(
                        header::AUTHORIZATION,
                        format!("Basic {}", B64.encode(credentials)),
                    )
                    .form(&form)
            }
            AuthMethod::Post => {
                form.extend([("client_id", self.id), ("client_secret", CLIENT_SECRET)]);
                request.form(&form)
            }
        }
    }
}

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// Installs the harness's npm packages once per test run (`npm ci`, from the lock file).
fn ensure_npm_packages() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = harness_dir();
        if dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("npm is installed");
        assert!(
            status.success(),
            "`npm ci` in {} failed: {status}",
            dir.display()
        );
    });
}

/// A running `server.mjs`, stopped on drop. Its stderr log is kept and printed if the test fails.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, from the READY line.
    pub issuer: String,
    child: Child,
    /// The server exits when its stdin closes, so this stays open as long as it should run.
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<Vec<String>>>,
}

impl OidcProvider {
    /// Starts the server on a free port (blocking: call it from `spawn_blocking`).
    fn start(redirect_uri: &str, access_token_ttl_secs: u32) -> Self {
        Self::start_with(redirect_uri, access_token_ttl_secs, &[])
    }

    /// Like `start`, with more of the harness's settings (e.g. `INTERACTIVE=1`).
    pub fn start_with(
        redirect_uri: &str,
        access_token_ttl_secs: u32,
        env: &[(&str, &str)],
    ) -> Self {
        ensure_npm_packages();
        let mut child = Command::new("node")
            .args(["server.mjs", "0"])
            .envs(env.iter().copied())
            .current_dir(harness_dir())
            .env("REDIRECT_URIS", redirect_uri)
            .env("ACCESS_TOKEN_TTL", access_token_ttl_secs.to_string())
            .env_remove("OIDC_IGNORE_STDIN")
            .env_remove("CLIENT_SECRET")
            .env_remove("STRICT_CLIENT_AUTH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node is installed");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut provider = Self {
            issuer: String::new(),
            stdin: child.stdin.take(),
            child,
            log,
        };
        let ready = lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("server.mjs printed no READY line within {TIMEOUT:?}"));
        let issuer = ready
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected first line from server.mjs: {ready}"));
        assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
        provider.issuer = issuer.to_owned();
        provider
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.join("\n")).unwrap_or_default();
            eprintln!("--- oidc-provider log ({}) ---\n{log}", self.issuer);
        }
    }
}

/// A port that was free a moment ago: the provider must know the broker's callback URL (its
/// registered redirect_uri) before the broker starts.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The absolute URL a redirect answer points to.
fn location(answer: &Response) -> String {
    let to = answer
        .headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| {
            panic!(
                "{} answered {} without Location",
                answer.url(),
                answer.status()
            )
        })
        .to_str()
        .expect("an ASCII Location");
    answer.url().join(to).expect("a valid Location").into()
}

fn query_of(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{field}` in {value}"))
}

/// A broker wired to a running oidc-provider.
struct Interop {
    app: TestApp,
    provider: OidcProvider,
    client: RegisteredClient,
    /// The broker's redirect_uri: `{oauth.public_url}/v1/oauth/callback`.
    callback: String,
    /// For the test's own calls to the provider (and to replay the callback).
    http: Client,
}

impl Interop {
    /// Starts the provider (access tokens live `access_token_ttl_secs`), then the broker on
    /// SQLite with `client` as the credentials of provider `oidc`.
    async fn start(client: RegisteredClient, access_token_ttl_secs: u32) -> Self {
        let broker_port = free_port();
        let public_url = format!("http://127.0.0.1:{broker_port}");
        let callback = format!("{public_url}/v1/oauth/callback");
        let redirect_uri = callback.clone();
        let provider = tokio::task::spawn_blocking(move || {
            OidcProvider::start(&redirect_uri, access_token_ttl_secs)
        })
        .await
        .expect("oidc-provider starts");
        let issuer = provider.issuer.clone();
        let app = spawn_app_with(Backend::Sqlite, |s| {
            s.server.port = broker_port;
            s.oauth.public_url = public_url.clone();
            s.oauth.background.enabled = false;
            s.oauth.return_to_origins = vec!["http://127.0.0.1:9".into()];
            s.providers.insert(
                PROVIDER.into(),
                ProviderSettings {
                    kind: Some("oauth2".into()),
                    authorize_url: Some(format!("{issuer}/auth")),
                    token_url: Some(format!("{issuer}/token")),
                    revoke_url: Some(format!("{issuer}/token/revocation")),
                    client_id: Some(client.id.into()),
                    client_secret: Some(SecretString::from(CLIENT_SECRET)),
                    auth_method: Some(client.auth_method_setting().into()),
                    scopes: vec!["openid".into(), "offline_access".into()],
                    // Without prompt=consent oidc-provider drops offline_access (OIDC Core §11).
                    extra_authorize_params: [("prompt".to_owned(), "consent".to_owned())].into(),
                    pkce: Some(true),
                    // oidc-provider sends RFC 9207's `iss` on every authorization response.
                    issuer: Some(issuer.clone()),
                    ..Default::default()
                },
            );
        })
        .await;
        assert_eq!(app.base, public_url);
        Self {
            app,
            provider,
            client,
            callback,
            http: Client::builder()
                .redirect(redirect::Policy::none())
                .timeout(TIMEOUT)
                .build()
                .unwrap(),
        }
    }

    /// Logs `user` in like a browser would: the broker's authorize endpoint (as a caller with
    /// `tokens:write`), the provider's login and consent hops with a fresh cookie jar, then the
    /// broker's callback. Returns the callback URL the provider sent the browser to and the
    /// broker's answer to it.
    async fn login(&self, user: &str, return_to: Option<&str>) -> (String, Response) {
        let mut params = vec![("provider", PROVIDER), ("user_name", user)];
        params.extend(return_to.map(|r| ("return_to", r)));
        let start = self
            .app
            .authorize(&self.app.jwt("tokens:write"), &client::query(&params))
            .await;
        // 302 Found, as API.md says: to the connect link, which binds the login to the browser
        // that opens it.
        assert_eq!(start.status(), StatusCode::FOUND, "authorize");
        let browser = Client::builder()
            .cookie_store(true)
            .redirect(redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .unwrap();
        let opened = browser.get(location(&start)).send().await.unwrap();
        assert_eq!(opened.status(), StatusCode::FOUND, "the connect link");

        // The broker sends the browser to the provider with state, PKCE S256 and the settings.
        let mut at = location(&opened);
        assert!(at.starts_with(&self.provider.url("/auth?")), "{at}");
        let authorize = query_of(&at);
        assert_eq!(authorize["response_type"], "code");
        assert_eq!(authorize["client_id"], self.client.id);
        assert_eq!(authorize["redirect_uri"], self.callback);
        assert_eq!(authorize["scope"], "openid offline_access");
        assert_eq!(authorize["code_challenge_method"], "S256");
        assert_eq!(authorize["code_challenge"].len(), 43);
        assert_eq!(authorize["login_hint"], user);
        assert_eq!(authorize["prompt"], "consent");
        assert!(!authorize.contains_key("code_verifier"));
        let state = authorize["state"].clone();

        // The provider's interaction: /auth → /interaction/<uid> → /auth/<uid> → redirect_uri.
        for _ in 0..8 {
            if at.starts_with(&self.callback) {
                break;
            }
            let hop = browser.get(&at).send().await.unwrap();
            if !hop.status().is_redirection() {
                let status = hop.status();
                panic!("{at} answered {status}: {}", hop.text().await.unwrap());
            }
            at = location(&hop);
        }
        assert!(at.starts_with(&format!("{}?", self.callback)), "{at}");
        let back = query_of(&at);
        assert_eq!(back["state"], state);
        assert_eq!(back["iss"], self.provider.issuer, "RFC 9207 iss");
        assert!(back.contains_key("code"), "{at}");

        let answer = browser.get(&at).send().await.unwrap();
        (at, answer)
    }

    /// Logs `user` in and returns the stored token (with secrets).
    async fn connect(&self, user: &str) -> Value {
        let (_, page) = self.login(user, None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_html(&page);
        let html = page.text().await.unwrap();
        assert!(html.contains("Account connected"), "{html}");
        let token = self.stored(user).await;
        assert!(html.contains(user), "{html}");
        token
    }

    /// The stored token of `user`, secrets included (`POST /v1/tokens/find`).
    async fn stored(&self, user: &str) -> Value {
        let r = self
            .app
            .find(
                &self.app.jwt("tokens:read tokens:secrets"),
                &json!({ "user_name": user }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// `GET /v1/tokens/{id}/access-token` as a caller with `tokens:access`.
    async fn access_token(&self, id: &str) -> Value {
        let r = self
            .app
            .access_token(&self.app.jwt("tokens:access"), id, "")
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// `POST /v1/tokens/{id}/refresh` as a caller with `tokens:write`.
    async fn refresh(&self, id: &str) -> Value {
        let r = self.app.refresh(&self.app.jwt("tokens:write"), id).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// `POST /v1/tokens/{id}/revoke` as a caller with `tokens:write`.
    async fn revoke(&self, id: &str) -> StatusCode {
        self.app
            .revoke(&self.app.jwt("tokens:write"), id)
            .await
            .status()
    }

    /// The provider's userinfo answer for an access token.
    async fn userinfo(&self, access_token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.provider.url("/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// Panics unless the provider accepts `access_token` as `user`'s.
    async fn assert_works(&self, access_token: &str, user: &str) {
        let (status, body) = self.userinfo(access_token).await;
        assert_eq!(status, StatusCode::OK, "userinfo: {body}");
        assert_eq!(body["sub"], user);
    }

    /// A refresh at the provider's token endpoint, bypassing the broker.
    async fn refresh_at_provider(&self, refresh_token: &str) -> (StatusCode, Value) {
        let request = self.http.post(self.provider.url("/token"));
        let form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let r = self
            .client
            .authenticate(request, form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

fn assert_html(answer: &Response) {
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_access_refresh_rotation_and_revoke_with_client_secret_basic() {
    let it = Interop::start(BASIC_CLIENT, 3600).await;

    // A browser login through the broker stores alice's token.
    let (callback_url, page) = it.login(ALICE, None).await;
    let status = page.status();
    if status != StatusCode::OK {
        panic!("{status}: {}", page.text().await.unwrap());
    }
    assert_html(&page);
    let html = page.text().await.unwrap();
    assert!(html.contains("Account connected"), "{html}");
    let token = it.stored(ALICE).await;
    let id = str_of(&token, "id").to_owned();
    assert!(html.contains(ALICE), "{html}");
    assert_eq!(token["provider"], PROVIDER);
    assert_eq!(token["status"], "active");
    assert_eq!(token["user_name"], ALICE);
    assert_eq!(token["client_id"], BASIC_CLIENT.id);
    assert_eq!(
        token["client_secret"],
        Value::Null,
        "the provider's secret is not copied"
    );
    assert_eq!(token["redirect_url"], it.callback);
    let access = str_of(&token, "access_token").to_owned();
    let refresh = str_of(&token, "refresh_token").to_owned();
    let expiry = token["expiry_time"].as_i64().unwrap();
    let in_an_hour = now_ms() + 3_600_000;
    assert!(
        (in_an_hour - 60_000..=in_an_hour).contains(&expiry),
        "{expiry}"
    );
    it.assert_works(&access, ALICE).await;

    // Replaying the callback URL: the state is used up, so the code never reaches the provider
    // again (oidc-provider would revoke the grant on a code replay) and nothing new is stored.
    let replay = it.http.get(&callback_url).send().await.unwrap();
    let status = replay.status();
    assert_html(&replay);
    let html = replay.text().await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("already used"), "{html}");
    assert_eq!(it.app.count().await, 1);
    assert_eq!(it.stored(ALICE).await, token);
    it.assert_works(&access, ALICE).await;

    // The stored access token is valid for an hour: handed out as is, no refresh.
    let handed = it.access_token(&id).await;
    assert_eq!(handed["access_token"], access.as_str());
    assert_eq!(handed["token_type"], "Bearer");
    assert_eq!(handed["expiry_time"], expiry);
    let expires_in = handed["expires_in"].as_i64().unwrap();
    assert!((3500..=3600).contains(&expires_in), "{expires_in}");
    assert_eq!(it.stored(ALICE).await["refresh_token"], refresh.as_str());

    // A forced refresh: a new access token, and the rotated refresh token is stored.
    let first = it.refresh(&id).await;
    let access_1 = str_of(&first, "access_token").to_owned();
    assert_ne!(access_1, access);
    assert_eq!(first["token_type"], "Bearer");
    let stored_1 = it.stored(ALICE).await;
    assert_eq!(stored_1["access_token"], access_1.as_str());
    assert_eq!(stored_1["expiry_time"], first["expiry_time"]);
    let refresh_1 = str_of(&stored_1, "refresh_token").to_owned();
    assert_ne!(refresh_1, refresh, "oidc-provider rotates refresh tokens");
    it.assert_works(&access_1, ALICE).await;

    // Again: only works if the broker sends the rotated refresh token (reusing the first one
    // would be invalid_grant, and oidc-provider would revoke the whole grant).
    let second = it.refresh(&id).await;
    let access_2 = str_of(&second, "access_token").to_owned();
    assert_ne!(access_2, access_1);
    let stored_2 = it.stored(ALICE).await;
    assert_eq!(stored_2["access_token"], access_2.as_str());
    assert_eq!(stored_2["status"], "active");
    let refresh_2 = str_of(&stored_2, "refresh_token").to_owned();
    assert_ne!(refresh_2, refresh_1);
    it.assert_works(&access_2, ALICE).await;
    assert_eq!(
        it.access_token(&id).await["access_token"],
        access_2.as_str()
    );

    // Revoke: revoked at the provider, then deleted.
    assert_eq!(it.revoke(&id).await, StatusCode::NO_CONTENT);
    let gone = it.app.get_token(&it.app.admin(), &id).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(it.app.count().await, 0);
    // Revoking the refresh token revoked the grant: its access tokens are dead too ...
    let (status, body) = it.userinfo(&access_2).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    // ... and the provider no longer accepts the last refresh token.
    let (status, body) = it.refresh_at_provider(&refresh_2).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_when_asked_for() {
    // Access tokens live 2 s at the provider.
    let it = Interop::start(BASIC_CLIENT, 2).await;
    let token = it.connect(ALICE).await;
    let id = str_of(&token, "id");
    let expired = str_of(&token, "access_token");
    let refresh = str_of(&token, "refresh_token");

    // Wait (bounded) until the provider itself rejects the stored access token.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = it.userinfo(expired).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["error"], "invalid_token");
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(Instant::now() < deadline, "the access token never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The caller just asks for an access token: the broker refreshes first.
    let handed = it.access_token(id).await;
    let fresh = str_of(&handed, "access_token");
    assert_ne!(fresh, expired);
    assert!(handed["expires_in"].as_i64().unwrap() <= 2, "{handed}");
    it.assert_works(fresh, ALICE).await;
    let stored = it.stored(ALICE).await;
    assert_eq!(stored["access_token"], fresh);
    assert_eq!(stored["status"], "active");
    assert_ne!(
        stored["refresh_token"], refresh,
        "the rotated refresh token is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_return_to_refresh_and_revoke_with_client_secret_post() {
    let it = Interop::start(POST_CLIENT, 3600).await;

    // With return_to, the callback sends the browser back there with the new token's id.
    let return_to = "http://127.0.0.1:9/after-login?from=interop";
    let (_, answer) = it.login(ALICE, Some(return_to)).await;
    assert!(answer.status().is_redirection(), "{}", answer.status());
    let back = location(&answer);
    assert!(
        back.starts_with("http://127.0.0.1:9/after-login?"),
        "{back}"
    );
    let back = query_of(&back);
    assert_eq!(back["from"], "interop");
    assert_eq!(back["status"], "connected");
    let id = back["token_id"].clone();

    let first = it.stored(ALICE).await;
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["provider"], PROVIDER);
    assert_eq!(first["status"], "active");
    assert_eq!(first["client_id"], POST_CLIENT.id);

    // Logging the same user in again (a new browser) replaces the stored token in place.
    let (_, again) = it.login(ALICE, Some(return_to)).await;
    assert_eq!(query_of(&location(&again))["token_id"], id);
    assert_eq!(it.app.count().await, 1);
    let token = it.stored(ALICE).await;
    assert_eq!(token["id"], id.as_str());
    assert_eq!(token["created_at"], first["created_at"]);
    assert_ne!(token["access_token"], first["access_token"]);
    assert_ne!(token["refresh_token"], first["refresh_token"]);
    let access = str_of(&token, "access_token");
    let refresh = str_of(&token, "refresh_token");
    it.assert_works(access, ALICE).await;

    // A refresh with client_secret_post (the harness refuses Basic for this client).
    let refreshed = it.refresh(&id).await;
    let access_1 = str_of(&refreshed, "access_token");
    assert_ne!(access_1, access);
    it.assert_works(access_1, ALICE).await;
    let stored = it.stored(ALICE).await;
    assert_eq!(stored["access_token"], access_1);
    assert_ne!(stored["refresh_token"], refresh);

    // The revocation call authenticates the same way: the grant is gone at the provider.
    assert_eq!(it.revoke(&id).await, StatusCode::NO_CONTENT);
    assert_eq!(it.app.count().await, 0);
    let (status, body) = it.userinfo(access_1).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = it
        .refresh_at_provider(str_of(&stored, "refresh_token"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}
