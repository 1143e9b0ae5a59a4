//! The bare-axum ceiling: `GET /healthz` → 200 "ok" on 127.0.0.1:$PORT and nothing else, on a
//! multi-thread tokio runtime with `axum::serve` (no middleware, no state, no logging). bench/run.sh
//! measures it with the same wrk settings as the broker's `/healthz` and hot path.
use axum::{routing::get, Router};

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("PORT: a port number");
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind 127.0.0.1:$PORT");
    axum::serve(listener, app).await.expect("serve");
}
