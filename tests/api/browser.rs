//! A person's whole login in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/browser/login.mjs`), against the oidc-provider harness with its sign-in and consent
//! pages (`INTERACTIVE=1`) and a broker that knows it as an OpenID Connect provider configured
//! from its issuer alone. The scenarios: connecting an account (desktop and phone screenshots, no
//! request outside the broker), a second login in the same browser that keeps the new grant alive,
//! a denied consent, a link opened twice, a login finished in another browser, a login as another
//! person than the session was for, return_to on success and failure, and the authorize
//! endpoint opened by a person, and the API reference at /docs rendered from the broker alone. Screenshots go to `target/browser-screenshots/<backend>/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use secrecy::SecretString;
use token_broker::config::ProviderSettings;

use crate::helpers::{spawn_app_with, Backend};
use crate::interop::{free_port, OidcProvider};

crate::on_every_backend!(a_person_connects_their_account_in_chromium);

/// The harness's client and secret (see tests/oidc-provider/server.mjs).
const CLIENT_ID: &str = "broker-client";
const CLIENT_SECRET: &str = "s3cr3t +/=&%?";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn a_person_connects_their_account_in_chromium(backend: Backend) {
    if std::env::var_os("TB_TEST_SKIP_BROWSER").is_some() {
        eprintln!("TB_TEST_SKIP_BROWSER is set: the browser tests are skipped");
        return;
    }
    let broker_port = free_port();
    let public_url = format!("http://127.0.0.1:{broker_port}");
    let callback = format!("{public_url}/v1/oauth/callback");
    let provider = tokio::task::spawn_blocking(move || {
        OidcProvider::start_with(&callback, 3600, &[("INTERACTIVE", "1")])
    })
    .await
    .expect("oidc-provider starts");
    let issuer = provider.issuer.clone();
    let return_to_base = format!("http://127.0.0.1:{}", free_port());
    let oidc = |strict: bool| ProviderSettings {
        kind: Some("oidc".into()),
        issuer: Some(issuer.clone()),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SecretString::from(CLIENT_SECRET)),
        display_name: Some("Example ID".into()),
        require_identity_match: Some(strict),
        ..Default::default()
    };
    let app = spawn_app_with(backend, |s| {
        s.server.port = broker_port;
        s.oauth.public_url = public_url.clone();
        s.oauth.background.enabled = false;
        s.oauth.return_to_origins = vec![return_to_base.clone()];
        s.providers.insert("oidc".into(), oidc(false));
        s.providers.insert("oidc-strict".into(), oidc(true));
    })
    .await;
    let jwt = app.jwt("tokens:read tokens:access tokens:write tokens:admin");
    let screenshots = repo()
        .join("target/browser-screenshots")
        .join(backend.name());
    let run = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(repo().join("tests/browser/run-tests.sh"))
            .env("TOKEN_BROKER_URL", &app.base)
            .env("TOKEN_BROKER_JWT", &jwt)
            .env("OIDC_ISSUER", &issuer)
            .env("PROVIDER", "oidc")
            .env("STRICT_PROVIDER", "oidc-strict")
            .env("RETURN_TO_BASE", &return_to_base)
            .env("SCREENSHOT_DIR", &screenshots)
            .stdin(Stdio::null())
            .output()
            .map(|out| (out, app))
    })
    .await
    .unwrap()
    .expect("bash runs tests/browser/run-tests.sh");
    let (out, _app) = run;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/run-tests.sh failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
    drop(provider);
}
