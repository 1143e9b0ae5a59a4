//! What keeps a client from being locked out by its provider: the refresh budget is counted per
//! refresh credential (however many rows hold it), the provider's own "too many requests" is
//! rate limiting the broker backs off from (never `needs_reauth`), and a caller who asked for a
//! refresh is told when it did not happen.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_provider::{grant, with_fake, FakeProvider, CLIENT_ID};
use crate::helpers::{error_of, spawn_app_with, Backend, TestApp};

crate::on_every_backend!(
    one_refresh_token_stored_twice_shares_one_budget,
    a_forced_refresh_past_the_budget_is_refused_with_retry_after,
    zohos_access_denied_is_rate_limiting_and_the_broker_backs_off,
    a_429_from_the_provider_is_passed_on_with_its_retry_after_and_not_retried,
);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Zoho's answer once a refresh token was refreshed too often (HTTP 400, as Zoho sends it).
fn zoho_access_denied() -> Value {
    json!({
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "error": "Access Denied",
        "status": "failure"
    })
}

async fn seed(app: &TestApp, body: Value) -> String {
    app.seed(body).await["id"].as_str().unwrap().to_owned()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn one_refresh_token_stored_twice_shares_one_budget(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-short", None, 0), 0).await;
    let app = spawn_app_with(backend, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.providers.get_mut("fake").unwrap().refresh_budget = Some(2);
    })
    .await;
    // The same refresh credential in two tenants (a re-import, two environments, ...).
    let mut ids = Vec::new();
    for tenant in ["acme", "globex"] {
        ids.push(
            seed(
                &app,
                json!({ "tenant": tenant, "user_name": "shared@example.com", "provider": "fake",
                        "client_id": CLIENT_ID, "refresh_token": "rt-shared", "access_token": "at-0",
                        "expiry_time": now_ms() - 1000 }),
            )
            .await,
        );
    }
    let jwt = app.jwt("tokens:access");
    assert_eq!(
        app.access_token(&jwt, &ids[0], "").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.access_token(&jwt, &ids[1], "").await.status(),
        StatusCode::OK
    );
    let (status, body) = error_of(app.access_token(&jwt, &ids[0], "").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("refresh_budget_exhausted")
        )
    );
    assert_eq!(
        app.access_token(&jwt, &ids[1], "").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        fake.calls("refresh_token").await,
        2,
        "two refreshes in all, not two per row"
    );

    // A different refresh token has a budget of its own.
    let other = seed(
        &app,
        json!({ "user_name": "other@example.com", "provider": "fake", "client_id": CLIENT_ID,
                "refresh_token": "rt-other", "access_token": "at-0", "expiry_time": now_ms() - 1000 }),
    )
    .await;
    assert_eq!(
        app.access_token(&jwt, &other, "").await.status(),
        StatusCode::OK
    );
}

async fn a_forced_refresh_past_the_budget_is_refused_with_retry_after(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-new", None, 3600), 0).await;
    let app = spawn_app_with(backend, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.providers.get_mut("fake").unwrap().refresh_budget = Some(1);
    })
    .await;
    let id = seed(
        &app,
        json!({ "user_name": "alice@example.com", "provider": "fake", "refresh_token": "rt-1",
                "access_token": "at-1", "expiry_time": now_ms() + 3_600_000 }),
    )
    .await;
    let jwt = app.jwt("tokens:write tokens:access");
    assert_eq!(app.refresh(&jwt, &id).await.status(), StatusCode::OK);

    let r = app.refresh(&jwt, &id).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "not a 200 with the old token"
    );
    let wait = retry_after(&r);
    assert!(wait > 500 && wait <= 600, "{wait}");
    let (_, body) = error_of(r).await;
    assert_eq!(body["error"], "refresh_budget_exhausted");
    assert_eq!(fake.calls("refresh_token").await, 1);

    // Asking for a valid token (not for a refresh) still gets the one that is valid.
    let r = app.access_token(&jwt, &id, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["access_token"], "at-new");
}

async fn zohos_access_denied_is_rate_limiting_and_the_broker_backs_off(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(400, zoho_access_denied(), 0).await;
    let app = spawn_app_with(backend, |s| with_fake(s, &fake, "client_secret_basic")).await;
    let id = seed(
        &app,
        json!({ "user_name": "zoe@example.com", "provider": "zoho-eu", "client_id": "1000.SELF",
                "client_secret": "self-secret", "refresh_token": "1000.rt.zoe",
                "access_token": "1000.at.zoe", "expiry_time": now_ms() - 1000 }),
    )
    .await;
    let jwt = app.jwt("tokens:access tokens:read");

    let r = app.access_token(&jwt, &id, "").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&r);
    assert!((30..=60).contains(&wait), "{wait}");
    let (_, body) = error_of(r).await;
    assert_eq!(body["error"], "provider_rate_limited");
    assert_eq!(
        fake.calls("refresh_token").await,
        1,
        "never retried at once"
    );

    // The grant is fine: no needs_reauth, and nothing goes to Zoho until the back-off is over.
    let stored: Value = app.get_token(&jwt, &id).await.json().await.unwrap();
    assert_eq!(stored["status"], "active");
    let (status, body) = error_of(app.access_token(&jwt, &id, "").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("provider_rate_limited"))
    );
    assert_eq!(fake.calls("refresh_token").await, 1, "backed off");
}

async fn a_429_from_the_provider_is_passed_on_with_its_retry_after_and_not_retried(
    backend: Backend,
) {
    let fake = FakeProvider::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/token"))
        .respond_with(
            wiremock::ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({ "error": "slow_down" })),
        )
        .mount(&fake.server)
        .await;
    let app = spawn_app_with(backend, |s| with_fake(s, &fake, "client_secret_basic")).await;
    let id = seed(
        &app,
        json!({ "user_name": "alice@example.com", "provider": "fake", "refresh_token": "rt-1",
                "access_token": "at-1", "expiry_time": now_ms() - 1000 }),
    )
    .await;
    let r = app.access_token(&app.jwt("tokens:access"), &id, "").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&r), 7);
    assert_eq!(fake.calls("refresh_token").await, 1);
}
