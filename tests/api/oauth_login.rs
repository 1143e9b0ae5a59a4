//! The browser login (`/v1/oauth/authorize` → provider → `/v1/oauth/callback`): PKCE, the
//! caller's tenant, one use per state, RFC 9207 issuer checks, and authorize's input checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::client;
use crate::fake_provider::{app_with, grant, with_fake, FakeProvider, CLIENT_ID};
use crate::helpers::{error_of, spawn_app_with, Backend, TestApp};

crate::on_every_backend!(
    the_browser_login_stores_the_token_once,
    a_login_answer_from_another_issuer_is_refused,
);

/// Follows the broker's authorize redirect; returns (state, code_challenge, redirect_uri).
async fn start_login(app: &TestApp, query: &str) -> (String, String, String) {
    let r = app
        .authorize(&app.jwt_for("portal", "tokens:write", Some("acme")), query)
        .await;
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

    let callback = format!("?code=the-code&state={state}");
    let r = app.callback(&callback).await;
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
    let r = app.callback(&callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("already used"), "{page}");
    let r = app.callback("?code=x&state=forged").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count().await, 1);

    // No return_to: a page that says which account was connected.
    let (state, _, _) = start_login(&app, "?provider=fake&user_name=dave@example.com").await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-d", Some("rt-d"), 3600)))
        .mount(&fake.server)
        .await;
    let r = app.callback(&format!("?code=c2&state={state}")).await;
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
        let mut pairs = vec![("code", "the-code"), ("state", state)];
        pairs.extend(iss.map(|iss| ("iss", iss)));
        app.callback(&client::query(&pairs))
    };

    for (iss, says) in [
        (Some("https://evil.example.com"), "another issuer"),
        (None, "names no issuer"),
    ] {
        let (state, _, _) = start_login(&app, "?provider=fake&user_name=erin@example.com").await;
        let r = callback(&state, iss).await;
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
    let r = callback(&state, Some(&issuer)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn authorize_can_answer_json_and_rejects_bad_input() {
    let fake = FakeProvider::start().await;
    let app = app_with(Backend::Sqlite, &fake).await;
    let jwt = app.jwt("tokens:write");
    let r = app
        .authorize(&jwt, "?provider=fake")
        .header("accept", "application/json")
        .await;
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
        let r = app.authorize(&jwt, query).await;
        let (status, body) = error_of(r).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(body["field"], field, "{query}");
    }
    // No caller JWT.
    let r = app.get_public("/v1/oauth/authorize?provider=fake").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
