//! The binary itself: config errors at start, `migrate`, `jwt mint`, and no secret in its log.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app_with, Backend};

const BIN: &str = env!("CARGO_BIN_EXE_token-broker");

fn broker(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env("TOKEN_BROKER_CONFIG_DIR", dir)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("TOKEN_BROKER__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[test]
fn a_bad_config_value_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = broker(dir.path())
        .env("TOKEN_BROKER__SERVER__PORT", "eighty")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.port"), "{err}");

    let out = broker(dir.path())
        .env("TOKEN_BROKER__DATABASE__URL", "oracle://db")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));

    let out = broker(dir.path())
        .env("TOKEN_BROKER__SERVER__COLOUR", "blue")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
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
    assert_eq!(app.list(&jwt, "").await.status(), StatusCode::OK);
    assert_eq!(
        app.delete_all(&jwt, "?confirm=all").await.status(),
        StatusCode::FORBIDDEN
    );
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

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/readyz"))
            .send()
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
    let r = client
        .put(format!("{base}/v1/tokens"))
        .bearer_auth(&jwt)
        .json(&json!({ "user_name": "log@example.com", "client_secret": secrets[0], "refresh_token": secrets[1], "access_token": secrets[2], "grant_token": secrets[3] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(format!("{base}/v1/tokens/find"))
        .bearer_auth(&jwt)
        .json(&json!({ "refresh_token": secrets[1], "client_id": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let _ = client
        .put(format!("{base}/v1/tokens"))
        .bearer_auth(&jwt)
        .json(&json!({ "user_name": "log@example.com", "expiry_time": secrets[2] }))
        .send()
        .await
        .unwrap();

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
