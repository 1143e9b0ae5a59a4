//! The HTTP surface: routes, shared state and the tower-http stack around them.

mod audit;
pub mod error;
pub mod extract;
mod health;
mod metrics;
pub mod oauth;
mod observe;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use self::error::error_response;
use crate::audit::AuditLog;
use crate::auth::Verifier;
use crate::oauth::OAuthService;
use crate::tokens::TokenService;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub tokens: TokenService,
    pub oauth: OAuthService,
    pub verifier: Arc<Verifier>,
    pub audit: AuditLog,
}

/// Limits of the HTTP stack.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole router, as `serve` runs it and tests drive it.
pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    let v1 = Router::new()
        .route(
            "/tokens",
            get(tokens::list)
                .put(tokens::save)
                .delete(tokens::delete_all),
        )
        .route("/tokens/find", post(tokens::find))
        .route("/tokens/{id}", get(tokens::get).delete(tokens::delete))
        .route("/tokens/{id}/access-token", get(oauth::access_token))
        .route("/tokens/{id}/refresh", post(oauth::refresh))
        .route("/tokens/{id}/revoke", post(oauth::revoke))
        .route("/oauth/exchange", post(oauth::exchange))
        .route("/oauth/authorize", get(oauth::authorize))
        .route("/oauth/callback", get(oauth::callback))
        .route("/audit", get(audit::list));

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .nest("/v1", v1)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(middleware::from_fn(json_errors))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<Body>| {
                            let request_id = req
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            // The path only: query strings can carry OAuth codes.
                            tracing::info_span!(
                                "request",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id,
                                caller = tracing::field::Empty,
                                token_id = tracing::field::Empty,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    // The panic payload may hold anything; it is not logged or sent.
                    tracing::error!("a request handler panicked");
                    error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error; see the broker's log for details",
                    )
                }))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    limits.request_timeout,
                )),
        )
}

/// Gives the bare error answers of the framework and layers (405, 408, 413, …) the same JSON
/// body as every other error.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    // Only bare answers (no content type: the framework's and layers' own) are rewritten; our
    // JSON errors and the login pages keep their bodies.
    let has_body_type = response.headers().contains_key(header::CONTENT_TYPE);
    if !(status.is_client_error() || status.is_server_error()) || has_body_type {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not take that method",
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than the broker accepts",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        s if s.is_server_error() => (
            "internal",
            "internal error; see the broker's log for details",
        ),
        _ => ("bad_request", "the request could not be handled"),
    };
    let mut fresh = error_response(status, code, message);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}
