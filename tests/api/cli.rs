//! The binary itself: config errors at start, `migrate`, `jwt mint`, and no secret in its log.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::client::ApiClient;
use crate::helpers::{spawn_app_with, Backend};
use crate::processes::{clean_command, config_with_keys, BrokerCli};

/// The binary with no configuration but the built-in defaults, working in `dir`.
fn broker(dir: &std::path::Path) -> Command {
    let mut cmd = clean_command();
    cmd.current_dir(dir).env("TOKEN_BROKER_CONFIG_DIR", dir);
    cmd
}

/// The exit code of invalid configuration (README: exit codes).
const EXIT_CONFIG: i32 = 78;

#[test]
fn a_bad_config_value_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for (var, value, named) in [
        ("TOKEN_BROKER__SERVER__PORT", "eighty", "server.port"),
        ("TOKEN_BROKER__DATABASE__URL", "oracle://db", "database.url"),
        ("TOKEN_BROKER__SERVER__COLOUR", "blue", "colour"),
        (
            "TOKEN_BROKER__AUDIT__READ_WINDOW_MS",
            "0",
            "audit.read_window_ms",
        ),
        // A log filter that does not parse fails instead of silently logging something else.
        ("TOKEN_BROKER__LOG__FILTER", "info,[[[", "log.filter"),
        // Weak secrets: 32 spaces, a repeated pattern, an all-zero encryption key.
        (
            "TOKEN_BROKER__AUTH__HS256_SECRET",
            "                                ",
            "auth.hs256_secret",
        ),
        (
            "TOKEN_BROKER__AUTH__HS256_SECRET",
            "abababababababababababababababab",
            "auth.hs256_secret",
        ),
        ("TOKEN_BROKER__CRYPTO__KEYS__K1", zeros, "crypto.keys.k1"),
        (
            "TOKEN_BROKER__SERVER__TLS__CERT_FILE",
            "/nonexistent/cert.pem",
            "server.tls",
        ),
    ] {
        let mut cmd = broker(dir.path());
        if var.starts_with("TOKEN_BROKER__CRYPTO__") {
            cmd.env("TOKEN_BROKER__CRYPTO__ACTIVE_KEY_ID", "k1").env(
                "TOKEN_BROKER__CRYPTO__LOOKUP_KEY",
                crate::helpers::expose(&token_broker::crypto::generate_key()),
            );
        }
        if var == "TOKEN_BROKER__SERVER__TLS__CERT_FILE" {
            cmd.env(
                "TOKEN_BROKER__SERVER__TLS__KEY_FILE",
                "/nonexistent/key.pem",
            );
        }
        let out = cmd.env(var, value).arg("serve").output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(EXIT_CONFIG),
            "{var}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{var}: {err}");
    }
}

#[test]
fn migrate_prepares_an_empty_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = broker(dir.path())
        .env("TOKEN_BROKER__DATABASE__URL", "sqlite://broker.db?mode=rwc")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("broker.db").exists());
}

#[tokio::test]
async fn jwt_mint_prints_a_token_the_service_accepts() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = crate::helpers::expose(&app.settings.auth.hs256_secret).to_owned();
    let out = broker(dir.path())
        .env("TOKEN_BROKER__AUTH__HS256_SECRET", &secret)
        .args([
            "jwt",
            "mint",
            "--sub",
            "ops",
            "--scope",
            "tokens:read tokens:write",
            "--ttl",
            "60",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // Without --tenant the JWT may act on every tenant, and the command says so.
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("EVERY tenant"), "{note}");
    assert_eq!(claims_of(&jwt)["tenant"], "*");
    assert_eq!(app.list(&jwt, "").await.status(), StatusCode::OK);
    assert_eq!(
        app.delete_all(&jwt, "?confirm=all").await.status(),
        StatusCode::FORBIDDEN
    );

    // With --tenant it is confined, and nothing is said.
    let out = broker(dir.path())
        .env("TOKEN_BROKER__AUTH__HS256_SECRET", &secret)
        .args(["jwt", "mint", "--sub", "acme-app", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("EVERY tenant"));
    let jwt = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(claims_of(&jwt)["tenant"], "acme");
    // A tenant that is not a name: the command fails (exit 1).
    let out = broker(dir.path())
        .env("TOKEN_BROKER__AUTH__HS256_SECRET", &secret)
        .args(["jwt", "mint", "--sub", "x", "--tenant", "not a tenant"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// The claims of a JWT, unverified (the test only reads what was minted).
fn claims_of(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `cargo run` with no configuration: SQLite in the working directory, a key file created with
/// mode 0600, and — with debug logging on — no secret anywhere in the log.
#[tokio::test]
async fn the_default_setup_runs_and_never_logs_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = broker(dir.path())
        .env("TOKEN_BROKER__SERVER__PORT", port.to_string())
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });

    let api = ApiClient::new(format!("http://127.0.0.1:{port}"));
    let mut ready = false;
    for _ in 0..100 {
        if api
            .readyz()
            .try_send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the broker did not become ready");
    let key_file = dir.path().join("token-broker.keys.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(dir.path().join("token-broker.db").exists());

    let out = broker(dir.path())
        .args([
            "jwt",
            "mint",
            "--sub",
            "ops",
            "--scope",
            "tokens:read tokens:write tokens:secrets",
        ])
        .output()
        .unwrap();
    let jwt = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let secrets = [
        "LOGCHECK-client-secret",
        "LOGCHECK-refresh",
        "LOGCHECK-access",
        "LOGCHECK-grant",
    ];
    let r = api
        .save(&jwt, &json!({ "user_name": "log@example.com", "client_secret": secrets[0], "refresh_token": secrets[1], "access_token": secrets[2], "grant_token": secrets[3] }))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = api
        .find(
            &jwt,
            &json!({ "refresh_token": secrets[1], "client_id": "x" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let _ = api
        .save(
            &jwt,
            &json!({ "user_name": "log@example.com", "expiry_time": secrets[2] }),
        )
        .await;

    unsafe_kill_term(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let log = log.join().unwrap();
    assert!(log.contains("token-broker listening"), "{log}");
    assert!(log.contains("PUT"), "requests are logged");
    for s in secrets.iter().chain([jwt.as_str()].iter()) {
        assert!(!log.contains(s), "a secret reached the log");
    }
    let keys = std::fs::read_to_string(&key_file).unwrap();
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert!(!log.contains(keys["keys"]["local-1"].as_str().unwrap()));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unsafe_kill_term(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Key rotation: add a key, make it active, re-encrypt; then the old key can go.
#[tokio::test]
async fn keys_rotate_reencrypts_every_token_and_the_old_key_can_go() {
    use secrecy::ExposeSecret;
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    for i in 0..3 {
        app.seed(json!({ "user_name": format!("rot{i}@example.com"), "refresh_token": format!("ROT-RT-{i}"), "client_secret": "ROT-CS" }))
            .await;
    }
    let old_key = (
        "test-1".to_owned(),
        app.settings.crypto.keys["test-1"]
            .expose_secret()
            .to_owned(),
    );
    let new_key = (
        "k2".to_owned(),
        token_broker::crypto::generate_key()
            .expose_secret()
            .to_owned(),
    );
    // Step 1: the new key is configured and active, the old one still there to read old rows.
    let cli = BrokerCli::with_config(&config_with_keys(
        &app.settings,
        "k2",
        &[old_key, new_key.clone()],
    ));
    cli.run(&["keys", "rotate"])
        .await
        .assert_code(0)
        .assert_stdout("re-encrypted 3 token(s) under key `k2`; 0 already used it")
        .assert_no_secret(&["ROT-RT-", "ROT-CS", &new_key.1]);
    assert!(app.raw_rows().await.iter().all(|r| r.key_id == "k2"));
    cli.run(&["keys", "rotate"])
        .await
        .assert_stdout("re-encrypted 0 token(s) under key `k2`; 3 already used it");

    // Step 2: without the old key, every token still decrypts and can be found by value.
    let cli = BrokerCli::with_config(&config_with_keys(&app.settings, "k2", &[new_key]));
    cli.run(&["tokens", "list"])
        .await
        .assert_code(0)
        .assert_stdout("3 token(s)")
        .assert_no_secret(&["ROT-"]);
    let broker = cli.serve(&[]).await;
    let jwt = token_broker::auth::mint(
        &app.settings.auth.hs256_secret,
        &token_broker::auth::MintRequest {
            sub: "t".into(),
            scope: "tokens:read tokens:secrets".into(),
            tenant: token_broker::auth::ALL_TENANTS.into(),
            ttl_secs: 60,
            issuer: None,
            audience: None,
        },
    )
    .unwrap();
    let found: serde_json::Value = broker
        .find(&jwt, &json!({ "refresh_token": "ROT-RT-1" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["user_name"], "rot1@example.com");
    assert_eq!(found["client_secret"], "ROT-CS");
}

/// SIGTERM lets a request in flight finish (here one waiting on a slow provider), then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight() {
    use crate::fake_provider::{grant, FakeProvider};
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-after-sigterm", None, 3600), 1500)
        .await;
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let config = format!(
        "{}[providers.fake]\nkind = 'oauth2'\nauthorize_url = '{uri}/authorize'\ntoken_url = '{uri}/token'\nclient_id = 'c'\nclient_secret = 's'\n",
        crate::processes::shared_config(&app.settings),
        uri = fake.uri()
    );
    let cli = BrokerCli::with_config(&config);
    let mut broker = cli
        .serve(&[("TOKEN_BROKER__OAUTH__BACKGROUND__ENABLED", "false")])
        .await;
    let jwt = app.jwt("tokens:write tokens:access");
    let saved: serde_json::Value = broker
        .save(&jwt, &json!({ "user_name": "slow@example.com", "provider": "fake", "refresh_token": "rt", "access_token": "at", "expiry_time": 1 }))
        .await
        .json()
        .await
        .unwrap();
    let call = broker.access_token(&jwt, saved["id"].as_str().unwrap(), "");
    let in_flight = tokio::spawn(call.try_send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = broker.terminate().await;
    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in flight got an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap()["access_token"],
        "at-after-sigterm"
    );
    assert!(status.success(), "exit status {status}");
    assert!(broker.log().contains("shutting down"));
}

/// One switch turns the log into JSON lines.
#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let cli = BrokerCli::with_config(&crate::processes::shared_config(&app.settings));
    let mut broker = cli.serve(&[("TOKEN_BROKER__LOG__FORMAT", "json")]).await;
    broker.healthz().await;
    assert!(broker.terminate().await.success());
    let log = broker.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(log.contains("/healthz"));
}
