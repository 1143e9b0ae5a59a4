//! Per-request bookkeeping after routing: Prometheus metrics for every route and an audit event
//! for every call of a route registered as audited (see `routes`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::routes::{Audit, RouteTable};
use super::state::AppState;
use crate::audit;
use crate::error::ErrorCode;
use crate::store::AuditRow;

/// What [`observe`] needs: the services, and the audit declaration of every route.
#[derive(Clone)]
pub struct Observer {
    pub app: AppState,
    pub routes: Arc<RouteTable>,
}

pub async fn observe(
    State(Observer { app: state, routes }): State<Observer>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let Some(Audit::Record(action)) = routes.audit(&method, route) else {
        let response = next.run(req).await;
        crate::metrics::record_request(
            &method,
            route,
            response.status().as_u16(),
            started.elapsed(),
        );
        return response;
    };
    let request_id = req.headers().get("x-request-id").cloned();
    let source = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    // Attempts refused before the handler ran (401) still name the token they aimed at; the path
    // is only parsed for them (the handler notes the id of every call it runs).
    let uri = req.uri().clone();

    let (response, note) = audit::with_note(next.run(req)).await;

    let status = response.status();
    crate::metrics::record_request(&method, route, status.as_u16(), started.elapsed());

    let outcome = match response.extensions().get::<ErrorCode>() {
        Some(code) => code.as_str(),
        None if status.is_client_error() || status.is_server_error() => "error",
        None => "ok",
    };
    state
        .audit
        .record(AuditRow {
            // Given by the audit writer.
            id: String::new(),
            at: state.tokens.now_ms(),
            caller: note.caller.unwrap_or_else(|| audit::ANONYMOUS.into()),
            // The token's tenant when the call reached one, else the caller's own.
            tenant: note.token_tenant.or(note.tenant).unwrap_or_default(),
            token_id: note.token_id.or_else(|| {
                route
                    .starts_with("/v1/tokens/{id}")
                    .then(|| uri.path().split('/').nth(3))
                    .flatten()
                    .filter(|id| crate::domain::TokenId::parse(*id).is_ok())
                    .map(str::to_owned)
            }),
            action: action.as_str().into(),
            outcome: outcome.into(),
            status: i64::from(status.as_u16()),
            detail: note.detail,
            request_id: request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(64).collect()),
            occurrences: 1,
            last_at: None,
            source,
        })
        .await;
    response
}
