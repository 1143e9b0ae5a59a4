//! The proof that an SDK service neither refreshes by itself nor gets its client locked out:
//! 12 threads of the real Python SDK in each of 2 processes, through the broker-managed adapter,
//! against 2 broker processes sharing one database, all starting on an expired access token,
//! make exactly one call to Zoho's token endpoint in total — every call counted, the SDKs'
//! initialisation included, background refresh off — and never an "Access Denied". No answer the
//! adapter receives holds the client secret or the refresh token. The same with the Node SDK.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_zoho::FakeZoho;
use crate::helpers::{now_ms, spawn_app, Backend, TestApp};
use crate::processes::{shared_config, BrokerCli, BrokerProcess};

crate::on_every_backend!(
    python_sdk_threads_in_two_processes_on_two_brokers_refresh_once,
    node_sdk_calls_in_two_processes_on_two_brokers_refresh_once,
);

const CLIENT_ID: &str = "1000.STORMCLIENT";
const CLIENT_SECRET: &str = "storm-client-secret-SECRET";
const REFRESH_TOKEN: &str = "1000.storm-refresh-token-SECRET";
const USER: &str = "storm@example.com";
const SDK_TIMEOUT: Duration = Duration::from_secs(540);

/// The fake with one Zoho self client and its grant; the broker with that grant stored, its
/// access token expired a minute ago; two broker processes on the same database.
async fn setup(backend: Backend) -> (FakeZoho, TestApp, BrokerProcess, BrokerProcess) {
    let fake = FakeZoho::start();
    fake.client(CLIENT_ID, CLIENT_SECRET).await;
    fake.refresh_token(REFRESH_TOKEN, CLIENT_ID, USER).await;
    let app = spawn_app(backend).await;
    app.seed(json!({
        "user_name": USER, "provider": "zoho-us", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN,
        "access_token": "1000.expired-access-token", "expiry_time": now_ms() - 60_000,
        "api_domain": fake.url,
    }))
    .await;
    let config = format!(
        "{}[oauth.background]\nenabled = false\n[providers.zoho-us]\naccounts_url = '{}'\n",
        shared_config(&app.settings),
        fake.url
    );
    let cli = BrokerCli::with_config(&config);
    let one = cli.serve(&[]).await;
    let two = cli.serve(&[]).await;
    // The config folder may go: both processes have read it.
    drop(cli);
    (fake, app, one, two)
}

/// Runs `program args` once per broker, concurrently; each must exit 0 and print its JSON line.
async fn storm(
    app: &TestApp,
    fake: &FakeZoho,
    brokers: [&BrokerProcess; 2],
    program: &str,
    args: &[&str],
) -> Vec<Value> {
    let jwt = app.jwt("tokens:read tokens:access tokens:write");
    let children = brokers.map(|broker| {
        tokio::process::Command::new(program)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("BROKER_URL", &broker.base)
            .env("TOKEN_BROKER_JWT", &jwt)
            .env("USER_NAME", USER)
            .env("FAKE_ZOHO_URL", &fake.url)
            .env("THREADS", "12")
            .env("CALLS", "12")
            .env("FORBIDDEN", format!("{CLIENT_SECRET},{REFRESH_TOKEN}"))
            .env_remove("PYTHONPATH")
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"))
    });
    let outputs = futures::future::join_all(
        children.map(|c| tokio::time::timeout(SDK_TIMEOUT, c.wait_with_output())),
    )
    .await;
    outputs
        .into_iter()
        .map(|out| {
            let out = out.expect("the SDK process finished in time").unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{program} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                out.status
            );
            let line = stdout
                .lines()
                .rev()
                .find(|l| l.starts_with('{'))
                .unwrap_or("");
            serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("no JSON summary\n--- stdout\n{stdout}"))
        })
        .collect()
}

fn assert_one_refresh_and_no_lockout(stats: &Value, summaries: &[Value]) {
    for s in summaries {
        assert_eq!(s["ok"], 12, "{s}");
        assert_eq!(s["leaks"], 0, "{s}");
        assert_eq!(s["errors"], json!([]), "{s}");
    }
    assert_eq!(
        stats["token_calls"], 1,
        "exactly one call to Zoho's token endpoint in all: {stats}"
    );
    assert_eq!(stats["refresh_calls"], 1, "{stats}");
    assert_eq!(stats["access_denied"], 0, "{stats}");
}

/// The Python venv's interpreter for the current SDK (set up on first use).
async fn venv_python() -> String {
    let out = tokio::process::Command::new("bash")
        .arg("clients/python/venv.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "venv.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("venv.sh prints the python path")
        .trim()
        .to_owned()
}

async fn python_sdk_threads_in_two_processes_on_two_brokers_refresh_once(backend: Backend) {
    if std::env::var_os("TB_TEST_SKIP_PYTHON").is_some() {
        return;
    }
    let python = venv_python().await;
    let (fake, app, one, two) = setup(backend).await;
    let summaries = storm(
        &app,
        &fake,
        [&one, &two],
        &python,
        &["clients/python/tests/storm.py"],
    )
    .await;
    for s in &summaries {
        assert_eq!(s["sdk_token_calls"], 0, "the SDK called Zoho itself: {s}");
    }
    assert_one_refresh_and_no_lockout(&fake.stats().await, &summaries);
}

async fn node_sdk_calls_in_two_processes_on_two_brokers_refresh_once(backend: Backend) {
    if std::env::var_os("TB_TEST_SKIP_NODE").is_some() {
        return;
    }
    let install = tokio::process::Command::new("bash")
        .args(["clients/node/run-tests.sh", "--install-only"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        install.status.success(),
        "npm install failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let (fake, app, one, two) = setup(backend).await;
    let summaries = storm(
        &app,
        &fake,
        [&one, &two],
        "node",
        &["clients/node/test/storm.mjs"],
    )
    .await;
    assert_one_refresh_and_no_lockout(&fake.stats().await, &summaries);
}
