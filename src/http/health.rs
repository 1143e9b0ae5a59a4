//! `/healthz` (the process answers) and `/readyz` (the database answers). No JWT, no token data.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::code_response;
use super::state::AppState;
use crate::error::ErrorCode;

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "{\"status\": \"ok\"}")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "{\"status\": \"ready\"}"), (status = 503, description = "database_unavailable", body = super::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.tokens.store().ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            code_response(
                ErrorCode::DatabaseUnavailable,
                "the database does not answer",
            )
        }
    }
}
