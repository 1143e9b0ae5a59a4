//! `POST /v1/oauth/exchange`: a code is exchanged at the Zoho data center it came from (and our
//! client secret goes to no accounts server we don't know); a used-up code is a clear 400. As the
//! Zoho SDK adapters use it: no provider named means `tokens.default_provider`, as save does;
//! Zoho's lock-out answer is rate limiting.

use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_provider::{app_with, with_fake, FakeProvider};
use crate::fake_zoho::FakeZoho;
use crate::helpers::{error_of, spawn_app_with, Backend, TestApp};

async fn exchange(app: &TestApp, body: Value) -> reqwest::Response {
    app.exchange(&app.jwt("tokens:write tokens:read"), &body)
        .await
}

#[tokio::test]
async fn an_exchange_without_a_provider_uses_the_default_provider() {
    let fake = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/v2/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=1000.grant.def"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "1000.at", "refresh_token": "1000.rt", "api_domain": "https://www.zohoapis.eu",
            "token_type": "Bearer", "expires_in": 3600
        })))
        .expect(1)
        .mount(&fake.server)
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.tokens.default_provider = "zoho-eu".into();
    })
    .await;
    let r = exchange(
        &app,
        json!({ "grant_token": "1000.grant.def", "client_id": "1000.SELF", "client_secret": "self-secret",
                "user_name": "def@example.com" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["provider"], "zoho-eu");
    assert_eq!(
        t["client_secret"],
        Value::Null,
        "no secrets without tokens:secrets"
    );
    assert_eq!(t["refresh_token"], Value::Null);
}

#[tokio::test]
async fn zohos_access_denied_on_an_exchange_is_a_429_with_retry_after() {
    let fake = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/v2/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error_description": "You have made too many requests continuously. Please try again after some time.",
            "error": "Access Denied", "status": "failure"
        })))
        .mount(&fake.server)
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic")
    })
    .await;
    let r = exchange(
        &app,
        json!({ "provider": "zoho-eu", "grant_token": "1000.grant.x", "client_id": "1000.SELF",
                "client_secret": "self-secret" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let (_, body) = error_of(r).await;
    assert_eq!(body["error"], "provider_rate_limited");
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn exchange_at_the_zoho_data_center_the_code_came_from() {
    let fake = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/v2/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=1000.grant.abc"))
        .and(body_string_contains("client_id=1000.SELF"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "1000.at", "refresh_token": "1000.rt", "api_domain": "https://www.zohoapis.eu",
            "token_type": "Bearer", "expires_in": 3600
        })))
        .expect(1)
        .mount(&fake.server)
        .await;
    let app = app_with(Backend::Sqlite, &fake).await;
    let jwt = app.jwt("tokens:write tokens:secrets");
    let exchange = |body: Value| app.exchange(&jwt, &body);
    let r = exchange(json!({
        "provider": "zoho-us", "accounts_server": fake.uri(), "grant_token": "1000.grant.abc",
        "user_name": "self@example.com", "client_id": "1000.SELF", "client_secret": "self-secret",
        "redirect_url": "https://app.example.com/cb"
    }))
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["provider"], "zoho-eu");
    assert_eq!(t["api_domain"], "https://www.zohoapis.eu");
    assert_eq!(t["refresh_token"], "1000.rt");
    assert_eq!(t["client_secret"], "self-secret");
    // Found by the grant token afterwards, like the Zoho SDK does.
    let r = app
        .find(
            &app.admin(),
            &json!({ "grant_token": "1000.grant.abc", "client_id": "1000.SELF" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // An accounts server we don't know never receives our client secret.
    let (status, body) = error_of(exchange(json!({ "provider": "zoho-us", "accounts_server": "https://evil.example.com", "grant_token": "x" })).await).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("accounts_server"))
    );
    let (status, body) = error_of(exchange(json!({ "provider": "fake" })).await).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("grant_token"))
    );
}

#[tokio::test]
async fn a_used_up_code_is_a_clear_400() {
    let fake = FakeProvider::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid_grant" })))
        .mount(&fake.server)
        .await;
    let app = app_with(Backend::Sqlite, &fake).await;
    let r = app
        .exchange(
            &app.jwt("tokens:write"),
            &json!({ "provider": "fake", "grant_token": "used-code", "code_verifier": "v".repeat(43) }),
        )
        .await;
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(!body.to_string().contains("used-code"));
    assert_eq!(app.count().await, 0);
}

/// A Zoho login records the Zoho account it belongs to (Zoho's `/oauth/user/info` for the new
/// access token: ZUID, email, name), so the token says who actually connected.
#[tokio::test]
async fn a_zoho_exchange_records_the_zoho_account() {
    let fake = FakeZoho::start();
    fake.client("1000.SELF", "self-secret").await;
    fake.code("1000.code.x", "1000.SELF", "zara@crm.example")
        .await;
    let url = fake.url.clone();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.providers.insert(
            "zoho-us".into(),
            token_broker::config::ProviderSettings {
                accounts_url: Some(url.clone()),
                ..Default::default()
            },
        );
    })
    .await;
    let r = exchange(
        &app,
        json!({ "provider": "zoho-us", "grant_token": "1000.code.x", "user_name": "zara@crm.example",
                "client_id": "1000.SELF", "client_secret": "self-secret" }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["identity"]["email"], "zara@crm.example");
    assert!(
        token["identity"]["subject"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit()),
        "the ZUID: {token}"
    );
    assert_eq!(token["identity"]["name"], "Zara Tester");
    assert_eq!(token["refreshable"], true);
}
