//! `GET /metrics`: Prometheus text format. No JWT; counts only, never token data.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::state::AppState;

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    match state.tokens.store().count_by_status().await {
        Ok(counts) => {
            for status in ["active", "needs_reauth", "revoked"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("tokens", "status" => status).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count tokens for /metrics"),
    }
    let handle = crate::metrics::handle();
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
