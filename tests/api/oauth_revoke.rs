//! Revocation at the provider: an explicit revoke removes the token there and here (and keeps it
//! when the provider is down, so it can be retried); a new login revokes the grant it replaces.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_provider::{app_with, grant, seed, with_fake, FakeProvider};
use crate::helpers::{error_of, spawn_app_with, Backend};

crate::on_every_backend!(revoke_removes_the_token_at_the_provider_and_here);

async fn revoke_removes_the_token_at_the_provider_and_here(backend: Backend) {
    let fake = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains("token=rt-1"))
        .and(body_string_contains("token_type_hint=refresh_token"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&fake.server)
        .await;
    let app = app_with(backend, &fake).await;
    let id = seed(&app, 3_600_000).await;
    assert_eq!(
        app.revoke(&app.jwt("tokens:write"), &id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_token(&app.admin(), &id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.revoke(&app.jwt("tokens:write"), &id).await.status(),
        StatusCode::NOT_FOUND
    );

    // A provider that is down keeps the token, so the revoke can be retried.
    let down = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&down.server)
        .await;
    let app = app_with(backend, &down).await;
    let id = seed(&app, 3_600_000).await;
    let (status, _) = error_of(app.revoke(&app.jwt("tokens:write"), &id).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.get_token(&app.admin(), &id).await.status(),
        StatusCode::OK
    );
}

/// Where each refresh token is a grant of its own (Zoho; `revoke_replaced = true`), a new login
/// revokes the one it replaces, so it does not stay valid at the provider.
#[tokio::test]
async fn a_new_login_revokes_the_grant_it_replaces_where_grants_are_per_token() {
    assert_eq!(relogin_revocations(Some(true)).await.len(), 1);
}

/// Elsewhere (the default for `oauth2` and `oidc`), the provider keeps one grant per user and
/// client: the new tokens belong to the grant the old refresh token would revoke, so it is left
/// alone.
#[tokio::test]
async fn a_new_login_never_revokes_a_grant_the_provider_shares_with_it() {
    let revoked = relogin_revocations(None).await;
    assert!(revoked.is_empty(), "{} revocations", revoked.len());
}

/// Logs the same user in twice (by exchange) and returns the revocation calls that followed.
async fn relogin_revocations(revoke_replaced: Option<bool>) -> Vec<wiremock::Request> {
    let fake = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=first"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-A", Some("rt-A"), 3600)))
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=second"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-B", Some("rt-B"), 3600)))
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&fake.server)
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.providers.get_mut("fake").unwrap().revoke_replaced = revoke_replaced;
    })
    .await;
    let exchange = |code: &'static str| {
        let app = &app;
        async move {
            let r = app
                .exchange(
                    &app.jwt("tokens:write"),
                    &json!({ "provider": "fake", "grant_token": code, "user_name": "relogin@example.com" }),
                )
                .await;
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()
        }
    };
    let first = exchange("first").await;
    let second = exchange("second").await;
    assert_eq!(first["id"], second["id"], "the same user's token, updated");
    let mut revoked = Vec::new();
    for _ in 0..20 {
        revoked = fake.requests_to("/revoke").await;
        if !revoked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in &revoked {
        let form = String::from_utf8_lossy(&r.body).to_string();
        assert!(
            form.contains("token=rt-A") && !form.contains("rt-B"),
            "{form}"
        );
    }
    revoked
}
