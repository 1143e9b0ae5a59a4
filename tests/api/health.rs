//! Liveness and readiness: no JWT needed, no token data shown.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend};

crate::on_every_backend!(health_and_readiness_answer_without_a_jwt);

async fn health_and_readiness_answer_without_a_jwt(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.healthz().await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().contains_key("x-request-id"),
        "every answer carries a request id"
    );
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "status": "ok" }));
    let r = app.readyz().await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "status": "ready" })
    );
}
