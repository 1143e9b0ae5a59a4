//! The broker's own job against a fake provider: valid access tokens, refresh and its failures,
//! exchange, the browser login, revoke and background refresh.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_provider::{grant, with_fake, FakeProvider, CLIENT_ID, CLIENT_SECRET};
use crate::helpers::{error_of, spawn_app_with, Backend, TestApp};

crate::on_every_backend!(
    a_valid_access_token_is_served_without_calling_the_provider,
    an_expiring_token_is_refreshed_once_and_stored,
    a_rotated_refresh_token_is_used_for_the_next_refresh,
    invalid_grant_marks_the_token_needs_reauth_without_retrying,
    a_provider_outage_is_retried_then_answered_503_with_retry_after,
    a_still_valid_token_is_served_when_a_forced_refresh_fails,
    the_refresh_budget_stops_calls_to_the_provider,
    revoke_removes_the_token_at_the_provider_and_here,
    the_browser_login_stores_the_token_once,
    a_login_answer_from_another_issuer_is_refused,
);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn app_with(backend: Backend, fake: &FakeProvider) -> TestApp {
    spawn_app_with(backend, |s| with_fake(s, fake, "client_secret_basic")).await
}

/// Stores a token of the fake provider whose access token expires `expires_in_ms` from now.
async fn seed(app: &TestApp, expires_in_ms: i64) -> String {
    let t = app
        .seed(json!({
            "user_name": "alice@example.com",
            "provider": "fake",
            "refresh_token": "rt-1",
            "access_token": "at-1",
            "expiry_time": now_ms() + expires_in_ms,
        }))
        .await;
    t["id"].as_str().unwrap().to_owned()
}

/// The access token of `id`, asked for with the `tokens:access` scope.
async fn access(app: &TestApp, id: &str, query: &str) -> reqwest::Response {
    app.access_token(&app.jwt("tokens:access"), id, query).await
}

async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(app.jwt("tokens:write"))
        .send()
        .await
        .unwrap()
}

async fn stored(app: &TestApp, id: &str) -> Value {
    app.get_token(&app.jwt("tokens:read tokens:secrets"), id)
        .await
        .json()
        .await
        .unwrap()
}

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

    let r = post(&app, &format!("/v1/tokens/{id}/refresh")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["access_token"], "at-3");
    assert_eq!(stored(&app, &id).await["refresh_token"], "rt-3");
    // The rotated token can be found by value too.
    let r = app
        .find(&app.admin(), &json!({ "refresh_token": "rt-3" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

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
    let r = post(&app, &format!("/v1/tokens/{id}/refresh")).await;
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
        s.oauth.refresh_budget = 2;
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
        post(&app, &format!("/v1/tokens/{id}/revoke"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_token(&app.admin(), &id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&app, &format!("/v1/tokens/{id}/revoke"))
            .await
            .status(),
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
    let (status, _) = error_of(post(&app, &format!("/v1/tokens/{id}/revoke")).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.get_token(&app.admin(), &id).await.status(),
        StatusCode::OK
    );
}

/// Follows the broker's authorize redirect; returns (state, code_challenge, redirect_uri).
async fn start_login(app: &TestApp, query: &str) -> (String, String, String) {
    let r = app
        .client
        .get(app.url(&format!("/v1/oauth/authorize{query}")))
        .bearer_auth(app.jwt_for("portal", "tokens:write", Some("acme")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.text().await);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(location.path(), "/authorize");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid offline_access");
    assert_eq!(q["prompt"], "consent");
    (
        q["state"].clone(),
        q["code_challenge"].clone(),
        q["redirect_uri"].clone(),
    )
}

async fn the_browser_login_stores_the_token_once(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app_with(backend, &fake).await;
    let (state, challenge, redirect_uri) = start_login(
        &app,
        "?provider=fake&user_name=carol@example.com&return_to=https://portal.example.com/done",
    )
    .await;
    assert!(redirect_uri.ends_with("/v1/oauth/callback"));

    // The provider checks the PKCE verifier against the challenge it was given.
    struct Pkce(String);
    impl wiremock::Match for Pkce {
        fn matches(&self, r: &wiremock::Request) -> bool {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&r.body).into_owned().collect();
            form.get("code_verifier")
                .is_some_and(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == self.0)
                && form.get("code").map(String::as_str) == Some("the-code")
        }
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(Pkce(challenge))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant(
            "at-login",
            Some("rt-login"),
            3600,
        )))
        .expect(1)
        .mount(&fake.server)
        .await;

    let callback = app.url(&format!("/v1/oauth/callback?code=the-code&state={state}"));
    let r = app.client.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(back.host_str(), Some("portal.example.com"));
    let q: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["status"], "connected");

    // Stored in the tenant of the caller who started the login.
    let acme = app.jwt_for("portal", "tokens:read tokens:secrets", Some("acme"));
    let t: Value = app
        .get_token(&acme, &q["token_id"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["user_name"], "carol@example.com");
    assert_eq!(t["refresh_token"], "rt-login");
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["provider"], "fake");

    // The same state again: refused, nothing stored, no second exchange.
    let r = app.client.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("already used"), "{page}");
    let r = app
        .client
        .get(app.url("/v1/oauth/callback?code=x&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count().await, 1);

    // No return_to: a page that says which account was connected.
    let (state, _, _) = start_login(&app, "?provider=fake&user_name=dave@example.com").await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-d", Some("rt-d"), 3600)))
        .mount(&fake.server)
        .await;
    let r = app
        .client
        .get(app.url(&format!("/v1/oauth/callback?code=c2&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("dave@example.com is now connected to fake"));
}

/// RFC 9207: with `providers.<key>.issuer` set, the callback's `iss` must name that issuer, so a
/// code from another provider (a mix-up attack) is never exchanged.
async fn a_login_answer_from_another_issuer_is_refused(backend: Backend) {
    let fake = FakeProvider::start().await;
    let issuer = fake.uri();
    let app = spawn_app_with(backend, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.providers.get_mut("fake").unwrap().issuer = Some(issuer.clone());
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-i", Some("rt-i"), 3600)))
        .mount(&fake.server)
        .await;
    let callback = |state: &str, iss: Option<&str>| {
        let mut url = url::Url::parse(&app.url("/v1/oauth/callback")).unwrap();
        url.query_pairs_mut()
            .append_pair("code", "the-code")
            .append_pair("state", state);
        if let Some(iss) = iss {
            url.query_pairs_mut().append_pair("iss", iss);
        }
        app.client.get(url).send()
    };

    for (iss, says) in [
        (Some("https://evil.example.com"), "another issuer"),
        (None, "names no issuer"),
    ] {
        let (state, _, _) = start_login(&app, "?provider=fake&user_name=erin@example.com").await;
        let r = callback(&state, iss).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let page = r.text().await.unwrap();
        assert!(page.contains(says), "{page}");
    }
    assert_eq!(
        fake.calls("authorization_code").await,
        0,
        "no code exchanged"
    );
    assert_eq!(app.count().await, 0);

    let (state, _, _) = start_login(&app, "?provider=fake&user_name=erin@example.com").await;
    let r = callback(&state, Some(&issuer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn authorize_can_answer_json_and_rejects_bad_input() {
    let fake = FakeProvider::start().await;
    let app = app_with(Backend::Sqlite, &fake).await;
    let jwt = app.jwt("tokens:write");
    let r = app
        .client
        .get(app.url("/v1/oauth/authorize?provider=fake"))
        .bearer_auth(&jwt)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["authorize_url"]
        .as_str()
        .unwrap()
        .starts_with(&fake.uri()));

    for (query, field) in [
        ("?provider=nope", "provider"),
        ("?provider=fake&return_to=javascript:alert(1)", "return_to"),
        ("?provider=zoho-us", "provider"), // no client_id configured for it
    ] {
        let r = app
            .client
            .get(app.url(&format!("/v1/oauth/authorize{query}")))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(r).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(body["field"], field, "{query}");
    }
    let r = app
        .client
        .get(app.url("/v1/oauth/authorize?provider=fake"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
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
    let exchange = |body: Value| {
        let app = &app;
        let jwt = &jwt;
        async move {
            app.client
                .post(app.url("/v1/oauth/exchange"))
                .bearer_auth(jwt)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
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
        .client
        .post(app.url("/v1/oauth/exchange"))
        .bearer_auth(app.jwt("tokens:write"))
        .json(&json!({ "provider": "fake", "grant_token": "used-code", "code_verifier": "v".repeat(43) }))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(!body.to_string().contains("used-code"));
    assert_eq!(app.count().await, 0);
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

#[tokio::test]
async fn tokens_in_use_are_refreshed_in_the_background() {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-bg", None, 3600), 0).await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.oauth.background.enabled = true;
        s.oauth.background.interval_secs = 1;
        s.oauth.background.ahead_secs = 300;
    })
    .await;
    // Valid for 100 s: callers are served from the store, and it counts as in use.
    let used = seed(&app, 100_000).await;
    assert_eq!(
        access(&app, &used, "").await.json::<Value>().await.unwrap()["access_token"],
        "at-1"
    );
    // Another expiring token nobody asked for is left alone.
    let idle = app
        .seed(json!({ "user_name": "idle@example.com", "provider": "fake", "refresh_token": "rt-idle", "access_token": "at-idle", "expiry_time": now_ms() + 100_000 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut refreshed = false;
    for _ in 0..100 {
        if stored(&app, &used).await["access_token"] == "at-bg" {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refreshed,
        "the background refresher did not refresh the token in use"
    );
    assert_eq!(fake.calls("refresh_token").await, 1);
    assert_eq!(stored(&app, &idle).await["access_token"], "at-idle");
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
async fn a_new_login_revokes_the_grant_it_replaces() {
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
    let app = app_with(Backend::Sqlite, &fake).await;
    let exchange = |code: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/v1/oauth/exchange"))
                .bearer_auth(app.jwt("tokens:write"))
                .json(&json!({ "provider": "fake", "grant_token": code, "user_name": "relogin@example.com" }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()
        }
    };
    let first = exchange("first").await;
    let second = exchange("second").await;
    assert_eq!(first["id"], second["id"], "the same user's token, updated");
    let mut revoked = Vec::new();
    for _ in 0..50 {
        revoked = fake.requests_to("/revoke").await;
        if !revoked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(revoked.len(), 1);
    let form = String::from_utf8_lossy(&revoked[0].body).to_string();
    assert!(
        form.contains("token=rt-A") && !form.contains("rt-B"),
        "{form}"
    );
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
