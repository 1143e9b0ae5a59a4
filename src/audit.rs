//! The audit trail: every call on `/v1` — reads of tokens and access tokens, writes, refreshes,
//! revokes, deletes and refused attempts — recorded with caller, tenant, token id, action,
//! outcome and time. Events go through a channel to a writer task that inserts them in batches,
//! so the hot path never waits on an audit INSERT. No secret is ever part of an event.
//!
//! Successful access-token reads, the hot path, are folded: one row per caller and token over
//! at most `audit.read_window_ms` (5 s), with `occurrences` and the time of the first and the
//! last read; so are proxied calls the API answered below 400, per method and status. They are folded where they are recorded, so a read costs a map lookup, not a
//! message and a task wake-up; the writer takes them a slice at a time, so their rows reach the
//! database as an even flow rather than in one burst per window. Everything else — failures,
//! writes, reads of secrets, refusals of known callers — is one row per call, through the channel.
//!
//! Calls refused before a caller was known (no or a bad JWT; an unknown, used or expired connect
//! link or login state) are counted rather than written one by one: one row per route, outcome,
//! reason and source address over at most `audit.refused_window_secs`, with
//! `occurrences`, so anonymous traffic cannot fill the database. At most [`MAX_REFUSED_KEYS`]
//! such rows are kept per window; beyond that, sources are counted together as `other`.
//! Rows older than `audit.retention_days` are deleted by [`spawn_retention`].

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::{AuditRow, Store};

/// Events waiting for the writer; a full queue makes callers wait (nothing is dropped).
const QUEUE: usize = 10_000;
/// Largest batch written at once.
const BATCH: usize = 200;

/// What an audited call did: the `action` of its event. Each route declares its own where it
/// is registered (`http::routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    ListTokens,
    SaveToken,
    DeleteTokens,
    FindToken,
    GetToken,
    DeleteToken,
    GetAccessToken,
    Refresh,
    Revoke,
    Exchange,
    Authorize,
    LoginCallback,
    CreateConnectSession,
    GetConnectSession,
    OpenConnectLink,
    Proxy,
    ListWebhookEvents,
    RetryWebhookEvent,
}

impl Action {
    /// The name stored in the trail and given to `GET /v1/audit?action=`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ListTokens => "list_tokens",
            Self::SaveToken => "save_token",
            Self::DeleteTokens => "delete_tokens",
            Self::FindToken => "find_token",
            Self::GetToken => "get_token",
            Self::DeleteToken => "delete_token",
            Self::GetAccessToken => "get_access_token",
            Self::Refresh => "refresh",
            Self::Revoke => "revoke",
            Self::Exchange => "exchange",
            Self::Authorize => "authorize",
            Self::LoginCallback => "login_callback",
            Self::CreateConnectSession => "create_connect_session",
            Self::GetConnectSession => "get_connect_session",
            Self::OpenConnectLink => "open_connect_link",
            Self::Proxy => "proxy",
            Self::ListWebhookEvents => "list_webhook_events",
            Self::RetryWebhookEvent => "retry_webhook_event",
        }
    }
}

/// Successful access-token reads, and proxied calls the API answered below 400.
fn is_foldable(row: &AuditRow) -> bool {
    row.outcome == "ok"
        && (row.action == Action::GetAccessToken.as_str()
            || (row.action == Action::Proxy.as_str() && row.status < 400))
}

/// What folded rows have in common: caller, tenant, token, action, status and detail.
#[allow(clippy::type_complexity)]
fn folded_by(r: &AuditRow) -> (&str, &str, Option<&str>, &str, i64, Option<&str>) {
    (
        &r.caller,
        &r.tenant,
        r.token_id.as_deref(),
        &r.action,
        r.status,
        r.detail.as_deref(),
    )
}

/// The caller recorded for calls that carried no valid JWT.
pub const ANONYMOUS: &str = "anonymous";

/// Calls refused before any caller was known: no or a bad JWT (401), an unknown, used or expired
/// connect link or login state (4xx). Anyone can send these, so they are counted, not written
/// one by one.
fn is_refused_anonymous(row: &AuditRow) -> bool {
    row.caller == ANONYMOUS && (400..500).contains(&row.status)
}

/// Refused-call rows one window may hold; further sources are counted as `other`.
pub const MAX_REFUSED_KEYS: usize = 10_000;

/// What a request did, filled in while it runs (see [`note_caller`], [`note_token`]).
#[derive(Debug, Default, Clone)]
pub struct AuditNote {
    pub caller: Option<String>,
    pub tenant: Option<String>,
    pub token_id: Option<String>,
    pub detail: Option<String>,
    /// The tenant of the token the call acted on (audit rows carry it rather than the
    /// caller's, so a tenant's admin sees every event on its tokens).
    pub token_tenant: Option<String>,
}

tokio::task_local! {
    static NOTE: RefCell<AuditNote>;
}

/// Runs a request with an empty note, returning the note with what the handler wrote in it.
pub async fn with_note<F: std::future::Future>(f: F) -> (F::Output, AuditNote) {
    NOTE.scope(RefCell::new(AuditNote::default()), async move {
        let out = f.await;
        let note = NOTE.with(|n| std::mem::take(&mut *n.borrow_mut()));
        (out, note)
    })
    .await
}

/// Records the caller of the current request.
pub fn note_caller(sub: &str, tenant: Option<&str>) {
    let _ = NOTE.try_with(|n| {
        let mut n = n.borrow_mut();
        n.caller = Some(sub.chars().take(255).collect());
        n.tenant = tenant.map(str::to_owned);
    });
}

/// Records the token the current request is about.
pub fn note_token(id: &str) {
    tracing::Span::current().record("token_id", id);
    let _ = NOTE.try_with(|n| n.borrow_mut().token_id = Some(id.to_owned()));
}

/// Records the tenant of the token the current request acted on (`None`: a token of no tenant).
pub fn note_token_tenant(tenant: Option<&str>) {
    let _ = NOTE.try_with(|n| {
        n.borrow_mut().token_tenant = Some(tenant.unwrap_or_default().to_owned());
    });
}

/// Adds a short remark (e.g. "secrets revealed").
pub fn note_detail(detail: &'static str) {
    let _ = NOTE.try_with(|n| n.borrow_mut().detail = Some(detail.to_owned()));
}

/// Adds a remark built at run time (say what it holds: never a secret, never a request body).
pub fn note_text(detail: String) {
    let _ = NOTE.try_with(|n| n.borrow_mut().detail = Some(detail));
}

/// Why the call was refused before a caller was known (a bounded set of sentences: they come
/// from the JWT checks, never from what the client sent).
pub fn note_refusal(reason: &str) {
    let _ = NOTE.try_with(|n| n.borrow_mut().detail = Some(reason.chars().take(200).collect()));
}

enum Msg {
    Event(Box<AuditRow>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer (cheap to clone).
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    /// Successful access-token reads of the current window, folded.
    reads: Arc<FoldedReads>,
    /// Refused unauthenticated calls of the current window, counted.
    refused: Arc<RefusedCalls>,
}

impl AuditLog {
    /// Starts the writer, folding access-token reads over `read_window` and counting refused
    /// unauthenticated calls over `refused_window`. It ends, after writing everything queued,
    /// when every handle is dropped.
    pub fn start(
        store: Store,
        read_window: Duration,
        refused_window: Duration,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let reads = Arc::new(FoldedReads::default());
        let refused = Arc::new(RefusedCalls::default());
        (
            Self {
                tx,
                reads: reads.clone(),
                refused: refused.clone(),
            },
            tokio::spawn(writer(
                store,
                rx,
                Folds { reads, refused },
                read_window,
                refused_window,
            )),
        )
    }

    pub async fn record(&self, row: AuditRow) {
        if is_refused_anonymous(&row) {
            self.refused.count(row);
            return;
        }
        let row = if is_foldable(&row) {
            match self.reads.fold(row) {
                None => return,
                Some(row) => row,
            }
        } else {
            row
        };
        if self.tx.send(Msg::Event(Box::new(row))).await.is_err() {
            tracing::error!("audit writer is gone; an audit event was not recorded");
        }
    }

    /// Waits until every event recorded before this call is in the database.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Folded access-token reads, by a hash of (caller, tenant, token id).
type Folded = std::collections::HashMap<u64, AuditRow>;

/// Into how many slices folded reads are cut; the writer takes one every
/// `read_window / SLICES`.
const SLICES: usize = 20;

/// Successful access-token reads being folded, in [`SLICES`] slices by their hash (each with
/// its own lock).
struct FoldedReads {
    slices: Vec<Mutex<Folded>>,
}

impl Default for FoldedReads {
    fn default() -> Self {
        Self {
            slices: (0..SLICES).map(|_| Mutex::default()).collect(),
        }
    }
}

impl FoldedReads {
    /// Adds a read to its caller's and token's row; `Some(row)` hands back a read that cannot
    /// be folded (another triple with the same hash: written as a row of its own).
    fn fold(&self, row: AuditRow) -> Option<AuditRow> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        folded_by(&row).hash(&mut hasher);
        let key = hasher.finish();
        let mut slice = self.slices[(key % SLICES as u64) as usize]
            .lock()
            .expect("audit reads poisoned");
        match slice.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let first = e.get_mut();
                if folded_by(first) != folded_by(&row) {
                    return Some(row);
                }
                first.occurrences += row.occurrences;
                first.last_at = Some(row.at);
                None
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(with_id(row));
                None
            }
        }
    }

    /// The rows of one slice, which starts again empty.
    fn take(&self, slice: usize) -> Vec<AuditRow> {
        let taken = std::mem::take(&mut *self.slices[slice].lock().expect("audit reads poisoned"));
        taken.into_values().collect()
    }

    fn take_all(&self) -> Vec<AuditRow> {
        (0..SLICES).flat_map(|slice| self.take(slice)).collect()
    }
}

/// What refused unauthenticated calls are counted by: route (action), outcome, reason, source
/// address.
type RefusalKey = (String, String, Option<String>, Option<String>);

/// Refused unauthenticated calls of the current window, by [`RefusalKey`].
#[derive(Default)]
struct RefusedCalls {
    rows: Mutex<std::collections::HashMap<RefusalKey, AuditRow>>,
}

impl RefusedCalls {
    fn count(&self, mut row: AuditRow) {
        // Counted per route, reason and source: the token id a refused call named is not kept
        // (a client could make every row unique with it).
        row.token_id = None;
        row.request_id = None;
        let mut rows = self.rows.lock().expect("audit refusals poisoned");
        let mut key = (
            row.action.clone(),
            row.outcome.clone(),
            row.detail.clone(),
            row.source.clone(),
        );
        if !rows.contains_key(&key) && rows.len() >= MAX_REFUSED_KEYS {
            key.3 = Some("other".into());
            row.source = key.3.clone();
        }
        match rows.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let first = e.get_mut();
                first.occurrences += row.occurrences;
                first.last_at = Some(row.at);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(with_id(row));
            }
        }
    }

    fn take(&self) -> Vec<AuditRow> {
        let taken = std::mem::take(&mut *self.rows.lock().expect("audit refusals poisoned"));
        taken.into_values().collect()
    }
}

/// What the writer takes from the recording side besides the queue.
struct Folds {
    reads: Arc<FoldedReads>,
    refused: Arc<RefusedCalls>,
}

/// Deletes audit rows older than `retention` every `every`; `now_ms` is the service's clock.
pub fn spawn_retention(
    store: Store,
    now_ms: impl Fn() -> i64 + Send + 'static,
    retention: Duration,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let before = now_ms() - retention.as_millis() as i64;
            match store.purge_audit(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "audit rows past their retention deleted"),
                Err(e) => tracing::warn!(error = %e, "could not delete old audit rows"),
            }
        }
    })
}

/// Gives an event its id as it is taken in (folded, or by the collector): ids (uuid v7) then
/// follow the order events were recorded in, and folded reads need only one.
fn with_id(mut row: AuditRow) -> AuditRow {
    if row.id.is_empty() {
        row.id = uuid::Uuid::now_v7().to_string();
    }
    row
}

/// What the collector hands the database writer.
enum Work {
    Rows(Vec<AuditRow>),
    /// Answer once every earlier batch is written.
    Flushed(oneshot::Sender<()>),
}

/// Batches handed to the database writer and not written yet (backpressure beyond that).
const PENDING_BATCHES: usize = 256;

/// Collects events and hands batches to the database writer, so the queue keeps draining while
/// a batch is being written; every `read_window / SLICES` it hands over a slice of the folded
/// reads as well.
async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Msg>,
    folds: Folds,
    read_window: Duration,
    refused_window: Duration,
) {
    let Folds { reads, refused } = folds;
    let mut refused_tick = tokio::time::interval(refused_window);
    refused_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refused_tick.tick().await;
    let (work_tx, work_rx) = mpsc::channel(PENDING_BATCHES);
    let db = tokio::spawn(database_writer(store, work_rx));
    let mut batch = Vec::with_capacity(BATCH);
    let hand_over = |rows: &mut Vec<AuditRow>| Work::Rows(std::mem::take(rows));
    let mut tick = tokio::time::interval(read_window / SLICES as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut next_slice = 0;
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            _ = refused_tick.tick() => {
                for chunk in refused.take().chunks(BATCH) {
                    let _ = work_tx.send(Work::Rows(chunk.to_vec())).await;
                }
                continue;
            }
            _ = tick.tick() => {
                for chunk in reads.take(next_slice).chunks(BATCH) {
                    let _ = work_tx.send(Work::Rows(chunk.to_vec())).await;
                }
                next_slice = (next_slice + 1) % SLICES;
                continue;
            }
        };
        let Some(msg) = msg else { break };
        match msg {
            Msg::Event(row) => {
                batch.push(with_id(*row));
                // Send full batches at once, the rest when the queue is momentarily empty.
                if batch.len() >= BATCH || rx.is_empty() {
                    let _ = work_tx.send(hand_over(&mut batch)).await;
                }
            }
            Msg::Flush(done) => {
                batch.extend(reads.take_all());
                batch.extend(refused.take());
                let _ = work_tx.send(hand_over(&mut batch)).await;
                let _ = work_tx.send(Work::Flushed(done)).await;
            }
        }
    }
    batch.extend(reads.take_all());
    batch.extend(refused.take());
    let _ = work_tx.send(hand_over(&mut batch)).await;
    drop(work_tx);
    let _ = db.await;
}

async fn database_writer(store: Store, mut rx: mpsc::Receiver<Work>) {
    while let Some(work) = rx.recv().await {
        match work {
            Work::Rows(mut rows) => write(&store, &mut rows).await,
            Work::Flushed(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// How long the writer keeps trying one batch while the database is unavailable (events stay
/// queued meanwhile): 20 attempts, backing off from 250 ms to 2 s, about half a minute in all.
fn write_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(19)
}

/// Writes a batch, retrying while the database is unavailable; a batch that still fails is
/// dropped (with an error in the log) so the trail cannot stop the writer for good.
async fn write(store: &Store, batch: &mut Vec<AuditRow>) {
    if batch.is_empty() {
        return;
    }
    let rows: &[AuditRow] = batch;
    let written = (|| store.insert_audit(rows))
        .retry(write_backoff())
        .notify(|e, after| {
            tracing::warn!(error = %e, events = rows.len(), retry_in_ms = after.as_millis() as u64, "could not write audit events; retrying");
        })
        .await;
    if written.is_err() {
        tracing::error!(
            events = batch.len(),
            "audit events could not be written and were dropped"
        );
    }
    batch.clear();
}
