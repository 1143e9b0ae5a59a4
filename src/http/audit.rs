//! `GET /v1/audit`: the audit trail, newest first (scope `tokens:admin`).

use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::extract::ApiQuery;
use super::paging;
use super::state::AppState;
use crate::auth::{Caller, Scope};
use crate::clock::rfc3339;
use crate::domain::TokenId;
use crate::error::{Error, ErrorCode, Result};
use crate::store::{AuditFilter, AuditRow};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    token_id: Option<String>,
    caller: Option<String>,
    action: Option<String>,
    tenant: Option<String>,
    /// Only events at or after this time (ms since the epoch).
    since: Option<i64>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// One audit event as callers see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventView {
    pub id: String,
    pub at: String,
    pub caller: String,
    pub tenant: Option<String>,
    pub token_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub status: i64,
    pub detail: Option<String>,
    pub request_id: Option<String>,
    /// How many identical calls this event stands for (successful access-token reads are folded
    /// per caller and token over a few seconds; calls refused for want of a valid JWT per
    /// route, reason and source over `audit.refused_window_secs`).
    pub occurrences: i64,
    /// When the last of them happened (folded events only).
    pub last_at: Option<String>,
    /// The client's address, on refused unauthenticated calls.
    pub source: Option<String>,
}

impl From<AuditRow> for AuditEventView {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: rfc3339(r.at),
            caller: r.caller,
            tenant: Some(r.tenant).filter(|t| !t.is_empty()),
            token_id: r.token_id,
            action: r.action,
            outcome: r.outcome,
            status: r.status,
            detail: r.detail,
            request_id: r.request_id,
            occurrences: r.occurrences,
            last_at: r.last_at.map(rfc3339),
            source: r.source,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
}

const MAX_LIMIT: u32 = 1000;

/// The audit trail, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "operations", params(AuditParams),
    responses((status = 200, description = "A page of audit events", body = AuditPage)),
    security(("bearer" = ["tokens:admin"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>> {
    caller.require(Scope::Admin)?;
    let limit = paging::limit(p.limit, 100, MAX_LIMIT)?;
    let tenant = paging::tenant(&caller.tenancy, p.tenant)?;
    let before = p
        .cursor
        .map(|c| {
            B64URL
                .decode(&c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|id| TokenId::parse(id.clone()).is_ok())
                .ok_or_else(|| {
                    Error::bad_request(ErrorCode::InvalidCursor, ErrorCode::InvalidCursor.text())
                })
        })
        .transpose()?;
    // Everything recorded before this request is visible to it.
    state.audit.flush().await;
    let mut rows = state
        .tokens
        .store()
        .list_audit(&AuditFilter {
            tenant,
            token_id: p.token_id,
            caller: p.caller,
            action: p.action,
            since: p.since,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| B64URL.encode(r.id.as_bytes())))
        .flatten();
    Ok(Json(AuditPage {
        events: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}
