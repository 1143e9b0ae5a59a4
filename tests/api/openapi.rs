//! The OpenAPI document: generated from the code, committed in `docs/openapi.json`, and every
//! operation it lists is a route the broker serves.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{spawn_app, Backend};

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app(Backend::Sqlite).await;
    let r = app.get_public("/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let served: Value = r.json().await.unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        served == committed,
        "docs/openapi.json is stale: run `cargo run -q -- openapi > docs/openapi.json`"
    );
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_secured() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app.get_public("/openapi.json").await.json().await.unwrap();
    let admin = app.admin();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let url = app.url(&path.replace("{id}", "no-such-id"));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = app.http.request(method.clone(), &url).bearer_auth(&admin);
            if method == Method::POST || method == Method::PUT {
                request = request
                    .header("content-type", "application/json")
                    .body("{}");
            }
            let r = request.send().await.unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
            let public = !path.starts_with("/v1/") || path == "/v1/oauth/callback";
            assert_eq!(
                op.get("security").is_none(),
                public,
                "{method} {path}: security"
            );
        }
    }
    assert_eq!(operations, 26);
}

#[tokio::test]
async fn a_human_readable_api_page_is_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let r = app.get_public("/docs").await;
    assert_eq!(r.status(), StatusCode::OK);
    // Everything it loads comes from the broker (the browser test renders it in Chromium).
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("/openapi.json"));
    assert!(page.contains("src=\"/docs/redoc.standalone.js\""));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    let script = app.get_public("/docs/redoc.standalone.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(
        script.bytes().await.unwrap().len() > 500_000,
        "the embedded Redoc bundle"
    );
}
