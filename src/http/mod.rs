//! The HTTP surface: the tower-http stack around the routes of `routes`, and the answers of the
//! framework and layers given the same JSON error body as every handler's.

mod audit;
mod connect;
mod docs;
pub mod error;
pub mod extract;
mod health;
mod metrics;
pub mod oauth;
mod observe;
mod pages;
mod paging;
mod proxy;
mod routes;
mod state;
pub mod tokens;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use self::error::{code_response, error_response};
use self::observe::Observer;
pub use self::state::{AppState, Services};
use crate::error::ErrorCode;

/// Limits of the HTTP stack.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OpenAPI 3 document of this service, generated from the code.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::api().1
}

/// The whole router, as `serve` runs it and tests drive it.
pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    let (api, doc, table) = routes::api();
    let doc = Arc::new(doc);
    let observer = Observer {
        app: state.clone(),
        routes: Arc::new(table),
    };
    api.route(
        "/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
    .route("/docs", get(docs::page))
    .route("/docs/redoc.standalone.js", get(docs::script))
    .route_layer(middleware::from_fn_with_state(observer, observe::observe))
    .fallback(|method: axum::http::Method| async move {
        // Counted under one fixed route label, whatever path was asked for.
        crate::metrics::record_request(&method, "unmatched", 404, Duration::ZERO);
        code_response(ErrorCode::NotFound, "no such endpoint")
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
                        // The path only: query strings can carry OAuth codes. A connect
                        // link's path is its secret, so it is logged without it.
                        let path = req.uri().path();
                        let path = if path.starts_with("/connect/") {
                            "/connect/…"
                        } else {
                            path
                        };
                        tracing::info_span!(
                            "request",
                            method = %req.method(),
                            path = %path,
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
                ErrorCode::Internal.into_response()
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
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    // The status stays the framework's: a bare 503 is `internal`, a bare 404 `bad_request`.
    let mut fresh = error_response(status, code, code.text());
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}
