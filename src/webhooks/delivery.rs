//! Delivering the outbox: every broker looks for due events every `webhooks.poll_interval_ms`
//! (and at once after a change of its own), claims each with a lease in the database so only one
//! broker sends it, POSTs it signed, and records the outcome: delivered on a 2xx; otherwise
//! pending again after a backoff that doubles from `retry_min_delay_ms` to `retry_max_delay_ms`,
//! or failed after `max_attempts`. An event waits while an earlier one of the same token is
//! pending for the same endpoint, so each endpoint sees a token's events in order. A broker that
//! dies holding a lease leaves the event to be claimed again when the lease runs out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::Outbox;
use super::WebhookSettings;
use crate::clock::Clock;
use crate::store::{Store, WebhookRow, DELIVERED, FAILED, PENDING};

/// Events read per look.
const BATCH: u32 = 64;
/// How often the pending counts are read for the metrics, and old events deleted.
const GAUGE_EVERY: Duration = Duration::from_secs(10);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Sends the outbox's events; one per broker.
#[derive(Clone)]
pub struct Deliverer {
    store: Store,
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    settings: Arc<WebhookSettings>,
    /// This broker's name on the leases it takes.
    owner: String,
    wake: Arc<Notify>,
}

impl Deliverer {
    pub fn new(
        store: Store,
        outbox: Arc<Outbox>,
        clock: Arc<dyn Clock>,
        settings: WebhookSettings,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.min(5)))
            // An endpoint's redirect is not followed: the event goes where it was configured to.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("token-broker-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is available");
        Self {
            store,
            outbox,
            clock,
            http,
            settings: Arc::new(settings),
            owner: format!("deliverer-{}", uuid::Uuid::new_v4().simple()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// What wakes the deliverer at once (notified after each change with events).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Delivers until the process ends. `None` when no endpoint is configured.
    pub fn spawn(self) -> Option<JoinHandle<()>> {
        if self.outbox.is_empty() {
            return None;
        }
        Some(tokio::spawn(async move {
            let every = Duration::from_millis(self.settings.poll_interval_ms.max(10));
            let (mut gauged, mut purged) = (None::<Instant>, None::<Instant>);
            loop {
                self.deliver_due().await;
                if gauged.is_none_or(|at| at.elapsed() >= GAUGE_EVERY) {
                    self.gauge().await;
                    gauged = Some(Instant::now());
                }
                if purged.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                    self.purge().await;
                    purged = Some(Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = self.wake.notified() => {}
                }
            }
        }))
    }

    /// Sends every event due now, `concurrency` at a time.
    pub async fn deliver_due(&self) {
        loop {
            let due = match self.store.due_events(self.clock.now_ms(), BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the webhook outbox");
                    return;
                }
            };
            let full = due.len() == BATCH as usize;
            futures::stream::iter(due)
                .for_each_concurrent(self.settings.concurrency.max(1), |e| self.attempt(e))
                .await;
            if !full {
                return;
            }
        }
    }

    async fn attempt(&self, event: WebhookRow) {
        let now = self.clock.now_ms();
        // Long enough for one attempt; a broker that dies holding it delays the event this long.
        let lease = self.settings.timeout_secs as i64 * 1000 + 5000;
        match self
            .store
            .claim_event(event.seq, &self.owner, now, now + lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a webhook event");
                return;
            }
        }
        let started = Instant::now();
        let (status, error) = match self.outbox.endpoint(&event.endpoint) {
            None => (
                None,
                Some("the endpoint is no longer configured".to_owned()),
            ),
            Some(endpoint) => {
                let timestamp = now / 1000;
                let signature =
                    endpoint
                        .key
                        .sign(&event.event_id, timestamp, event.payload.as_bytes());
                let sent = self
                    .http
                    .post(endpoint.url.clone())
                    .header("content-type", "application/json")
                    .header("webhook-id", &event.event_id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .body(event.payload.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        (Some(i64::from(r.status().as_u16())), None)
                    }
                    Ok(r) => (
                        Some(i64::from(r.status().as_u16())),
                        Some(format!("the endpoint answered {}", r.status().as_u16())),
                    ),
                    Err(e) => (None, Some(describe(&e))),
                }
            }
        };
        metrics::histogram!("webhook_delivery_duration_seconds", "endpoint" => event.endpoint.clone())
            .record(started.elapsed().as_secs_f64());
        let attempts = event.attempts + 1;
        let now = self.clock.now_ms();
        let (state, next) = match &error {
            None => (DELIVERED, now),
            Some(_) if attempts >= i64::from(self.settings.max_attempts) => (FAILED, now),
            Some(_) => (PENDING, now + self.backoff_ms(attempts)),
        };
        let outcome = match state {
            DELIVERED => "delivered",
            FAILED => "gave_up",
            _ => "retrying",
        };
        metrics::counter!("webhook_deliveries_total", "endpoint" => event.endpoint.clone(), "outcome" => outcome)
            .increment(1);
        if let Some(error) = &error {
            tracing::info!(endpoint = %event.endpoint, event_type = %event.event_type, attempts, error = %error, outcome, "a webhook delivery failed");
        }
        if let Err(e) = self
            .store
            .finish_attempt(event.seq, &self.owner, state, status, error, next, now)
            .await
        {
            // The lease runs out and the event is sent again: at least once.
            tracing::warn!(error = %e, "could not record a webhook delivery");
        }
    }

    /// The wait before attempt `attempts + 1`: doubling, jittered by up to a quarter.
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let min = self.settings.retry_min_delay_ms.max(1) as f64;
        let max = self.settings.retry_max_delay_ms.max(1) as f64;
        let base = (min * 2f64.powi(attempts.clamp(1, 40) as i32 - 1)).min(max);
        (base * rand::thread_rng().gen_range(0.75..=1.0)) as i64
    }

    async fn gauge(&self) {
        if let Ok(pending) = self.store.pending_events().await {
            for endpoint in self.outbox.endpoints.iter().map(|e| e.name.as_str()) {
                let n = pending
                    .iter()
                    .find(|(e, _)| e == endpoint)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("webhook_events_pending", "endpoint" => endpoint.to_owned())
                    .set(n as f64);
            }
        }
    }

    async fn purge(&self) {
        let before = self.clock.now_ms() - self.settings.keep_days as i64 * 86_400_000;
        if let Err(e) = self.store.purge_events(before).await {
            tracing::warn!(error = %e, "could not delete old webhook events");
        }
    }
}

/// Why a delivery failed, without the URL (whose query string may hold a token of the
/// endpoint's own).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the endpoint did not answer in time".into()
    } else if e.is_connect() {
        "the endpoint could not be reached".into()
    } else {
        "the delivery failed".into()
    }
}
