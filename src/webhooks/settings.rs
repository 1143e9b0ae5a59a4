//! The `[webhooks]` settings (read by `config`, which owns loading them).

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

/// Webhooks: where events go and how they are delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// How often each broker looks for events to deliver (a local change wakes it at once).
    pub poll_interval_ms: u64,
    /// How long an endpoint may take to answer one delivery.
    pub timeout_secs: u64,
    /// Deliveries in flight at once, per broker.
    pub concurrency: usize,
    /// Attempts before an event is given up (state `failed`); retried after
    /// `retry_min_delay_ms`, doubling up to `retry_max_delay_ms`.
    pub max_attempts: u32,
    pub retry_min_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// `token.refresh_failing` is sent after this many failed refreshes of a token in a row.
    pub refresh_failures_before_event: u32,
    /// Delivered and failed events are deleted after this many days.
    pub keep_days: u64,
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSettings>,
}

/// One `[webhooks.endpoints.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    pub url: String,
    /// A Standard Webhooks secret, `whsec_<base64 of 24–64 bytes>`.
    pub secret: SecretString,
    /// Event types sent (all when empty).
    #[serde(default)]
    pub events: Vec<String>,
    /// Only events about this tenant's tokens ("" for tokens of no tenant).
    pub tenant: Option<String>,
}
