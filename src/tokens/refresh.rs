//! The refresh side of the token row, owned here so `oauth/` only decides: the lease that makes
//! one broker (of all sharing the database) refresh a token at a time, the refresh budget per
//! refresh credential, committing a refresh result (sealed, cache updated, lease released in one
//! statement), the "last handed out" marks and the query for tokens due for a refresh.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};

use super::{seal, tenancy, Tenancy, TokenService};
use crate::domain::{Secret, Token, TokenId};
use crate::error::{Error, Result};
use crate::store::{self, Store, StoreError};

/// Write `last_used_at` at most this often per token from one process.
const USED_MARK_EVERY_MS: i64 = 60_000;

/// Use marks are written at most this many tokens to a statement.
const MARKS_PER_STATEMENT: usize = 100;

/// The refresh budget's key: an HMAC of the client id and the refresh token, so every row holding
/// the same refresh credential (two tenants, two providers, a re-import) shares one allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetKey(String);

/// Why the budget refused a refresh, and until when (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// This broker's own count for the window is spent.
    Spent { until: i64 },
    /// The provider said "too many requests"; nothing is sent before `until`.
    Blocked { until: i64 },
}

/// A token the background refresher should look at, with the tenancy to act in.
#[derive(Debug, Clone)]
pub struct DueToken {
    pub id: TokenId,
    pub tenancy: Tenancy,
}

/// Which tokens this process handed out since the marks were last written.
pub(super) struct UseMarks {
    /// When this process last marked each token (so a token in steady use is marked once a
    /// minute, not per request).
    seen: quick_cache::sync::Cache<String, i64>,
    unwritten: Mutex<Vec<String>>,
}

impl Default for UseMarks {
    fn default() -> Self {
        Self {
            seen: quick_cache::sync::Cache::new(100_000),
            unwritten: Mutex::default(),
        }
    }
}

/// The refresh lease of one token, held by this process. Commit a result with
/// [`commit`](Self::commit) or give it back with [`release`](Self::release); a lease dropped
/// without either (an early return, an error) is given back in the background.
pub struct RefreshLease {
    store: Store,
    id: String,
    owner: String,
    held: bool,
}

impl RefreshLease {
    /// Gives the lease back now, so waiting replicas need not wait for it to expire.
    pub async fn release(mut self) {
        self.held = false;
        release(&self.store, &self.id, &self.owner).await;
    }
}

impl Drop for RefreshLease {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let (store, id, owner) = (self.store.clone(), self.id.clone(), self.owner.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { release(&store, &id, &owner).await });
            }
            Err(_) => {
                tracing::debug!(token_id = %id, "refresh lease left to expire by itself");
            }
        }
    }
}

async fn release(store: &Store, id: &str, owner: &str) {
    if let Err(e) = store.release_lease(id, owner).await {
        tracing::warn!(token_id = %id, error = %e, "could not release a refresh lease; it expires by itself");
    }
}

impl TokenService {
    /// Takes the refresh lease of token `id` until `until`, unless another holder's is still
    /// running at `now`. `None`: someone else is refreshing it.
    pub async fn acquire_refresh_lease(
        &self,
        id: &TokenId,
        now: i64,
        until: i64,
    ) -> Result<Option<RefreshLease>> {
        let owner = uuid::Uuid::new_v4().to_string();
        let taken = self
            .store
            .acquire_lease(id.as_str(), &owner, now, until)
            .await?;
        Ok(taken.then(|| RefreshLease {
            store: self.store.clone(),
            id: id.as_str().to_owned(),
            owner,
            held: true,
        }))
    }

    /// Stores a refresh result and releases `lease` in one statement, so the new (possibly
    /// rotated) refresh token is stored before anyone is answered; then caches it. Retried
    /// briefly: losing a rotated refresh token would strand the user, so a passing database
    /// hiccup must not.
    pub async fn commit_refresh(&self, mut lease: RefreshLease, token: &Token) -> Result<()> {
        self.forget(token.id.as_str());
        // A refresh the provider refused for good: the person must log in again.
        let events = if token.status == crate::domain::TokenStatus::NeedsReauth {
            self.events_about(
                crate::webhooks::EventKind::TokenNeedsReauth,
                token,
                serde_json::json!({}),
            )
        } else {
            Vec::new()
        };
        let reported = !events.is_empty();
        let attempt = || async {
            self.store
                .commit_refresh(seal(&self.keys, token), &lease.owner, events.clone())
                .await
        };
        let committed = attempt
            .retry(
                ConstantBuilder::default()
                    .with_delay(Duration::from_millis(100))
                    .with_max_times(4),
            )
            .when(|e: &StoreError| !matches!(e, StoreError::Conflict))
            .notify(|e, _| {
                tracing::error!(token_id = %token.id, error = %e, "could not store a refresh result; retrying");
            })
            .await?;
        // The commit released the lease (or it had expired and another holder has it now).
        lease.held = false;
        if !committed {
            return Err(Error::NotFound);
        }
        if reported {
            self.events_committed();
        }
        self.remember_written(Arc::new(token.clone()));
        Ok(())
    }

    /// The budget key of a refresh credential.
    pub fn budget_key(&self, client_id: &str, refresh_token: &Secret) -> BudgetKey {
        let credential = Secret::new(format!(
            "refresh-budget\n{client_id}\n{}",
            refresh_token.expose()
        ));
        BudgetKey(self.keys.lookup_hash(&credential))
    }

    /// Takes one refresh from the budget of `key` (at most `budget` per `window_ms`), atomically
    /// across every broker sharing the database.
    pub async fn take_refresh_budget(
        &self,
        key: &BudgetKey,
        now: i64,
        budget: i64,
        window_ms: i64,
    ) -> Result<Result<(), BudgetRefusal>> {
        let taken = self
            .store
            .take_refresh_budget(&key.0, now, budget, window_ms)
            .await?;
        Ok(taken.map_err(|refusal| match refusal {
            store::BudgetRefusal::Spent { until } => BudgetRefusal::Spent { until },
            store::BudgetRefusal::Blocked { until } => BudgetRefusal::Blocked { until },
        }))
    }

    /// The provider said "too many requests" for `key`: no refresh of it before `until`.
    pub async fn back_off_refreshes(&self, key: &BudgetKey, until: i64) -> Result<()> {
        Ok(self.store.block_refresh_budget(&key.0, until).await?)
    }

    /// Forgets budgets whose window ended before `before` (and that are not backing off).
    pub async fn purge_refresh_budgets(&self, before: i64) -> Result<u64> {
        Ok(self.store.purge_refresh_budgets(before).await?)
    }

    /// Records that an access token of `id` was handed out at `now` (for the background
    /// refresher), at most once a minute per token and process; [`write_use_marks`] writes them.
    ///
    /// [`write_use_marks`]: Self::write_use_marks
    pub fn mark_used(&self, id: &TokenId, now: i64) {
        let id = id.as_str();
        if let Some(at) = self.marks.seen.get(id) {
            if now - at < USED_MARK_EVERY_MS {
                return;
            }
        }
        self.marks.seen.insert(id.to_owned(), now);
        self.marks
            .unwritten
            .lock()
            .expect("marks poisoned")
            .push(id.to_owned());
    }

    /// Writes the use marks gathered since the last call, in a few statements, off the request
    /// path (see `oauth::background::spawn_use_marks`).
    pub async fn write_use_marks(&self) {
        let ids = std::mem::take(&mut *self.marks.unwritten.lock().expect("marks poisoned"));
        if ids.is_empty() {
            return;
        }
        let now = self.now_ms();
        for chunk in ids.chunks(MARKS_PER_STATEMENT) {
            if let Err(e) = self.store.mark_used(chunk, now).await {
                tracing::warn!(tokens = chunk.len(), error = %e, "could not record token use");
            }
        }
    }

    /// Active tokens with a refresh token whose access token expires before `expiring_before`
    /// and that were handed out after `used_after`, soonest first. A row whose id or tenant is
    /// corrupt is an `Err` of its own (never a token of no tenant).
    pub async fn refresh_due(
        &self,
        expiring_before: i64,
        used_after: i64,
        limit: i64,
    ) -> Result<Vec<Result<DueToken>>> {
        let rows = self
            .store
            .refresh_due(expiring_before, used_after, limit)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let id = TokenId::parse(row.id).map_err(|_| {
                    Error::Internal(anyhow::anyhow!("a stored token row has an invalid id"))
                })?;
                let tenant = tenancy::from_column(&row.tenant, "token")?;
                Ok(DueToken {
                    id,
                    tenancy: Tenancy::of_token(tenant.as_ref()),
                })
            })
            .collect())
    }
}
