//! When a refresh fails: a dead grant marks the token `needs_reauth` without retrying; an outage,
//! garbage or a slow provider is retried, then a 503 with Retry-After, and nothing stored is lost;
//! a still-valid token is served when a forced refresh fails; the refresh budget stops calls.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_provider::{app_with, grant, seed, with_fake, FakeProvider};
use crate::helpers::{access, error_of, spawn_app_with, stored, Backend};

crate::on_every_backend!(
    invalid_grant_marks_the_token_needs_reauth_without_retrying,
    a_provider_outage_is_retried_then_answered_503_with_retry_after,
    a_still_valid_token_is_served_when_a_forced_refresh_fails,
    the_refresh_budget_stops_calls_to_the_provider,
);

async fn invalid_grant_marks_the_token_needs_reauth_without_retrying(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(400, json!({ "error": "invalid_grant" }), 0)
        .await;
    let app = app_with(backend, &fake).await;
    let id = seed(&app, -1000).await;

    let (status, body) = error_of(access(&app, &id, "").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("needs_reauth"))
    );
    assert_eq!(fake.calls("refresh_token").await, 1, "never retried");
    assert_eq!(stored(&app, &id).await["status"], "needs_reauth");

    // Later calls answer 409 without bothering the provider.
    let (status, _) = error_of(access(&app, &id, "").await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(fake.calls("refresh_token").await, 1);

    // Zoho says it with HTTP 200 and {"error": "invalid_code"}.
    let zoho = FakeProvider::start().await;
    zoho.on_refresh(200, json!({ "error": "invalid_code" }), 0)
        .await;
    let app = app_with(backend, &zoho).await;
    let id = app
        .seed(json!({ "user_name": "z@example.com", "provider": "zoho-eu", "client_id": "c", "client_secret": "s",
                      "refresh_token": "rt", "access_token": "at", "expiry_time": 1 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = error_of(access(&app, &id, "").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("needs_reauth"))
    );
    // Saving fresh credentials makes it active again.
    app.seed(json!({ "id": id, "refresh_token": "rt-new" }))
        .await;
    assert_eq!(stored(&app, &id).await["status"], "active");
}

async fn a_provider_outage_is_retried_then_answered_503_with_retry_after(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(500, json!({ "error": "server_error" }), 0)
        .await;
    let app = app_with(backend, &fake).await;
    let id = seed(&app, -1000).await;

    let r = access(&app, &id, "").await;
    assert!(r.headers().contains_key("retry-after"));
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("provider_unavailable")
        )
    );
    // One attempt plus oauth.max_retries (2).
    assert_eq!(fake.calls("refresh_token").await, 3);
    // Nothing was lost: the token is still active with its refresh token.
    let t = stored(&app, &id).await;
    assert_eq!(
        (t["status"].as_str(), t["refresh_token"].as_str()),
        (Some("active"), Some("rt-1"))
    );

    // Garbage with HTTP 200 is an outage too, not a token.
    let garbage = FakeProvider::start().await;
    garbage
        .on_refresh_raw(200, "<html>upstream proxy error</html>")
        .await;
    let app = app_with(backend, &garbage).await;
    let id = seed(&app, -1000).await;
    let (status, _) = error_of(access(&app, &id, "").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(garbage.calls("refresh_token").await, 3);
}

async fn a_still_valid_token_is_served_when_a_forced_refresh_fails(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(503, json!({}), 0).await;
    let app = app_with(backend, &fake).await;
    let id = seed(&app, 3_600_000).await;
    let r = app.refresh(&app.jwt("tokens:write"), &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["access_token"], "at-1");
    assert_eq!(fake.calls("refresh_token").await, 3);
}

async fn the_refresh_budget_stops_calls_to_the_provider(backend: Backend) {
    let fake = FakeProvider::start().await;
    // Tokens that are already expired when they arrive: each call wants a refresh.
    fake.on_refresh(200, grant("at-short", None, 0), 0).await;
    let app = spawn_app_with(backend, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.providers.get_mut("fake").unwrap().refresh_budget = Some(2);
    })
    .await;
    let id = seed(&app, -1000).await;
    assert_eq!(access(&app, &id, "").await.status(), StatusCode::OK);
    assert_eq!(access(&app, &id, "").await.status(), StatusCode::OK);
    let r = access(&app, &id, "").await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 500 && retry_after <= 600, "{retry_after}");
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("refresh_budget_exhausted")
        )
    );
    assert_eq!(fake.calls("refresh_token").await, 2);
    assert_eq!(
        access(&app, &id, "?min_validity=1").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        fake.calls("refresh_token").await,
        2,
        "no call past the budget"
    );
}

#[tokio::test]
async fn a_slow_provider_times_out_into_a_503() {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("late", None, 3600), 3_000).await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.oauth.http_timeout_secs = 1;
        s.oauth.max_retries = 1;
    })
    .await;
    let id = seed(&app, -1).await;
    let (status, body) = error_of(access(&app, &id, "").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("provider_unavailable")
        )
    );
    assert_eq!(fake.calls("refresh_token").await, 2);
    assert_eq!(stored(&app, &id).await["access_token"], "at-1");
}
