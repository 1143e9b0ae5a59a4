//! Bad input: a clear JSON error with the right status, the field named, no secret echoed, and
//! stored tokens untouched.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_of, spawn_app, Backend, TestApp};

crate::on_every_backend!(bad_input_leaves_stored_tokens_intact);

async fn put_raw(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.http
        .put(app.url("/v1/tokens"))
        .bearer_auth(app.admin())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app(Backend::Sqlite).await;
    let (status, body) =
        error_of(put_raw(&app, "application/json", "{\"user_name\": ").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_422_naming_the_field() {
    let app = spawn_app(Backend::Sqlite).await;
    let cases = [
        (
            json!({ "user_name": "a", "expiry_time": "tomorrow" }),
            "expiry_time",
        ),
        (
            json!({ "user_name": 42, "refresh_token": "x" }),
            "user_name",
        ),
        (json!({ "user_name": "a", "refresh_tokn": "x" }), "body"),
        (json!({ "user_name": "a", "status": "sleeping" }), "status"),
        (
            json!({ "user_name": "a", "expiry_time": -5 }),
            "expiry_time",
        ),
        (
            json!({ "user_name": "a", "provider": "not a key!" }),
            "provider",
        ),
        (
            json!({ "user_name": "", "refresh_token": "x" }),
            "user_name",
        ),
        (
            json!({ "user_name": "a", "refresh_token": "" }),
            "refresh_token",
        ),
        (json!({ "user_name": "new-user" }), "refresh_token"),
        (json!([1, 2, 3]), "body"),
    ];
    for (body, field) in cases {
        let (status, err) = error_of(app.save(&app.admin(), &body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(err["error"], "invalid_field", "{body}");
        if field != "body" {
            assert_eq!(err["field"], field, "{body} -> {err}");
        } else {
            assert!(err["message"].as_str().unwrap().len() > 5);
        }
    }
    let (_, err) = error_of(
        app.save(
            &app.admin(),
            &json!({ "user_name": "a", "refresh_tokn": "x" }),
        )
        .await,
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("refresh_tokn"),
        "{err}"
    );
}

#[tokio::test]
async fn a_secret_sent_in_the_wrong_place_is_not_echoed() {
    let app = spawn_app(Backend::Sqlite).await;
    let secret = "1000.SUPERSECRET.refresh";
    for body in [
        json!({ "user_name": "a", "expiry_time": secret }),
        json!({ "user_name": "a", "status": secret }),
        json!({ "user_name": "a", "refresh_token": [secret] }),
        json!({ "user_name": "a", "refresh_token": { "value": secret } }),
    ] {
        let r = app.save(&app.admin(), &body).await;
        let text = r.text().await.unwrap();
        assert!(!text.contains("SUPERSECRET"), "{text}");
    }
    let r = put_raw(
        &app,
        "application/json",
        format!("{{\"refresh_token\": \"{secret}\" oops"),
    )
    .await;
    assert!(!r.text().await.unwrap().contains("SUPERSECRET"));
}

#[tokio::test]
async fn oversized_bodies_are_413_and_wrong_content_types_415() {
    let app = spawn_app_small_limit().await;
    let big = json!({ "user_name": "a", "refresh_token": "x".repeat(4096) }).to_string();
    let (status, body) = error_of(put_raw(&app, "application/json", big).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );

    let (status, body) = error_of(put_raw(&app, "text/plain", "{}").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
}

async fn spawn_app_small_limit() -> TestApp {
    crate::helpers::spawn_app_with(Backend::Sqlite, |s| s.server.body_limit_bytes = 1024).await
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app(Backend::Sqlite).await;
    let (status, body) = error_of(app.get_public("/v2/nothing").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) =
        error_of(app.http.patch(app.url("/v1/tokens")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (status, _) = error_of(app.list(&app.admin(), "?color=blue").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn bad_input_leaves_stored_tokens_intact(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app
        .seed(json!({ "user_name": "keep@example.com", "refresh_token": "rt-keep", "access_token": "at-keep", "client_secret": "cs" }))
        .await;
    let id = before["id"].as_str().unwrap();
    let attempts = [
        json!({ "user_name": "keep@example.com", "expiry_time": "soon" }),
        json!({ "user_name": "keep@example.com", "refresh_token": "" }),
        json!({ "user_name": "keep@example.com", "status": "gone" }),
        json!({ "id": id, "user_name": "x".repeat(300) }),
        json!({ "id": id, "client_id": "c".repeat(300) }),
        json!({ "user_name": "keep@example.com", "tenant": "bad tenant" }),
    ];
    for body in attempts {
        let r = app.save(&app.admin(), &body).await;
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
    }
    let after: Value = app.get_token(&app.admin(), id).await.json().await.unwrap();
    assert_eq!(after, before);
    assert_eq!(app.count().await, 1);
}
