//! The OpenAPI document as a test: schemathesis (`tests/schemathesis/run.sh`, PyPI) generates
//! requests for every operation of the broker's own `/openapi.json` and checks that no answer is a
//! 5xx, breaks its schema, has a content type or a status code the document does not list. Two
//! bounded runs against a `serve` process on SQLite: a JWT with every scope, and a read-only one.
//! `TB_TEST_SKIP_SCHEMATHESIS=1` skips it.

use std::process::Command;

#[tokio::test]
async fn the_api_answers_as_its_openapi_document_says() {
    if std::env::var_os("TB_TEST_SKIP_SCHEMATHESIS").is_some() {
        eprintln!("TB_TEST_SKIP_SCHEMATHESIS is set: schemathesis is skipped");
        return;
    }
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(repo.join("tests/schemathesis/run.sh"))
            .env("TB_BIN", env!("CARGO_BIN_EXE_token-broker"))
            .output()
    })
    .await
    .unwrap()
    .expect("bash runs tests/schemathesis/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found answers the OpenAPI document does not allow ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
}
