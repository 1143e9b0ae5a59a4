//! Caller JWTs from an identity provider: keys published as a JWKS (`auth.jwks_url`), served here
//! by a fake issuer on loopback with ES256 keys made for the test. The set is cached; a JWT signed
//! with a key the cached set lacks makes the broker fetch it again (key rotation), at most every
//! ten seconds; an unknown key is refused; an unreachable JWKS is a 503, never a pass. And the
//! real thing: a client_credentials access token issued by oidc-provider, checked against its JWKS.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{error_of, spawn_app_with, Backend, Es256Key, TestApp};

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

/// A service's JWT from the identity provider, signed with `key`.
fn service_jwt(key: &Es256Key, tenant: &str) -> String {
    let claims = json!({ "iss": "https://idp.test", "sub": "system:serviceaccount:crm:sync",
                         "aud": ["token-broker"], "tenant": tenant,
                         "scope": "tokens:read tokens:access", "iat": now(), "exp": now() + 600 });
    key.sign(&claims)
}

async fn publish(server: &MockServer, keys: &[&Es256Key]) {
    server.reset().await;
    let set: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": set })))
        .mount(server)
        .await;
}

async fn broker(jwks_url: String) -> TestApp {
    spawn_app_with(Backend::Sqlite, |s| {
        s.auth.jwks_url = jwks_url;
        s.auth.issuer = "https://idp.test".into();
        s.auth.audience = "token-broker".into();
    })
    .await
}

async fn jwks_fetches(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn services_present_jwts_signed_by_their_identity_providers_keys() {
    let idp = MockServer::start().await;
    let first = Es256Key::new("2026-11");
    publish(&idp, &[&first]).await;
    let app = broker(format!("{}/jwks", idp.uri())).await;
    app.seed(json!({ "tenant": "crm", "user_name": "u@crm.test", "refresh_token": "r" }))
        .await;

    let jwt = service_jwt(&first, "crm");
    let page: Value = app.list(&jwt, "").await.json().await.unwrap();
    assert_eq!(page["tokens"].as_array().unwrap().len(), 1, "{page}");
    // The set is cached: more calls (with new JWTs) fetch nothing.
    for _ in 0..5 {
        let again = service_jwt(&first, "crm");
        assert_eq!(app.list(&again, "").await.status(), StatusCode::OK);
    }
    assert_eq!(jwks_fetches(&idp).await, 1);

    // The provider rotates: a JWT with the new key id makes the broker fetch the set again.
    let second = Es256Key::new("2026-12");
    publish(&idp, &[&first, &second]).await;
    let rotated = service_jwt(&second, "crm");
    assert_eq!(app.list(&rotated, "").await.status(), StatusCode::OK);
    assert_eq!(jwks_fetches(&idp).await, 1, "one fetch after the reset");

    // A key nobody publishes: refused, and fetching again for it waits (no fetch per request).
    let forged = Es256Key::new("2026-12");
    let (status, _) = error_of(app.list(&service_jwt(&forged, "crm"), "").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stranger = Es256Key::new("not-published");
    for _ in 0..5 {
        let (status, _) = error_of(app.list(&service_jwt(&stranger, "crm"), "").await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        jwks_fetches(&idp).await <= 1,
        "unknown key ids are rate limited"
    );
    // A JWT whose header claims HS256 with the JWKS is never checked against a public key.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "x", "tenant": "*", "aud": "token-broker", "iss": "https://idp.test",
                 "scope": "tokens:read", "exp": now() + 60 }),
        &EncodingKey::from_secret(first.jwk["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert_eq!(app.list(&hs, "").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_503_never_a_pass() {
    let app = broker("http://127.0.0.1:9/jwks".into()).await;
    let key = Es256Key::new("k");
    let (status, body) = error_of(app.list(&service_jwt(&key, "*"), "").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "caller_keys_unavailable");
    // The broker's own HS256 callers are unaffected.
    assert_eq!(app.list(&app.admin(), "").await.status(), StatusCode::OK);
}

/// A service's JWT from a real OAuth server: oidc-provider (`CALLER_TOKENS=1`) issues it by the
/// client_credentials grant, signed with its RS256 key and published at its `/jwks`.
#[tokio::test]
async fn a_client_credentials_token_from_oidc_provider_is_a_caller() {
    let provider = tokio::task::spawn_blocking(|| {
        crate::interop::OidcProvider::start_with(
            "http://127.0.0.1:9/v1/oauth/callback",
            3600,
            &[("CALLER_TOKENS", "1"), ("CALLER_TENANT", "crm")],
        )
    })
    .await
    .unwrap();
    let issuer = provider.issuer.clone();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.jwks_url = format!("{issuer}/jwks");
        s.auth.issuer = issuer.clone();
        s.auth.audience = "token-broker".into();
    })
    .await;
    app.seed(
        json!({ "tenant": "crm", "user_name": "u@crm.test", "refresh_token": "r",
                     "access_token": "crm-at", "expiry_time": 4102444800000i64 }),
    )
    .await;
    app.seed(json!({ "tenant": "other", "user_name": "o@other.test", "refresh_token": "r2" }))
        .await;
    let answer: Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("caller-svc", Some("caller-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "tokens:read tokens:access"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = answer["access_token"].as_str().expect("a JWT access token");
    let page: Value = app.list(jwt, "").await.json().await.unwrap();
    let tokens = page["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "only its tenant's: {page}");
    assert_eq!(
        tokens[0]["access_token"], "crm-at",
        "tokens:access from the JWT's scope"
    );
    let id = tokens[0]["id"].as_str().unwrap();
    assert_eq!(app.access_token(jwt, id, "").await.status(), StatusCode::OK);
    // Scopes it was not granted stay refused.
    assert_eq!(
        app.delete_token(jwt, id).await.status(),
        StatusCode::FORBIDDEN
    );
    drop(provider);
}
