//! The hot path against a fake provider: a valid access token is served from the store without
//! calling the provider; one that expires too soon is refreshed once, stored, and then served;
//! rotated refresh tokens are used next; writes through the broker are seen at once.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_provider::{
    app_with, grant, seed, with_fake, FakeProvider, CLIENT_ID, CLIENT_SECRET,
};
use crate::helpers::{access, error_of, now_ms, spawn_app_with, stored, Backend};

crate::on_every_backend!(
    a_valid_access_token_is_served_without_calling_the_provider,
    an_expiring_token_is_refreshed_once_and_stored,
    a_rotated_refresh_token_is_used_for_the_next_refresh,
);

async fn a_valid_access_token_is_served_without_calling_the_provider(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app_with(backend, &fake).await;
    let id = seed(&app, 3_600_000).await;

    let r = access(&app, &id, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["access_token"], "at-1");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 3500);
    assert_eq!(fake.calls("refresh_token").await, 0);

    // Without the access scope: 403; another tenant: 404.
    let r = app.access_token(&app.jwt("tokens:read"), &id, "").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let other_tenant = app.jwt_for("other", "tokens:access", Some("globex"));
    let r = app.access_token(&other_tenant, &id, "").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, _) = error_of(access(&app, &id, "?min_validity=abc").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn an_expiring_token_is_refreshed_once_and_stored(backend: Backend) {
    let fake = FakeProvider::start().await;
    // Zoho's refresh answer: no refresh token, api_domain, expires_in in seconds.
    fake.on_refresh(
        200,
        json!({ "access_token": "at-2", "api_domain": "https://www.zohoapis.eu", "token_type": "Bearer", "expires_in": 3600 }),
        0,
    )
    .await;
    let app = app_with(backend, &fake).await;
    let id = app
        .seed(json!({
            "user_name": "zoho-user@example.com", "provider": "zoho-eu",
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "refresh_token": "1000.rt.zoho", "access_token": "1000.at.old",
            "expiry_time": now_ms() + 30_000,
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Valid for 30 s, but the caller wants 60 s (the default): refresh first.
    let body: Value = access(&app, &id, "").await.json().await.unwrap();
    assert_eq!(body["access_token"], "at-2");
    assert_eq!(body["api_domain"], "https://www.zohoapis.eu");
    assert_eq!(fake.calls("refresh_token").await, 1);

    // Zoho is called at its token path, with the client credentials in the form (post).
    let calls = fake.requests_to("/oauth/v2/token").await;
    assert_eq!(calls.len(), 1);
    let form = String::from_utf8_lossy(&calls[0].body).to_string();
    assert!(form.contains("refresh_token=1000.rt.zoho"), "{form}");
    assert!(
        form.contains("client_secret=s3cr3t+%2B%2F%3D%26%25%3F%C3%A9"),
        "{form}"
    );

    // Stored: the new access token, the old refresh token kept, a fresh expiry.
    let t = stored(&app, &id).await;
    assert_eq!(t["access_token"], "at-2");
    assert_eq!(t["refresh_token"], "1000.rt.zoho");
    assert!(t["expiry_time"].as_i64().unwrap() > now_ms() + 3_500_000);

    // Now valid: served without another call.
    let body: Value = access(&app, &id, "?min_validity=600")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["access_token"], "at-2");
    assert_eq!(fake.calls("refresh_token").await, 1);
}

async fn a_rotated_refresh_token_is_used_for_the_next_refresh(backend: Backend) {
    let fake = FakeProvider::start().await;
    let basic = format!(
        "Basic {}",
        STANDARD.encode("fake-client:s3cr3t+%2B%2F%3D%26%25%3F%C3%A9")
    );
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("authorization", basic.as_str()))
        .and(body_string_contains("refresh_token=rt-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-2", Some("rt-2"), 3600)))
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("authorization", basic.as_str()))
        .and(body_string_contains("refresh_token=rt-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-3", Some("rt-3"), 3600)))
        .mount(&fake.server)
        .await;
    let app = app_with(backend, &fake).await;
    let id = seed(&app, -1000).await;

    let body: Value = access(&app, &id, "").await.json().await.unwrap();
    assert_eq!(body["access_token"], "at-2");
    assert_eq!(stored(&app, &id).await["refresh_token"], "rt-2");

    let r = app.refresh(&app.jwt("tokens:write"), &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["access_token"], "at-3");
    assert_eq!(stored(&app, &id).await["refresh_token"], "rt-3");
    // The rotated token can be found by value too.
    let r = app
        .find(&app.admin(), &json!({ "refresh_token": "rt-3" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_form() {
    let fake = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("client_id=fake-client"))
        .and(body_string_contains(
            "client_secret=s3cr3t+%2B%2F%3D%26%25%3F%C3%A9",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-post", None, 3600)))
        .expect(1)
        .mount(&fake.server)
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_post")
    })
    .await;
    let id = seed(&app, -1).await;
    let body: Value = access(&app, &id, "").await.json().await.unwrap();
    assert_eq!(body["access_token"], "at-post");
    assert!(fake.requests_to("/token").await[0]
        .headers
        .get("authorization")
        .is_none());
}

#[tokio::test]
async fn short_lived_tokens_are_not_refreshed_on_every_request() {
    let fake = FakeProvider::start().await;
    // The provider grants 60-second tokens; callers ask for 60 seconds (the default).
    fake.on_refresh(200, grant("at-60s", None, 60), 0).await;
    let app = app_with(Backend::Sqlite, &fake).await;
    let id = seed(&app, -1).await;
    for _ in 0..5 {
        let body: Value = access(&app, &id, "").await.json().await.unwrap();
        assert_eq!(body["access_token"], "at-60s");
    }
    assert_eq!(fake.calls("refresh_token").await, 1);
}

#[tokio::test]
async fn writes_through_the_broker_are_seen_by_the_next_access_token_call() {
    let fake = FakeProvider::start().await;
    let app = app_with(Backend::Sqlite, &fake).await;
    let id = seed(&app, 3_600_000).await;
    let body: Value = access(&app, &id, "").await.json().await.unwrap();
    assert_eq!(body["access_token"], "at-1");
    // Served from memory now; a save must not leave the old access token there.
    app.seed(json!({ "id": id, "access_token": "at-saved", "expiry_time": now_ms() + 3_600_000 }))
        .await;
    let body: Value = access(&app, &id, "").await.json().await.unwrap();
    assert_eq!(body["access_token"], "at-saved");
    assert_eq!(
        app.delete_token(&app.admin(), &id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(access(&app, &id, "").await.status(), StatusCode::NOT_FOUND);
}
