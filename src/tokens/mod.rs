//! The six TokenStore operations with their matching and upsert rules, over the encrypted store.

mod bulk;
mod cache;
mod changes;
mod connect_sessions;
mod matching;
mod refresh;
mod rotation;
mod sealing;
mod tenancy;
mod upsert;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use cache::{AccessCache, Lookup};
pub use connect_sessions::{ConnectSession, NewSession, Opened, SessionStatus};
pub use matching::{match_rule, MatchRule};
pub use refresh::{BudgetKey, BudgetRefusal, DueToken, RefreshLease};
pub use rotation::RotationReport;
pub use sealing::{open, seal};
pub use tenancy::Tenancy;
pub use upsert::merge;

use crate::clock::Clock;
use crate::crypto::KeyRing;
use crate::domain::{
    InvalidField, PartialToken, ProviderKey, TenantName, Token, TokenId, TokenStatus,
};
use crate::error::{Error, Result};
use crate::store::{ListFilter, Store, TenantFilter};

/// Whether a save created a row or updated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Updated,
}

/// A page of `get_tokens`.
#[derive(Debug)]
pub struct Page {
    pub tokens: Vec<Token>,
    pub next_cursor: Option<String>,
    /// Rows of this page that could not be opened (a key no longer configured, a damaged
    /// ciphertext): left out of `tokens`, named here so an operator can find them.
    pub unreadable: Vec<Unreadable>,
}

/// A stored row the broker cannot turn into a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: String,
    /// Why, without any secret: "cannot be decrypted with the configured keys", ….
    pub reason: String,
}

/// Opens the rows of a page; the ones that cannot be opened are reported (log, metric) and
/// returned apart, so one damaged row never hides the others.
fn open_all(keys: &KeyRing, rows: Vec<crate::store::TokenRow>) -> (Vec<Token>, Vec<Unreadable>) {
    let mut tokens = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        let id = row.id.clone();
        match open(keys, row) {
            Ok(t) => tokens.push(t),
            Err(e) => {
                let reason = match e {
                    Error::Crypto(_) => "cannot be decrypted with the configured keys".to_owned(),
                    _ => "is damaged (a column holds an invalid value)".to_owned(),
                };
                tracing::error!(token_id = %id, reason, "a stored token could not be read; it was skipped");
                metrics::counter!("token_rows_unreadable_total").increment(1);
                unreadable.push(Unreadable { id, reason });
            }
        }
    }
    (tokens, unreadable)
}

/// Query of `get_tokens`, already checked for form.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub user_name: Option<String>,
    pub provider: Option<String>,
    pub status: Option<TokenStatus>,
    pub tenant: Option<TenantName>,
}

/// How long re-reads of cached tokens gather before one query reads them all.
const RELOAD_BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(25);

/// The token store: matching, upsert and tenancy rules over the encrypted database.
#[derive(Clone)]
pub struct TokenService {
    store: Store,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    default_provider: ProviderKey,
    default_page_size: u32,
    max_page_size: u32,
    /// Providers tokens may name; `None` accepts any well-formed key.
    known_providers: Option<Arc<std::collections::BTreeSet<String>>>,
    /// Decrypted tokens for the access-token hot path, by id (see [`TokenService::get_cached`]).
    cache: Option<Arc<AccessCache>>,
    /// Tokens handed out, for `last_used_at` (see `refresh.rs`).
    marks: Arc<refresh::UseMarks>,
    /// Webhook events of changes, when endpoints are configured (see `webhooks`).
    events: Option<crate::webhooks::Events>,
}

impl TokenService {
    pub fn new(
        store: Store,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
        default_provider: ProviderKey,
        default_page_size: u32,
        max_page_size: u32,
    ) -> Self {
        Self {
            store,
            keys,
            clock,
            default_provider,
            default_page_size,
            max_page_size,
            known_providers: None,
            cache: None,
            marks: Arc::default(),
            events: None,
        }
    }

    /// Reports changes to the webhook endpoints of `events` (their outbox rows are written with
    /// each change).
    pub fn with_webhooks(mut self, events: Option<crate::webhooks::Events>) -> Self {
        self.events = events;
        self
    }

    /// The outbox rows of a `kind` event about `token` (none without endpoints).
    fn events_about(
        &self,
        kind: crate::webhooks::EventKind,
        token: &Token,
        extra: serde_json::Value,
    ) -> Vec<crate::store::WebhookRow> {
        self.events.as_ref().map_or_else(Vec::new, |e| {
            e.outbox().about(kind, token, extra, self.clock.now_ms())
        })
    }

    /// After a write that carried events: the deliverer sends them now.
    fn events_committed(&self) {
        if let Some(e) = &self.events {
            e.committed();
        }
    }

    /// Reports an event that comes with no write of its own (a refresh that keeps failing).
    pub async fn report(
        &self,
        kind: crate::webhooks::EventKind,
        token: &Token,
        extra: serde_json::Value,
    ) {
        let events = self.events_about(kind, token, extra);
        if events.is_empty() {
            return;
        }
        match self.store.insert_events(events).await {
            Ok(()) => self.events_committed(),
            Err(e) => {
                tracing::warn!(token_id = %token.id, error = %e, "could not record a webhook event")
            }
        }
    }

    /// Keeps decrypted tokens in memory for about `ttl` for [`get_cached`](Self::get_cached).
    pub fn with_access_cache(mut self, ttl: std::time::Duration, capacity: usize) -> Self {
        self.cache =
            (!ttl.is_zero() && capacity > 0).then(|| Arc::new(AccessCache::new(ttl, capacity)));
        self
    }

    /// find_token_by_id for the hot path: from memory when this broker holds a copy, else from
    /// the database. Every write through this service or (via the change feed) another replica
    /// drops the cached copy; while the feed cannot be read, a copy in steady use is re-read in
    /// the background before it expires (see [`cache`]).
    pub async fn get_cached(&self, tenancy: &Tenancy, id: &TokenId) -> Result<Arc<Token>> {
        let Some(cache) = &self.cache else {
            return Ok(Arc::new(self.get(tenancy, id).await?));
        };
        let token = match cache.lookup(id.as_str()) {
            Lookup::Hit(token) => {
                crate::metrics::hot_path().token_cache_hit.increment(1);
                token
            }
            Lookup::HitStartingBatch(token) => {
                crate::metrics::hot_path().token_cache_hit.increment(1);
                let (this, cache) = (self.clone(), cache.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(RELOAD_BATCH_WINDOW).await;
                    this.reload_batch(&cache).await;
                });
                token
            }
            Lookup::Missing => {
                crate::metrics::hot_path().token_cache_miss.increment(1);
                let generation = cache.generation();
                let row = self
                    .store
                    .token_by_id(id.as_str(), &TenantFilter::Any)
                    .await?
                    .ok_or(Error::NotFound)?;
                let version = row.version;
                let token = Arc::new(open(&self.keys, row)?);
                cache.fill(token.clone(), Some(version), generation);
                token
            }
        };
        if tenancy.sees(token.tenant.as_ref()) {
            Ok(token)
        } else {
            Err(Error::NotFound)
        }
    }

    /// Re-checks the tokens queued for it, many to a query: those whose row is still at the
    /// version they were read at are kept for another time to live, changed ones are read again,
    /// vanished ones dropped. A token that cannot be checked now stays cached until its time to
    /// live runs out.
    async fn reload_batch(&self, cache: &AccessCache) {
        let ids = cache.take_reloads();
        let generation = cache.generation();
        let versions = match self.store.token_versions(&ids).await {
            Ok(versions) => versions,
            Err(e) => {
                tracing::debug!(tokens = ids.len(), error = %e, "could not re-check cached tokens");
                return;
            }
        };
        let mut found = std::collections::HashSet::with_capacity(versions.len());
        let mut changed = Vec::new();
        for v in versions {
            if !cache.renew(&v.id, v.version, generation) {
                changed.push(v.id.clone());
            }
            found.insert(v.id);
        }
        drop_unanswered(cache, &ids, &found);
        let renewed = (found.len() - changed.len()) as u64;
        metrics::counter!("token_cache_total", "result" => "recheck").increment(renewed);
        if changed.is_empty() {
            return;
        }
        let rows = match self.store.tokens_by_ids(&changed).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(tokens = changed.len(), error = %e, "could not re-read cached tokens");
                return;
            }
        };
        metrics::counter!("token_cache_total", "result" => "reload").increment(rows.len() as u64);
        let mut read = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            let (id, version) = (row.id.clone(), row.version);
            match open(&self.keys, row) {
                Ok(token) => cache.fill(Arc::new(token), Some(version), generation),
                Err(_) => cache.drop_entry(&id),
            }
            read.insert(id);
        }
        drop_unanswered(cache, &changed, &read);
    }

    /// The cached copy of a token, when this broker holds one and `tenancy` may see it. Never
    /// reads the database.
    pub fn peek_cached(&self, tenancy: &Tenancy, id: &TokenId) -> Option<Arc<Token>> {
        let token = self.cache.as_ref()?.peek(id.as_str())?;
        tenancy.sees(token.tenant.as_ref()).then_some(token)
    }

    /// Caches a token this broker has just written, so readers waiting for it need not read it
    /// back. Call after the write is committed. (At worst, a save of the same token racing this
    /// write leaves this copy cached for one time to live, as a reader of another replica
    /// would see it.)
    pub fn remember_written(&self, token: Arc<Token>) {
        if let Some(cache) = &self.cache {
            cache.forget(token.id.as_str());
            let generation = cache.generation();
            // The row's new version is the database's: the first re-check reads the row again.
            cache.fill(token, None, generation);
        }
    }

    /// Records a good read of the change feed that started at `started` (see [`cache`]).
    fn mark_fed(&self, started: std::time::Instant) {
        if let Some(cache) = &self.cache {
            cache.mark_fed(started);
        }
    }

    /// Drops the cached copy of a token after a write.
    pub fn forget(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.forget(id);
        }
    }

    fn forget_all(&self) {
        if let Some(cache) = &self.cache {
            cache.forget_all();
        }
    }

    /// Refuses saves that name a provider outside `keys`: the broker could never refresh them.
    pub fn with_known_providers<'a>(mut self, keys: impl IntoIterator<Item = &'a str>) -> Self {
        self.known_providers = Some(Arc::new(keys.into_iter().map(str::to_owned).collect()));
        self
    }

    /// The database, for what is not the token row: health checks, status counts, the audit
    /// query. Token rows and their cache are written only through this service.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The provider given to tokens that name none (`tokens.default_provider`).
    pub fn default_provider(&self) -> &ProviderKey {
        &self.default_provider
    }

    /// The id of the key new writes are encrypted with (for `keys rotate`'s report).
    pub fn active_key_id(&self) -> &str {
        self.keys.active_key_id()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// find_token: the stored token the partial token matches, by the rules in [`match_rule`].
    pub async fn find(&self, tenancy: &Tenancy, partial: &PartialToken) -> Result<Option<Token>> {
        let tenant = tenancy.resolve(partial.tenant.as_ref())?;
        // By id first, as save matches: a token carrying only its id (the SDKs' revoke builds
        // one) is found by it; an unknown id falls through to the other rules.
        if let Some(id) = &partial.id {
            match self.get(tenancy, id).await {
                Ok(t) if partial.tenant.is_none() || t.tenant == tenant => return Ok(Some(t)),
                Ok(_) | Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let names_something = partial.user_name.is_some()
            || partial.access_token.is_some()
            || partial.grant_token.is_some()
            || partial.refresh_token.is_some();
        if !names_something {
            if partial.id.is_some() {
                return Ok(None);
            }
            return Err(InvalidField::new(
                "user_name",
                "nothing to match on: give id, user_name, access_token, grant_token or refresh_token",
            )
            .into());
        }
        self.find_in(tenancy::to_column(tenant.as_ref()), partial)
            .await
    }

    async fn find_in(&self, tenant: &str, partial: &PartialToken) -> Result<Option<Token>> {
        let row = match match_rule(partial) {
            None => None,
            Some(MatchRule::User {
                user_name,
                provider,
            }) => {
                self.store
                    .token_by_user(tenant, user_name.as_str(), provider.map(|p| p.as_str()))
                    .await?
            }
            Some(MatchRule::Secret {
                column,
                value,
                client_id,
            }) => {
                let hash = self.keys.lookup_hash(value);
                self.store
                    .token_by_hash(tenant, column, &hash, client_id)
                    .await?
            }
        };
        row.map(|r| open(&self.keys, r)).transpose()
    }

    /// find_token_by_id.
    pub async fn get(&self, tenancy: &Tenancy, id: &TokenId) -> Result<Token> {
        let row = self
            .store
            .token_by_id(id.as_str(), &tenancy.filter())
            .await?
            .ok_or(Error::NotFound)?;
        let token = open(&self.keys, row)?;
        crate::audit::note_token_tenant(token.tenant.as_ref().map(TenantName::as_str));
        Ok(token)
    }

    /// delete_token.
    pub async fn delete(&self, tenancy: &Tenancy, id: &TokenId) -> Result<()> {
        self.delete_reporting(tenancy, id, crate::webhooks::EventKind::TokenDeleted)
            .await
    }

    /// Deletes a token just revoked at its provider.
    pub async fn delete_revoked(&self, tenancy: &Tenancy, id: &TokenId) -> Result<()> {
        self.delete_reporting(tenancy, id, crate::webhooks::EventKind::TokenRevoked)
            .await
    }

    async fn delete_reporting(
        &self,
        tenancy: &Tenancy,
        id: &TokenId,
        kind: crate::webhooks::EventKind,
    ) -> Result<()> {
        // Read first: the audit trail records the deleted token's tenant, the event its user.
        let token = self.get(tenancy, id).await?;
        let events = self.events_about(kind, &token, serde_json::json!({ "deleted": true }));
        let reported = !events.is_empty();
        self.forget(id.as_str());
        if self
            .store
            .delete_token(id.as_str(), &tenancy.filter(), events)
            .await?
        {
            if reported {
                self.events_committed();
            }
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// delete_tokens: every token the caller can see. Returns how many were deleted.
    pub async fn delete_all(&self, tenancy: &Tenancy) -> Result<u64> {
        let tenant = match tenancy {
            Tenancy::Unrestricted => None,
            Tenancy::Only(t) => Some(t.as_str().to_owned()),
        };
        let now = self.clock.now_ms();
        let events = |count| {
            self.events.as_ref().map_or_else(Vec::new, |e| {
                e.outbox().deleted_all(tenant.as_deref(), count, now)
            })
        };
        let deleted = self
            .store
            .delete_all_tokens(&tenancy.filter(), events)
            .await?;
        self.forget_all();
        if deleted > 0 {
            self.events_committed();
        }
        Ok(deleted)
    }

    /// get_tokens: one page in id order, with a cursor for the next.
    pub async fn list(&self, tenancy: &Tenancy, query: ListQuery) -> Result<Page> {
        let limit = query.limit.unwrap_or(self.default_page_size);
        if limit == 0 || limit > self.max_page_size {
            return Err(InvalidField::new(
                "limit",
                format!("must be between 1 and {}", self.max_page_size),
            )
            .into());
        }
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let filter = ListFilter {
            tenant: query.tenant.map(|t| t.as_str().to_owned()),
            user_name: query.user_name,
            provider: query.provider,
            status: query.status.map(|s| s.as_str().to_owned()),
            after,
            limit: limit + 1,
        };
        let mut rows = self.store.list_tokens(&tenancy.filter(), &filter).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = more
            .then(|| rows.last().map(|r| B64URL.encode(r.id.as_bytes())))
            .flatten();
        let (tokens, unreadable) = open_all(&self.keys, rows);
        Ok(Page {
            tokens,
            next_cursor,
            unreadable,
        })
    }
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let invalid = || {
        Error::bad_request(
            crate::error::ErrorCode::InvalidCursor,
            "cursor: not a cursor this service issued",
        )
    };
    let bytes = B64URL.decode(cursor).map_err(|_| invalid())?;
    let id = String::from_utf8(bytes).map_err(|_| invalid())?;
    TokenId::parse(id.clone()).map_err(|_| invalid())?;
    Ok(id)
}

/// Drops the cached copies of the tokens a re-check asked for and the database no longer has.
fn drop_unanswered(
    cache: &AccessCache,
    asked: &[String],
    answered: &std::collections::HashSet<String>,
) {
    for gone in asked.iter().filter(|id| !answered.contains(*id)) {
        cache.drop_entry(gone);
    }
}

/// `bytes` random bytes, base64url without padding: link secrets, states, verifiers, cookies.
pub fn random_b64(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    B64URL.encode(buf)
}
