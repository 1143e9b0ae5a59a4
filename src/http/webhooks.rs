//! `GET /v1/webhooks/events` and `POST /v1/webhooks/events/{seq}/retry`: what the webhook
//! outbox sent, is sending and gave up on (scope `tokens:admin`; a tenant's caller sees its
//! tenant's events only).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::extract::ApiQuery;
use super::paging;
use super::state::AppState;
use crate::auth::{Caller, Scope};
use crate::clock::rfc3339;
use crate::domain::InvalidField;
use crate::error::{Error, ErrorCode, Result};
use crate::store::{EventFilter, WebhookRow, DELIVERED, FAILED, PENDING};
use crate::tokens::Tenancy;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only events for this endpoint (its name in `webhooks.endpoints`).
    endpoint: Option<String>,
    /// `pending`, `delivered` or `failed` (given up).
    state: Option<String>,
    token_id: Option<String>,
    /// Callers of every tenant: only this tenant's events.
    tenant: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// One event for one endpoint, as its delivery stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookEventView {
    /// Its number in the outbox (`POST /v1/webhooks/events/{seq}/retry`).
    pub seq: i64,
    /// The `webhook-id` it is sent with.
    pub id: String,
    pub endpoint: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The token it is about (`*`: many, for `tokens.deleted`).
    pub token_id: String,
    pub tenant: Option<String>,
    /// `pending`, `delivered` or `failed` (given up after `webhooks.max_attempts`).
    pub state: String,
    pub attempts: i64,
    pub created_at: String,
    /// When a pending event is next sent.
    pub next_attempt_at: Option<String>,
    /// The endpoint's status on the last attempt.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub finished_at: Option<String>,
    /// The body sent (`type`, `timestamp`, `data`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<WebhookRow> for WebhookEventView {
    fn from(r: WebhookRow) -> Self {
        Self {
            seq: r.seq,
            id: r.event_id,
            endpoint: r.endpoint,
            event_type: r.event_type,
            token_id: r.token_id,
            tenant: Some(r.tenant).filter(|t| !t.is_empty()),
            next_attempt_at: (r.state == PENDING).then(|| rfc3339(r.next_attempt_at)),
            state: r.state,
            attempts: r.attempts,
            created_at: rfc3339(r.created_at),
            last_status: r.last_status,
            last_error: r.last_error,
            finished_at: r.finished_at.map(rfc3339),
            payload: serde_json::from_str(&r.payload).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookEventPage {
    pub events: Vec<WebhookEventView>,
    pub next_cursor: Option<String>,
}

const MAX_LIMIT: u32 = 500;

/// Webhook events, newest first.
#[utoipa::path(get, path = "/v1/webhooks/events", tag = "operations", params(EventParams),
    responses((status = 200, description = "A page of webhook events and how their delivery stands", body = WebhookEventPage)),
    security(("bearer" = ["tokens:admin"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<EventParams>,
) -> Result<Json<WebhookEventPage>> {
    caller.require(Scope::Admin)?;
    let limit = paging::limit(p.limit, 100, MAX_LIMIT)?;
    if let Some(s) = &p.state {
        if ![PENDING, DELIVERED, FAILED].contains(&s.as_str()) {
            return Err(InvalidField::new("state", "pending, delivered or failed").into());
        }
    }
    let tenant = paging::tenant(&caller.tenancy, p.tenant)?;
    let before = p
        .cursor
        .map(|c| {
            c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::bad_request(ErrorCode::InvalidCursor, ErrorCode::InvalidCursor.text())
            })
        })
        .transpose()?;
    let mut rows = state
        .tokens
        .store()
        .list_events(&EventFilter {
            tenant,
            endpoint: p.endpoint,
            state: p.state,
            token_id: p.token_id,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(WebhookEventPage {
        events: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// Sends an event again (a failed one, or a pending one now rather than after its backoff),
/// with a fresh count of attempts.
#[utoipa::path(post, path = "/v1/webhooks/events/{seq}/retry", tag = "operations",
    params(("seq" = i64, Path, description = "The event's seq")),
    responses((status = 200, description = "Queued to be sent now", body = WebhookEventView),
        (status = 400, description = "seq is not a number", body = ErrorBody),
        (status = 404, description = "No such event (or another tenant's)", body = ErrorBody)),
    security(("bearer" = ["tokens:admin"])))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> Result<Json<WebhookEventView>> {
    caller.require(Scope::Admin)?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| Error::bad_request(ErrorCode::InvalidId, "seq: not an event number"))?;
    let store = state.tokens.store();
    let visible = |row: &WebhookRow| match &caller.tenancy {
        Tenancy::Unrestricted => true,
        Tenancy::Only(t) => row.tenant == t.as_str(),
    };
    store
        .event(seq)
        .await?
        .filter(visible)
        .ok_or(Error::NotFound)?;
    store.retry_event(seq, state.tokens.now_ms()).await?;
    if let Some(webhooks) = &state.webhooks {
        webhooks.committed();
    }
    let row = store.event(seq).await?.ok_or(Error::NotFound)?;
    Ok(Json(row.into()))
}
