//! Caller authentication: JWTs, algorithms, claims and scopes.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use token_broker::config::PublicKeySettings;

use crate::helpers::{error_of, expose, spawn_app, spawn_app_with, Backend};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// An Ed25519 key pair: (signing key, public key PEM).
fn ed25519() -> (EncodingKey, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(pair.public_key().as_ref());
    (
        EncodingKey::from_ed_der(pkcs8.as_ref()),
        pem("PUBLIC KEY", &spki),
    )
}

/// A P-256 key pair: (signing key, public key PEM).
fn p256() -> (EncodingKey, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(pair.public_key().as_ref());
    (
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        pem("PUBLIC KEY", &spki),
    )
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

async fn list_status(app: &crate::helpers::TestApp, jwt: &str) -> StatusCode {
    app.list(jwt, "").await.status()
}

#[tokio::test]
async fn calls_without_a_jwt_get_401_with_a_bearer_challenge() {
    let app = spawn_app(Backend::Sqlite).await;
    let r = app.get_public("/v1/tokens").await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    let r = app
        .http
        .get(app.url("/v1/tokens"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn expired_wrong_key_and_unsigned_jwts_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let secret = expose(&app.settings.auth.hs256_secret).to_owned();
    let key = EncodingKey::from_secret(secret.as_bytes());

    let expired = sign(
        Algorithm::HS256,
        &key,
        json!({ "sub": "svc", "scope": "tokens:read", "tenant": "*", "exp": now() - 3600 }),
    );
    let (status, body) = error_of(app.list(&expired, "").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].as_str().unwrap().contains("expired"));

    let wrong = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!");
    let forged = sign(
        Algorithm::HS256,
        &wrong,
        json!({ "sub": "svc", "scope": "tokens:read", "tenant": "*", "exp": now() + 60 }),
    );
    assert_eq!(list_status(&app, &forged).await, StatusCode::UNAUTHORIZED);

    // alg "none": header and claims with an empty signature.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({ "sub": "svc", "scope": "tokens:admin", "tenant": "*", "exp": now() + 60 })
            .to_string(),
    );
    assert_eq!(
        list_status(&app, &format!("{header}.{claims}.")).await,
        StatusCode::UNAUTHORIZED
    );

    let no_exp = sign(
        Algorithm::HS256,
        &key,
        json!({ "sub": "svc", "scope": "tokens:read" }),
    );
    assert_eq!(list_status(&app, &no_exp).await, StatusCode::UNAUTHORIZED);
    let no_sub = sign(
        Algorithm::HS256,
        &key,
        json!({ "scope": "tokens:read", "tenant": "*", "exp": now() + 60 }),
    );
    assert_eq!(list_status(&app, &no_sub).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        list_status(&app, "not-a-jwt").await,
        StatusCode::UNAUTHORIZED
    );

    let good = sign(
        Algorithm::HS256,
        &key,
        json!({ "sub": "svc", "scope": "tokens:read", "tenant": "*", "exp": now() + 60 }),
    );
    assert_eq!(list_status(&app, &good).await, StatusCode::OK);
}

#[tokio::test]
async fn each_operation_needs_its_scope() {
    let app = spawn_app(Backend::Sqlite).await;
    let stored = app
        .seed(json!({ "user_name": "a@b.c", "refresh_token": "rt" }))
        .await;
    let id = stored["id"].as_str().unwrap();
    let none = app.jwt("");
    let read = app.jwt("tokens:read");
    let access = app.jwt("tokens:access");

    for r in [
        app.list(&none, "").await,
        app.get_token(&access, id).await,
        app.find(&access, &json!({ "user_name": "a@b.c" })).await,
        app.save(&read, &json!({ "user_name": "a@b.c", "access_token": "x" }))
            .await,
        app.delete_token(&read, id).await,
        app.delete_all(
            &app.jwt("tokens:read tokens:write tokens:secrets"),
            "?confirm=all",
        )
        .await,
    ] {
        let (status, body) = error_of(r).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"], "forbidden");
    }
    assert_eq!(app.count().await, 1);
    assert_eq!(app.get_token(&read, id).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn asymmetric_keys_verify_eddsa_and_es256_callers() {
    let (ed_key, ed_pem) = ed25519();
    let (ec_key, ec_pem) = p256();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.public_keys = vec![
            PublicKeySettings {
                alg: "EdDSA".into(),
                pem: Some(ed_pem),
                pem_file: None,
                kid: None,
            },
            PublicKeySettings {
                alg: "ES256".into(),
                pem: Some(ec_pem),
                pem_file: None,
                kid: Some("ec-1".into()),
            },
        ];
    })
    .await;
    let claims = json!({ "sub": "svc", "scope": "tokens:read", "tenant": "*", "exp": now() + 60 });
    assert_eq!(
        list_status(&app, &sign(Algorithm::EdDSA, &ed_key, claims.clone())).await,
        StatusCode::OK
    );

    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let es = jsonwebtoken::encode(&header, &claims, &ec_key).unwrap();
    assert_eq!(list_status(&app, &es).await, StatusCode::OK);

    header.kid = Some("unknown-kid".into());
    let es = jsonwebtoken::encode(&header, &claims, &ec_key).unwrap();
    assert_eq!(list_status(&app, &es).await, StatusCode::UNAUTHORIZED);

    // A key of another algorithm family cannot stand in: an EdDSA token signed by a stranger.
    let (stranger, _) = ed25519();
    assert_eq!(
        list_status(&app, &sign(Algorithm::EdDSA, &stranger, claims)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.issuer = "https://idp.example.com".into();
        s.auth.audience = "token-broker".into();
    })
    .await;
    let key = EncodingKey::from_secret(expose(&app.settings.auth.hs256_secret).as_bytes());
    let base = |iss: &str, aud: &str| {
        sign(
            Algorithm::HS256,
            &key,
            json!({ "sub": "s", "scope": "tokens:read", "tenant": "*", "exp": now() + 60, "iss": iss, "aud": aud }),
        )
    };
    assert_eq!(
        list_status(&app, &base("https://idp.example.com", "token-broker")).await,
        StatusCode::OK
    );
    assert_eq!(
        list_status(&app, &base("https://evil.example.com", "token-broker")).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = error_of(
        app.list(&base("https://idp.example.com", "other"), "")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].as_str().unwrap().contains("audience"));
    let no_iss = sign(
        Algorithm::HS256,
        &key,
        json!({ "sub": "s", "scope": "tokens:read", "tenant": "*", "exp": now() + 60, "aud": "token-broker" }),
    );
    assert_eq!(list_status(&app, &no_iss).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn not_before_audience_lists_and_the_lifetime_cap_are_enforced() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.audience = "token-broker".into();
        s.auth.max_token_lifetime_secs = 3600;
        s.auth.leeway_secs = 30;
    })
    .await;
    let key = EncodingKey::from_secret(expose(&app.settings.auth.hs256_secret).as_bytes());
    let jwt = |extra: serde_json::Value| {
        let mut claims = json!({ "sub": "s", "scope": "tokens:read", "tenant": "*",
                                 "aud": "token-broker", "iat": now(), "exp": now() + 600 });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign(Algorithm::HS256, &key, claims)
    };
    assert_eq!(list_status(&app, &jwt(json!({}))).await, StatusCode::OK);
    // nbf: in the future (beyond the leeway) refused, within the leeway accepted.
    let (status, body) = error_of(app.list(&jwt(json!({ "nbf": now() + 300 })), "").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"].as_str().unwrap().contains("not valid yet"),
        "{body}"
    );
    assert_eq!(
        list_status(&app, &jwt(json!({ "nbf": now() + 10 }))).await,
        StatusCode::OK
    );
    // aud may be a list (RFC 7519 §4.1.3); it must contain this broker.
    assert_eq!(
        list_status(&app, &jwt(json!({ "aud": ["crm-api", "token-broker"] }))).await,
        StatusCode::OK
    );
    assert_eq!(
        list_status(&app, &jwt(json!({ "aud": ["crm-api", "billing"] }))).await,
        StatusCode::UNAUTHORIZED
    );
    // A JWT that lives longer than auth.max_token_lifetime_secs is refused, with or without iat.
    let (status, body) = error_of(
        app.list(&jwt(json!({ "exp": now() + 86_400 * 365 })), "")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"].as_str().unwrap().contains("lives longer"),
        "{body}"
    );
    let mut no_iat = json!({ "sub": "s", "scope": "tokens:read", "tenant": "*",
                             "aud": "token-broker", "exp": now() + 7200 });
    assert_eq!(
        list_status(&app, &sign(Algorithm::HS256, &key, no_iat.clone())).await,
        StatusCode::UNAUTHORIZED
    );
    no_iat["exp"] = json!(now() + 1800);
    assert_eq!(
        list_status(&app, &sign(Algorithm::HS256, &key, no_iat)).await,
        StatusCode::OK
    );
    // Scopes may also come as a list (`scope` or `scp`), as identity providers issue them.
    assert_eq!(
        list_status(&app, &jwt(json!({ "scope": ["tokens:read"] }))).await,
        StatusCode::OK
    );
    assert_eq!(
        list_status(&app, &jwt(json!({ "scope": null, "scp": ["tokens:read"] }))).await,
        StatusCode::OK
    );
}
