//! The Zoho SDK adapters (`clients/python` for `zohocrmsdkN-0`, `clients/node` for
//! `@zohocrm/nodejs-sdk-8.0`): each one's own suite runs the real SDK, from PyPI or npm, against a
//! broker started here whose `zoho-us` provider talks to the fake Zoho (`tests/fake_zoho`), so
//! nothing leaves the machine. In the broker-managed mode they test, the SDK process holds no
//! client secret or refresh token and never calls Zoho's token endpoint itself.
//!
//! `TB_TEST_SKIP_PYTHON=1` / `TB_TEST_SKIP_NODE=1` skip them on a machine without python3/PyPI or
//! Node.js/npm.

use std::process::Stdio;
use std::time::Duration;

use token_broker::config::ProviderSettings;

use crate::fake_zoho::FakeZoho;
use crate::helpers::{spawn_app_with, Backend, TestApp};

/// A fresh virtualenv or `npm ci` takes 10–30 s with the registry at hand; allow for a slow one.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(540);

/// The JWTs of the suites' env contract (see `clients/*/run-tests.sh`).
fn suite_env(app: &TestApp, fake: &FakeZoho) -> Vec<(&'static str, String)> {
    vec![
        ("TOKEN_BROKER_URL", app.base.clone()),
        (
            "TOKEN_BROKER_JWT",
            app.jwt("tokens:read tokens:access tokens:write"),
        ),
        (
            "TOKEN_BROKER_JWT_STORE",
            app.jwt("tokens:read tokens:write tokens:secrets tokens:admin"),
        ),
        (
            "TOKEN_BROKER_JWT_NO_ACCESS",
            app.jwt("tokens:read tokens:write"),
        ),
        ("FAKE_ZOHO_URL", fake.url.clone()),
        ("TOKEN_BROKER_PROVIDER", "zoho-us".into()),
        // A broker of its own: the delete_tokens test may delete everything.
        ("TOKEN_BROKER_TEST_DELETE_ALL", "1".into()),
    ]
}

/// A broker whose `zoho-us` provider is the fake Zoho, with no background refresh (every
/// refresh the fake sees is one a caller caused).
pub async fn broker_for(fake: &FakeZoho) -> TestApp {
    spawn_app_with(Backend::Sqlite, |s| {
        s.providers.insert(
            "zoho-us".into(),
            ProviderSettings {
                accounts_url: Some(fake.url.clone()),
                ..Default::default()
            },
        );
        s.oauth.background.enabled = false;
    })
    .await
}

async fn run_suite(script: &str, extra_env: &[(&str, &str)]) -> String {
    let fake = FakeZoho::start();
    let app = broker_for(&fake).await;
    // tokio's process API keeps the runtime (and so the in-process broker) serving meanwhile.
    let child = tokio::process::Command::new("bash")
        .arg(script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(suite_env(&app, &fake))
        .envs(extra_env.iter().copied())
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("bash runs {script}: {e}"));
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}"))
        .expect("the suite ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    app.stop().await;
    stdout
}

fn skipped(var: &str) -> bool {
    let skip = std::env::var_os(var).is_some();
    if skip {
        eprintln!("{var} is set: skipping");
    }
    skip
}

async fn python_suite(sdk: &str) {
    if skipped("TB_TEST_SKIP_PYTHON") {
        return;
    }
    let stdout = run_suite("clients/python/run-tests.sh", &[("ZOHO_SDK", sdk)]).await;
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary line\n{stdout}"));
    assert!(
        !summary.contains("skipped") && !summary.contains("failed") && !summary.contains("error"),
        "every test must run and pass: {summary}\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_adapter_passes_its_suite_with_zohocrmsdk8() {
    python_suite("zohocrmsdk8-0==7.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_adapter_passes_its_suite_with_the_older_zohocrmsdk7() {
    python_suite("zohocrmsdk7-0==6.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_adapter_passes_its_suite_with_the_nodejs_sdk8() {
    if skipped("TB_TEST_SKIP_NODE") {
        return;
    }
    run_suite("clients/node/run-tests.sh", &[]).await;
}
