//! The Python adapter (`clients/python`, a Zoho CRM SDK `TokenStore` backed by the broker): its
//! pytest suite runs against a real broker started here, through `clients/python/run-tests.sh`
//! (which sets up `target/python-venv` with the pinned Zoho SDK from PyPI on first use).
//!
//! Set `TB_TEST_SKIP_PYTHON=1` to skip it on a machine without python3 or PyPI.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{spawn_app, Backend};

/// A fresh venv takes about 20 s with PyPI at hand; allow for a slow index.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(540);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_token_store_passes_its_suite_against_the_broker() {
    if std::env::var_os("TB_TEST_SKIP_PYTHON").is_some() {
        eprintln!("TB_TEST_SKIP_PYTHON is set: skipping the Python adapter suite");
        return;
    }
    let app = spawn_app(Backend::Sqlite).await;
    let jwt = app.jwt("tokens:read tokens:write tokens:secrets tokens:admin");
    let root = env!("CARGO_MANIFEST_DIR");

    // tokio's process API keeps the runtime (and so the in-process broker) serving meanwhile.
    let child = tokio::process::Command::new("bash")
        .arg("clients/python/run-tests.sh")
        .arg("-rA")
        .current_dir(root)
        .env("TOKEN_BROKER_URL", &app.address)
        .env("TOKEN_BROKER_JWT", &jwt)
        // A broker of its own: the delete_tokens test may delete everything.
        .env("TOKEN_BROKER_TEST_DELETE_ALL", "1")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs clients/python/run-tests.sh");
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("run-tests.sh did not finish within {SCRIPT_TIMEOUT:?}"))
        .expect("run-tests.sh ran");

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        out.status.success(),
        "run-tests.sh failed ({})\n{report}",
        out.status
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary line\n{report}"));
    assert!(
        !summary.contains("skipped") && !summary.contains("failed") && !summary.contains("error"),
        "every test must run and pass: {summary}\n{report}"
    );
    app.stop().await;
}
