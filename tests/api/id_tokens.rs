//! OpenID Connect logins against a fake issuer on loopback (discovery document, JWKS, an ES256
//! signing key made for the test): the id_token is verified — signature against the published
//! keys, `iss`, `aud`, `exp` and the nonce the login sent — and a login whose id_token fails any of
//! them is refused with a page and stores nothing. A login granted without a refresh token says so.

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use token_broker::config::ProviderSettings;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::client;
use crate::helpers::{now_ms, spawn_app_with, Backend, Es256Key, TestApp};

const CLIENT_ID: &str = "broker-client";

/// Makes an id_token for a login's nonce.
type MakeIdToken<'a> = Box<dyn Fn(&str) -> String + 'a>;

/// A broker whose provider `idp` is the fake issuer, configured from its issuer alone.
async fn start(key: &Es256Key) -> (MockServer, TestApp) {
    let server = MockServer::start().await;
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/jwks") })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": [key.jwk] })))
        .mount(&server)
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.oauth.background.enabled = false;
        s.providers.insert(
            "idp".into(),
            ProviderSettings {
                kind: Some("oidc".into()),
                issuer: Some(issuer.clone()),
                client_id: Some(CLIENT_ID.into()),
                client_secret: Some(SecretString::from("s")),
                ..Default::default()
            },
        );
    })
    .await;
    (server, app)
}

/// Starts a login for `user` in `app`'s browser; returns (state, nonce).
async fn start_login(app: &TestApp, user: &str) -> (String, String) {
    let r = app
        .authorize(
            &app.jwt("tokens:write"),
            &client::query(&[("provider", "idp"), ("user_name", user)]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let opened = app
        .open_link(r.headers()["location"].to_str().unwrap())
        .await;
    assert_eq!(opened.status(), StatusCode::FOUND);
    let to = url::Url::parse(opened.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "openid email profile offline_access");
    assert_eq!(q["prompt"], "consent");
    (q["state"].clone(), q["nonce"].clone())
}

fn id_token(key: &Es256Key, claims: Value) -> String {
    key.sign(&claims)
}

/// The provider answers `code` with `id_token` (and a refresh token unless `refresh` is false);
/// the browser comes back to the callback. Returns the broker's answer.
async fn finish(
    server: &MockServer,
    app: &TestApp,
    state: &str,
    code: &str,
    id_token: String,
    refresh: bool,
) -> reqwest::Response {
    let mut answer = json!({ "access_token": format!("at-{code}"), "token_type": "Bearer",
                             "expires_in": 3600, "id_token": id_token,
                             "scope": "openid email offline_access" });
    if refresh {
        answer["refresh_token"] = json!(format!("rt-{code}"));
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(format!("code={code}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(server)
        .await;
    app.callback(&client::query(&[
        ("code", code),
        ("state", state),
        ("iss", &server.uri()),
    ]))
    .await
}

#[tokio::test]
async fn an_id_token_is_verified_before_a_login_is_stored() {
    let key = Es256Key::new("k1");
    let (server, app) = start(&key).await;
    let issuer = server.uri();
    let now = now_ms() / 1000;
    let claims = |nonce: &str| {
        json!({ "iss": issuer, "aud": CLIENT_ID, "sub": "u-ada", "email": "ada@example.com",
                "name": "Ada", "nonce": nonce, "iat": now, "exp": now + 300 })
    };
    // Each broken id_token: refused with a page, nothing stored.
    let forger = Es256Key::new("k1");
    let cases: Vec<(&str, MakeIdToken)> = vec![
        (
            "another nonce",
            Box::new(|_n: &str| id_token(&key, claims("not-the-nonce"))),
        ),
        (
            "another audience",
            Box::new(|n: &str| {
                let mut c = claims(n);
                c["aud"] = json!("someone-else");
                id_token(&key, c)
            }),
        ),
        (
            "another issuer",
            Box::new(|n: &str| {
                let mut c = claims(n);
                c["iss"] = json!("https://evil.example");
                id_token(&key, c)
            }),
        ),
        (
            "expired",
            Box::new(|n: &str| {
                let mut c = claims(n);
                c["exp"] = json!(now - 3600);
                id_token(&key, c)
            }),
        ),
        (
            "a key the issuer does not publish",
            Box::new(|n: &str| id_token(&forger, claims(n))),
        ),
    ];
    for (i, (why, make)) in cases.iter().enumerate() {
        let (state, nonce) = start_login(&app, "ada@example.com").await;
        let r = finish(
            &server,
            &app,
            &state,
            &format!("bad{i}"),
            make(&nonce),
            true,
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}");
        let page = r.text().await.unwrap();
        assert!(page.contains("id_token"), "{why}: {page}");
        assert_eq!(app.count().await, 0, "{why}");
    }

    // A good one: stored with who logged in and the scopes granted.
    let (state, nonce) = start_login(&app, "ada@example.com").await;
    let r = finish(
        &server,
        &app,
        &state,
        "good",
        id_token(&key, claims(&nonce)),
        true,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let token: Value = app
        .find(
            &app.jwt("tokens:read"),
            &json!({ "user_name": "ada@example.com" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        token["identity"],
        json!({ "subject": "u-ada", "email": "ada@example.com", "name": "Ada" })
    );
    assert_eq!(
        token["scopes"],
        json!(["openid", "email", "offline_access"])
    );
    assert_eq!(token["refreshable"], true);
}

/// A provider that grants no refresh token (no offline access): the person is told the
/// connection is for now only, and the token says it cannot be refreshed.
#[tokio::test]
async fn a_login_without_a_refresh_token_says_so() {
    let key = Es256Key::new("k1");
    let (server, app) = start(&key).await;
    let issuer = server.uri();
    let now = now_ms() / 1000;
    let (state, nonce) = start_login(&app, "bo@example.com").await;
    let claims = json!({ "iss": issuer, "aud": CLIENT_ID, "sub": "bo@example.com", "nonce": nonce,
                         "iat": now, "exp": now + 300 });
    let r = finish(
        &server,
        &app,
        &state,
        "online",
        id_token(&key, claims),
        false,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"data-outcome="no-refresh""#), "{page}");
    assert!(page.contains("did not allow offline access"), "{page}");
    let token: Value = app
        .find(
            &app.jwt("tokens:read"),
            &json!({ "user_name": "bo@example.com" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(token["refreshable"], false);
}
