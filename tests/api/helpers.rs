//! Test harness: start the real application on a random port with a fresh database of the chosen
//! backend, and talk to it like a caller would (through [`ApiClient`], which [`TestApp`] derefs to).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::Connection;
use token_broker::auth::{mint, MintRequest};
use token_broker::clock::{Clock, ManualClock, SystemClock};
use token_broker::config::Settings;
use token_broker::crypto::generate_key;
use token_broker::store::{ListFilter, Store, TenantFilter, TokenRow};
use token_broker::Application;

use crate::client::ApiClient;

/// The database a test runs against: the broker's own enum, so a test's backend and the URL the
/// broker parses can't disagree.
pub use token_broker::store::Backend;

/// What tests add to [`Backend`].
pub trait BackendExt {
    /// Backends can be narrowed with `TB_TEST_BACKENDS=sqlite,postgres` (default: all three).
    fn enabled(self) -> bool;
}

impl BackendExt for Backend {
    fn enabled(self) -> bool {
        match std::env::var("TB_TEST_BACKENDS") {
            Ok(list) if !list.trim().is_empty() => list.split(',').any(|b| b.trim() == self.name()),
            _ => true,
        }
    }
}

/// `TEST_LOG=1`: the broker logs to the test's output (see tests/api/main.rs).
pub fn test_log() -> bool {
    std::env::var_os("TEST_LOG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// With `TEST_LOG=1`, installs a subscriber that writes the in-process broker's log to the
/// test's captured output (filtered by `RUST_LOG`, default `info`); once per test binary, as a
/// global subscriber can only be set once. Without it nothing is installed and tests stay quiet.
fn init_test_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    if !test_log() {
        return;
    }
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber already set (none is today) keeps its place.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Runs a test body once per backend, as `<module>::<backend>::<test>`.
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() {
                   if $crate::helpers::BackendExt::enabled($crate::helpers::Backend::Sqlite) {
                       super::$test($crate::helpers::Backend::Sqlite).await
                   }
               } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() {
                   if $crate::helpers::BackendExt::enabled($crate::helpers::Backend::Postgres) {
                       super::$test($crate::helpers::Backend::Postgres).await
                   }
               } )*
        }
        mod mysql {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() {
                   if $crate::helpers::BackendExt::enabled($crate::helpers::Backend::MySql) {
                       super::$test($crate::helpers::Backend::MySql).await
                   }
               } )*
        }
    };
}

pub fn postgres_admin_url() -> String {
    std::env::var("TB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_admin_url() -> String {
    std::env::var("TB_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL with a path");
    format!("{base}/{db}")
}

/// A database of its own for one test: a temp SQLite file, or a new PostgreSQL/MySQL database.
#[derive(Clone)]
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Arc<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = format!("tb_test_{}", uuid_simple());
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}/broker.db?mode=rwc", dir.path().display()),
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 (start it with .ci/run)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                with_database(&admin, &name)
            }
            Backend::MySql => {
                let admin = mysql_admin_url();
                let mut conn = sqlx::MySqlConnection::connect(&admin)
                    .await
                    .expect("MariaDB on 127.0.0.1:3306 (start it with .ci/run)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                with_database(&admin, &name)
            }
        };
        Self {
            url,
            backend,
            _dir: Arc::new(dir),
        }
    }
}

pub fn uuid_simple() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    hex::encode(bytes)
}

/// Settings for a test app: random port, the given database, fresh keys, a known HS256 secret.
pub fn test_settings(db_url: &str) -> Settings {
    let mut s = Settings::defaults();
    s.server.port = 0;
    s.database.url = SecretString::from(db_url.to_owned());
    s.database.max_connections = 10;
    s.crypto.keys = BTreeMap::from([("test-1".to_string(), generate_key())]);
    s.crypto.active_key_id = "test-1".into();
    s.crypto.lookup_key = generate_key();
    s.auth.hs256_secret = SecretString::from(format!("test-hs256-secret-{}", uuid_simple()));
    // Tests talk only to 127.0.0.1: the built-in Zoho data centers point at a closed local port
    // unless a test points one at its fake provider.
    for (key, _) in token_broker::oauth::providers::ZOHO_DATA_CENTERS {
        s.providers.insert(
            key.to_owned(),
            token_broker::config::ProviderSettings {
                accounts_url: Some("http://127.0.0.1:9".into()),
                ..Default::default()
            },
        );
    }
    s.oauth.background.enabled = false;
    s
}

/// A running broker and a client for it: `app.save(…)`, `app.refresh(…)`, `app.base`, … are
/// the [`ApiClient`]'s, so the same calls read the same against a `serve` process.
pub struct TestApp {
    pub api: ApiClient,
    pub settings: Settings,
    pub db: TestDatabase,
    pub clock: ManualClock,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the app after `configure` adjusted its settings. Time is the wall clock unless the
/// test uses [`spawn_app_with_clock`].
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    start(backend, configure, None).await
}

/// Starts the app on a clock the test moves.
pub async fn spawn_app_with_clock(
    backend: Backend,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let clock = ManualClock::new(SystemClock.now_ms());
    start(backend, configure, Some(clock)).await
}

async fn start(
    backend: Backend,
    configure: impl FnOnce(&mut Settings),
    manual: Option<ManualClock>,
) -> TestApp {
    let db = TestDatabase::new(backend).await;
    let mut settings = test_settings(&db.url);
    configure(&mut settings);
    launch(settings, db, manual).await
}

async fn launch(settings: Settings, db: TestDatabase, manual: Option<ManualClock>) -> TestApp {
    init_test_log();
    let clock_for_app: Arc<dyn Clock> = match &manual {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };
    let app = Application::build_with_clock(&settings, clock_for_app)
        .await
        .expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let _ = app
            .run_until(async move {
                let _ = rx.await;
            })
            .await;
    });
    TestApp {
        api: ApiClient::new(address),
        settings,
        db,
        clock: manual.unwrap_or_else(|| ManualClock::new(0)),
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

/// Every scope.
pub const ALL_SCOPES: &str = "tokens:read tokens:access tokens:write tokens:secrets tokens:admin";

impl TestApp {
    /// A caller JWT with these scopes, for every tenant (`"tenant": "*"`).
    pub fn jwt(&self, scopes: &str) -> String {
        self.jwt_for("test-caller", scopes, None)
    }

    pub fn jwt_for(&self, sub: &str, scopes: &str, tenant: Option<&str>) -> String {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        mint(
            &self.settings.auth.hs256_secret,
            &MintRequest {
                sub: sub.into(),
                scope: scopes.into(),
                tenant: tenant.unwrap_or(token_broker::auth::ALL_TENANTS).into(),
                ttl_secs: 600,
                issuer: non_empty(&self.settings.auth.issuer),
                audience: non_empty(&self.settings.auth.audience),
            },
        )
        .unwrap()
    }

    /// The admin JWT most tests use: every scope, every tenant.
    pub fn admin(&self) -> String {
        self.jwt(ALL_SCOPES)
    }

    /// Saves a token as admin and returns its stored JSON (panics unless 200/201).
    pub async fn seed(&self, body: Value) -> Value {
        let r = self.save(&self.admin(), &body).await;
        assert!(
            r.status() == StatusCode::CREATED || r.status() == StatusCode::OK,
            "seed failed: {}",
            r.status()
        );
        r.json().await.unwrap()
    }

    /// How many tokens are stored, across tenants.
    pub async fn count(&self) -> usize {
        self.raw_rows().await.len()
    }

    /// The rows exactly as the database holds them (ciphertexts, hashes), read directly.
    pub async fn raw_rows(&self) -> Vec<TokenRow> {
        let store = Store::connect(&self.db.url, &Default::default()).unwrap();
        let rows = store
            .list_tokens(
                &TenantFilter::Any,
                &ListFilter {
                    limit: 100_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        store.close().await;
        rows
    }

    /// How many audit rows are stored, read directly.
    pub async fn raw_audit_count(&self) -> usize {
        self.raw_audit_times().await.len()
    }

    /// The `at` of every stored audit row, read directly.
    pub async fn raw_audit_times(&self) -> Vec<i64> {
        let store = Store::connect(&self.db.url, &Default::default()).unwrap();
        let rows = store
            .list_audit(&token_broker::store::AuditFilter {
                limit: 100_000,
                ..Default::default()
            })
            .await
            .unwrap();
        store.close().await;
        rows.into_iter().map(|r| r.at).collect()
    }

    /// Writes audit rows recorded at these times directly (as an older broker would have).
    pub async fn insert_audit_rows(&self, times: &[i64]) {
        let store = Store::connect(&self.db.url, &Default::default()).unwrap();
        let rows: Vec<_> = times
            .iter()
            .map(|at| token_broker::store::AuditRow {
                id: uuid::Uuid::now_v7().to_string(),
                at: *at,
                caller: "old-caller".into(),
                tenant: String::new(),
                token_id: None,
                action: "get_token".into(),
                outcome: "ok".into(),
                status: 200,
                detail: None,
                request_id: None,
                occurrences: 1,
                last_at: None,
                source: None,
            })
            .collect();
        store.insert_audit(&rows).await.unwrap();
        store.close().await;
    }

    /// A second broker on the same database, keys and settings, as another replica behind a load
    /// balancer would be.
    pub async fn replica(&self) -> TestApp {
        launch(self.settings.clone(), self.db.clone(), None).await
    }

    /// A replica whose settings `configure` adjusts (e.g. the one replica running a job).
    pub async fn replica_with(&self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        launch(settings, self.db.clone(), None).await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl std::ops::Deref for TestApp {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// The body of an error answer, checked for the contract's shape.
pub async fn error_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = r.json().await.expect("error answers are JSON");
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    assert!(body["error"].is_string(), "no error code in {body}");
    assert!(body["message"].is_string(), "no message in {body}");
    (status, body)
}

/// Expose a secret string for assertions.
pub fn expose(s: &SecretString) -> &str {
    s.expose_secret()
}

/// The wall clock in epoch milliseconds, as the broker stores expiry times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// The access token of `id`, asked for with the `tokens:access` scope.
pub async fn access(app: &TestApp, id: &str, query: &str) -> Response {
    app.access_token(&app.jwt("tokens:access"), id, query).await
}

/// Token `id` as stored, secrets included.
pub async fn stored(app: &TestApp, id: &str) -> Value {
    app.get_token(&app.jwt("tokens:read tokens:secrets"), id)
        .await
        .json()
        .await
        .unwrap()
}

/// An ES256 signing key made for a test, with its public JWK (`kid`, `alg`, `use` set): what a
/// fake identity provider publishes in its JWKS.
pub struct Es256Key {
    pub encoding: jsonwebtoken::EncodingKey,
    pub jwk: Value,
}

impl Es256Key {
    pub fn new(kid: &str) -> Self {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
        use base64::Engine;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        Self {
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: serde_json::json!({ "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                                     "use": "sig", "x": B64URL.encode(&public[1..33]),
                                     "y": B64URL.encode(&public[33..65]) }),
        }
    }

    /// A JWT of `claims` signed with this key, its `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = self.jwk["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}
