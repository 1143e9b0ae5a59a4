//! Webhooks: configured endpoints are told at once when a connection changes — created or
//! replaced by a login or exchange, needing re-authorization, revoked, deleted, or refreshing in
//! vain — so an application can ask the person to reconnect before a call fails.
//!
//! Each event is one row per endpoint in the outbox table (`store/webhooks.rs`), written in the
//! same transaction as the change it reports; `delivery.rs` sends it at least once, signed the
//! Standard Webhooks way (`signing.rs`), with retries and backoff, in order per token, from
//! whichever replica claims it. Events carry who and what, never a token or secret value.

pub mod delivery;
mod settings;
mod signing;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use url::Url;

pub use settings::{EndpointSettings, WebhookSettings};
pub use signing::SigningKey;

use crate::domain::Token;
use crate::store::WebhookRow;

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A login or exchange stored a new token.
    ConnectionCreated,
    /// A login or exchange replaced the grant of a stored token (same user and provider).
    ConnectionReplaced,
    /// The provider refused the refresh token: the person must log in again.
    TokenNeedsReauth,
    /// Revoked at the provider (and deleted), or saved with status `revoked`.
    TokenRevoked,
    /// Deleted (delete_token).
    TokenDeleted,
    /// Every token of a tenant, or all, deleted at once (delete_tokens).
    TokensDeleted,
    /// Refreshes keep failing (provider down or refusing) for `webhooks.refresh_failures_before_event`
    /// attempts in a row.
    TokenRefreshFailing,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        Self::ConnectionCreated,
        Self::ConnectionReplaced,
        Self::TokenNeedsReauth,
        Self::TokenRevoked,
        Self::TokenDeleted,
        Self::TokensDeleted,
        Self::TokenRefreshFailing,
    ];

    /// The event's `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionCreated => "connection.created",
            Self::ConnectionReplaced => "connection.replaced",
            Self::TokenNeedsReauth => "token.needs_reauth",
            Self::TokenRevoked => "token.revoked",
            Self::TokenDeleted => "token.deleted",
            Self::TokensDeleted => "tokens.deleted",
            Self::TokenRefreshFailing => "token.refresh_failing",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One configured endpoint.
#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub url: Url,
    pub key: SigningKey,
    /// The kinds it wants (all when empty).
    pub kinds: Vec<EventKind>,
    /// Only events of this tenant's tokens ('' for tokens of no tenant), when set.
    pub tenant: Option<String>,
}

impl Endpoint {
    fn wants(&self, kind: EventKind, tenant: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self.tenant.as_deref().is_none_or(|t| t == tenant)
    }
}

/// What the token store needs to report its changes: the outbox, and the deliverer to wake.
#[derive(Clone)]
pub struct Events {
    outbox: Arc<Outbox>,
    wake: Arc<tokio::sync::Notify>,
}

impl Events {
    /// `None` when no endpoint is configured: then no write carries events.
    pub fn new(outbox: Arc<Outbox>, wake: Arc<tokio::sync::Notify>) -> Option<Self> {
        (!outbox.is_empty()).then_some(Self { outbox, wake })
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Tells the deliverer that events were committed.
    pub fn committed(&self) {
        self.wake.notify_one();
    }
}

/// The configured endpoints, and the outbox rows an event makes for them.
#[derive(Debug, Default)]
pub struct Outbox {
    endpoints: Vec<Endpoint>,
}

impl Outbox {
    /// The endpoints of `webhooks.endpoints`, checked (the errors name the key: `config` turns
    /// them into a `ConfigError`).
    pub fn from_config(endpoints: &BTreeMap<String, EndpointSettings>) -> Result<Self, String> {
        let endpoints = endpoints
            .iter()
            .map(|(name, s)| {
                let field = |f: &str| format!("webhooks.endpoints.{name}.{f}");
                if name.is_empty()
                    || name.len() > 100
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(format!(
                        "webhooks.endpoints.{name}: a name of letters, digits, '-', '_' and '.'"
                    ));
                }
                let url = Url::parse(&s.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| format!("{}: not an http(s) URL", field("url")))?;
                let key = SigningKey::parse(secrecy::ExposeSecret::expose_secret(&s.secret))
                    .map_err(|e| format!("{}: {e}", field("secret")))?;
                let kinds = s
                    .events
                    .iter()
                    .map(|e| {
                        EventKind::parse(e).ok_or_else(|| {
                            format!(
                                "{}: `{e}` is not one of {}",
                                field("events"),
                                EventKind::ALL.map(EventKind::as_str).join(", ")
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Endpoint {
                    name: name.clone(),
                    url,
                    key,
                    kinds,
                    tenant: s.tenant.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { endpoints })
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// The outbox rows of a `kind` event about `token`, with `extra` fields in its `data`: one
    /// per endpoint that wants it (none when none does).
    pub fn about(
        &self,
        kind: EventKind,
        token: &Token,
        extra: Value,
        now_ms: i64,
    ) -> Vec<WebhookRow> {
        let tenant = token.tenant.as_ref().map_or("", |t| t.as_str());
        let mut data = json!({
            "token_id": token.id.as_str(),
            "tenant": token.tenant.as_ref().map(|t| t.as_str()),
            "provider": token.provider.as_str(),
            "user_name": token.user_name.as_ref().map(|u| u.as_str()),
            "identity": token.identity.as_ref().map(|i| json!({
                "subject": i.subject, "email": i.email, "name": i.name,
            })),
            "status": token.status.as_str(),
        });
        merge(&mut data, extra);
        self.rows(kind, token.id.as_str(), tenant, data, now_ms)
    }

    /// The outbox rows of a delete_tokens: `tenant` `None` for every tenant.
    pub fn deleted_all(&self, tenant: Option<&str>, count: u64, now_ms: i64) -> Vec<WebhookRow> {
        let data = json!({ "tenant": tenant, "all_tenants": tenant.is_none(), "count": count });
        // Endpoints of one tenant hear of a delete of every tenant too.
        let mut rows = Vec::new();
        for endpoint in &self.endpoints {
            let tenant_of_row = match (tenant, &endpoint.tenant) {
                (Some(t), _) => t,
                (None, Some(own)) => own.as_str(),
                (None, None) => "",
            };
            rows.extend(self.row_for(
                endpoint,
                EventKind::TokensDeleted,
                "*",
                tenant_of_row,
                &data,
                now_ms,
            ));
        }
        rows
    }

    fn rows(
        &self,
        kind: EventKind,
        token_id: &str,
        tenant: &str,
        data: Value,
        now_ms: i64,
    ) -> Vec<WebhookRow> {
        self.endpoints
            .iter()
            .filter_map(|e| self.row_for(e, kind, token_id, tenant, &data, now_ms))
            .collect()
    }

    fn row_for(
        &self,
        endpoint: &Endpoint,
        kind: EventKind,
        token_id: &str,
        tenant: &str,
        data: &Value,
        now_ms: i64,
    ) -> Option<WebhookRow> {
        if !endpoint.wants(kind, tenant) {
            return None;
        }
        let timestamp = chrono::DateTime::from_timestamp_millis(now_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let payload = json!({ "type": kind.as_str(), "timestamp": timestamp, "data": data });
        Some(WebhookRow {
            seq: 0,
            event_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            endpoint: endpoint.name.clone(),
            event_type: kind.as_str().into(),
            token_id: token_id.into(),
            tenant: tenant.into(),
            payload: payload.to_string(),
            created_at: now_ms,
            state: crate::store::PENDING.into(),
            attempts: 0,
            next_attempt_at: now_ms,
            last_status: None,
            last_error: None,
            finished_at: None,
        })
    }
}

fn merge(data: &mut Value, extra: Value) {
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
}
