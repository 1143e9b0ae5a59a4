//! Valid access tokens on demand. The hot path is one read; a refresh runs at most once at a time
//! per token across every broker process (in-process mutex + database lease), commits a rotated
//! refresh token before anyone sees the new access token, and respects the refresh budget.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::client::{ClientCredentials, ProviderError};
use super::{
    credentials, OAuthService, PROVIDER_RETRY_AFTER_SECS, RATE_LIMIT_BACKOFF_SECS, WAIT_SLACK,
};
use crate::domain::{Token, TokenId, TokenStatus};
use crate::error::{Error, Result};
use crate::tokens::{BudgetRefusal, RefreshLease, Tenancy};

/// True when the stored access token stays valid for more than `min_validity_ms` after `now`.
///
/// For a grant the broker got itself, a caller cannot ask for more than half of the grant's
/// lifetime: a provider that grants 60-second tokens would otherwise make every request refresh,
/// and burn the refresh budget, for a caller asking for 60 seconds.
pub fn valid_for(token: &Token, now: i64, min_validity_ms: i64) -> bool {
    let Some(exp) = token.expiry_time.filter(|_| token.access_token.is_some()) else {
        return false;
    };
    let wanted = match token.granted_lifetime_ms {
        Some(lifetime) if lifetime > 0 => min_validity_ms.min(lifetime / 2),
        _ => min_validity_ms,
    };
    exp - now > wanted
}

fn ensure_usable(token: &Token) -> Result<()> {
    match token.status {
        TokenStatus::Active => Ok(()),
        TokenStatus::NeedsReauth => Err(Error::NeedsReauth(
            "the provider no longer accepts this token's grant; the user must log in again".into(),
        )),
        TokenStatus::Revoked => Err(Error::NeedsReauth(
            "this token was revoked; the user must log in again".into(),
        )),
    }
}

/// The window a credential without a budget is counted over.
const UNBUDGETED_WINDOW_MS: i64 = 600_000;

impl OAuthService {
    /// A token whose access token is valid for at least `min_validity_ms`, refreshing first
    /// when the stored one is not.
    pub async fn access_token(
        &self,
        tenancy: &Tenancy,
        id: &TokenId,
        min_validity_ms: i64,
    ) -> Result<Arc<Token>> {
        let token = self.tokens().get_cached(tenancy, id).await?;
        crate::audit::note_token_tenant(token.tenant.as_ref().map(|t| t.as_str()));
        ensure_usable(&token)?;
        let token = if valid_for(&token, self.now_ms(), min_validity_ms) {
            crate::metrics::hot_path().access_token_valid.increment(1);
            token
        } else {
            crate::metrics::hot_path()
                .access_token_refreshed
                .increment(1);
            Arc::new(self.refresh(tenancy, id, min_validity_ms, false).await?)
        };
        self.tokens().mark_used(&token.id, self.now_ms());
        Ok(token)
    }

    /// Refreshes token `id` (or, unless `force`, finds it already fresh enough). Runs as its own
    /// task: a caller that disconnects cannot cancel a refresh between the provider's answer and
    /// the commit of a rotated refresh token.
    pub async fn refresh(
        &self,
        tenancy: &Tenancy,
        id: &TokenId,
        min_validity_ms: i64,
        force: bool,
    ) -> Result<Token> {
        if force {
            // A refresh asked for by a caller: its audit row names the token's tenant, also
            // when the refresh fails.
            let token = self.tokens().get_cached(tenancy, id).await?;
            crate::audit::note_token_tenant(token.tenant.as_ref().map(|t| t.as_str()));
        }
        let this = self.clone();
        let tenancy = tenancy.clone();
        let id = id.clone();
        tokio::spawn(async move {
            this.refresh_flow(&tenancy, &id, min_validity_ms, force)
                .await
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("refresh task failed: {e}")))?
    }

    fn lock_for(&self, id: &TokenId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock().expect("lock map poisoned");
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_string()).or_default().clone()
    }

    async fn refresh_flow(
        &self,
        tenancy: &Tenancy,
        id: &TokenId,
        min_validity_ms: i64,
        force: bool,
    ) -> Result<Token> {
        let started = self.now_ms();
        let lock = self.lock_for(id);
        let _turn = lock.lock().await;
        let give_up_at = tokio::time::Instant::now()
            + Duration::from_millis(self.settings().lease_ms.max(0) as u64)
            + WAIT_SLACK;
        let mut waited_on_lease = false;
        let coalesced = |waited_on_lease: bool| {
            let kind = if waited_on_lease {
                "other_process"
            } else {
                "same_process"
            };
            metrics::counter!("refresh_singleflight_waits_total", "kind" => kind).increment(1);
        };
        // Someone (this process or another) refreshed it while we queued.
        let settled = |token: &Token, now: i64| {
            if force {
                token.updated_at > started
            } else {
                valid_for(token, now, min_validity_ms)
            }
        };
        // The refresher we queued behind usually left its result in the cache: no need to read
        // it back once per waiter.
        if let Some(token) = self.tokens().peek_cached(tenancy, id) {
            if settled(&token, self.now_ms()) && ensure_usable(&token).is_ok() {
                coalesced(false);
                return Ok(Token::clone(&token));
            }
        }
        loop {
            let now = self.now_ms();
            let token = self.tokens().get(tenancy, id).await?;
            ensure_usable(&token)?;
            if settled(&token, now) {
                coalesced(waited_on_lease);
                return Ok(token);
            }
            if token.refresh_token.is_none() {
                return Err(Error::NeedsReauth(
                    "the access token expired and no refresh token is stored; the user must log in again"
                        .into(),
                ));
            }
            let until = now + self.settings().lease_ms;
            if let Some(lease) = self.tokens().acquire_refresh_lease(id, now, until).await? {
                // Read again under the lease: another broker may have committed its refresh
                // (and released the lease) between our read above and our taking the lease.
                let token = self.tokens().get(tenancy, id).await?;
                ensure_usable(&token)?;
                if settled(&token, self.now_ms()) {
                    lease.release().await;
                    coalesced(true);
                    return Ok(token);
                }
                return self
                    .refresh_holding_lease(token, lease, min_validity_ms, force)
                    .await;
            }
            // Another process holds the lease: wait for its result.
            if tokio::time::Instant::now() >= give_up_at {
                return if valid_for(&token, now, min_validity_ms) {
                    Ok(token)
                } else {
                    Err(Error::ProviderUnavailable {
                        retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                    })
                };
            }
            waited_on_lease = true;
            let pause = rand::thread_rng().gen_range(30..90);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    async fn refresh_holding_lease(
        &self,
        token: Token,
        lease: RefreshLease,
        min_validity_ms: i64,
        force: bool,
    ) -> Result<Token> {
        let tokens = self.tokens();
        let id = &token.id;
        let now = self.now_ms();
        // Every early return below drops `lease`, which gives it back.
        let provider = self.provider_for(&token)?;
        let (client_id, client_secret) = credentials(&token, &provider)?;
        let refresh_token = token.refresh_token.clone().expect("checked by the caller");

        // The budget, per refresh credential: never let a client get locked out by the provider,
        // however many rows hold the same refresh token.
        let budget_key = tokens.budget_key(&client_id, &refresh_token);
        // Without a budget of its provider's, a credential is still counted (never refused for
        // it), so the provider's own "too many requests" holds its refreshes back all the same.
        let (max, window_ms) = provider
            .refresh_budget
            .map_or((i64::MAX, UNBUDGETED_WINDOW_MS), |b| (b.max, b.window_ms));
        if let Err(refusal) = tokens
            .take_refresh_budget(&budget_key, now, max, window_ms)
            .await?
        {
            lease.release().await;
            let (outcome, until) = match refusal {
                BudgetRefusal::Spent { until } => ("budget_exhausted", until),
                BudgetRefusal::Blocked { until } => ("rate_limited", until),
            };
            metrics::counter!("token_refreshes_total", "provider" => token.provider.to_string(), "outcome" => outcome).increment(1);
            tracing::warn!(token_id = %id, provider = %token.provider, outcome, "refresh refused by the refresh budget");
            // Anything still valid beats a refusal — unless the caller asked for a refresh, who
            // must learn that it did not happen.
            if !force && valid_for(&token, now, 0) {
                return Ok(token);
            }
            let retry_after_secs = ((until - now).max(0) as u64).div_ceil(1000).max(1);
            return Err(match refusal {
                BudgetRefusal::Spent { .. } => Error::RefreshBudgetExhausted { retry_after_secs },
                BudgetRefusal::Blocked { .. } => Error::ProviderRateLimited { retry_after_secs },
            });
        }

        let result = self
            .inner
            .client
            .refresh(
                &provider,
                &ClientCredentials {
                    client_id: &client_id,
                    client_secret,
                },
                &refresh_token,
            )
            .await;

        let now = self.now_ms();
        let outcome = match &result {
            Ok(_) => "refreshed",
            Err(ProviderError::InvalidGrant(_)) => "needs_reauth",
            Err(ProviderError::Unavailable(_)) => "provider_unavailable",
            Err(ProviderError::Rejected(_)) => "rejected",
            Err(ProviderError::RateLimited { .. }) => "rate_limited",
        };
        metrics::counter!("token_refreshes_total", "provider" => provider.key.to_string(), "outcome" => outcome).increment(1);
        self.count_refresh_outcome(&token, outcome);
        match result {
            Ok(grant) => {
                let mut fresh = token.clone();
                fresh.access_token = Some(grant.access_token);
                if let Some(rotated) = grant.refresh_token {
                    fresh.refresh_token = Some(rotated);
                }
                let lifetime = grant.expires_in_ms.unwrap_or(3_600_000);
                fresh.expiry_time = Some(now + lifetime);
                fresh.granted_lifetime_ms = Some(lifetime);
                if grant.api_domain.is_some() {
                    fresh.api_domain = grant.api_domain;
                }
                fresh.status = TokenStatus::Active;
                fresh.updated_at = now;
                tokens.commit_refresh(lease, &fresh).await?;
                tracing::info!(token_id = %id, provider = %provider.key, outcome = "refreshed", "refreshed an access token");
                Ok(fresh)
            }
            Err(ProviderError::InvalidGrant(code)) => {
                let mut dead = token.clone();
                dead.status = TokenStatus::NeedsReauth;
                dead.updated_at = now;
                tokens.commit_refresh(lease, &dead).await?;
                tracing::warn!(token_id = %id, provider = %provider.key, outcome = "needs_reauth", code = %code, "the provider rejected the refresh token");
                Err(Error::NeedsReauth(format!(
                    "the provider rejected the refresh token ({code}); the user must log in again"
                )))
            }
            Err(ProviderError::Unavailable(why)) => {
                lease.release().await;
                tracing::warn!(token_id = %id, provider = %provider.key, outcome = "provider_unavailable", why = %why, "refresh failed");
                if valid_for(&token, now, min_validity_ms) {
                    Ok(token)
                } else {
                    Err(Error::ProviderUnavailable {
                        retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                    })
                }
            }
            Err(ProviderError::RateLimited { retry_after_secs }) => {
                let wait_secs = retry_after_secs.unwrap_or(RATE_LIMIT_BACKOFF_SECS);
                let until = now + (wait_secs as i64) * 1000;
                if let Err(e) = tokens.back_off_refreshes(&budget_key, until).await {
                    tracing::warn!(token_id = %id, error = %e, "could not record the provider's back-off");
                }
                lease.release().await;
                tracing::warn!(token_id = %id, provider = %provider.key, outcome = "rate_limited", retry_after_secs = wait_secs, "the provider is rate limiting this client; backing off");
                if !force && valid_for(&token, now, 0) {
                    Ok(token)
                } else {
                    Err(Error::ProviderRateLimited {
                        retry_after_secs: wait_secs,
                    })
                }
            }
            Err(ProviderError::Rejected(code)) => {
                lease.release().await;
                tracing::warn!(token_id = %id, provider = %provider.key, outcome = "rejected", code = %code, "refresh refused");
                Err(Error::Provider(format!(
                    "the provider refused the refresh ({code})"
                )))
            }
        }
    }

    /// Counts failed refreshes of a token in a row; the `refresh_failures_before_event`-th makes
    /// a `token.refresh_failing` event (once per run of failures). A refresh that works, or one
    /// the provider refuses for good (`token.needs_reauth` then), ends the run.
    fn count_refresh_outcome(&self, token: &Token, outcome: &'static str) {
        let threshold = self.settings().refresh_failures_before_event;
        let failures = {
            let mut failing = self.inner.failing.lock().expect("failure counts poisoned");
            if matches!(outcome, "refreshed" | "needs_reauth") {
                failing.remove(token.id.as_str());
                return;
            }
            // Bounded: a provider down for every token must not grow this without end.
            if failing.len() >= 100_000 && !failing.contains_key(token.id.as_str()) {
                failing.clear();
            }
            let n = failing.entry(token.id.to_string()).or_default();
            *n += 1;
            *n
        };
        if threshold > 0 && failures == threshold {
            let (tokens, token) = (self.tokens().clone(), token.clone());
            let extra = serde_json::json!({ "failures": failures, "last_outcome": outcome });
            tokio::spawn(async move {
                tokens
                    .report(
                        crate::webhooks::EventKind::TokenRefreshFailing,
                        &token,
                        extra,
                    )
                    .await;
            });
        }
    }

    /// Deletes refresh budgets whose window is over (and that are not backing off): a credential
    /// that refreshes again starts a new window anyway, so the table holds only live ones.
    pub async fn purge_refresh_budgets(&self) {
        let before = self.now_ms() - self.providers().longest_budget_window_ms();
        match self.tokens().purge_refresh_budgets(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(budgets = n, "forgot refresh budgets whose window is over"),
            Err(e) => tracing::warn!(error = %e, "could not purge refresh budgets"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProviderKey, Secret};

    fn token(granted_lifetime_ms: Option<i64>, expiry: i64) -> Token {
        Token {
            id: TokenId::parse("t").unwrap(),
            tenant: None,
            provider: ProviderKey::parse("zoho-us").unwrap(),
            user_name: None,
            client_id: None,
            client_secret: None,
            refresh_token: None,
            access_token: Some(Secret::new("at")),
            grant_token: None,
            expiry_time: Some(expiry),
            granted_lifetime_ms,
            redirect_url: None,
            api_domain: None,
            status: TokenStatus::Active,
            identity: None,
            scopes: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn validity_is_measured_against_min_validity() {
        let t = token(None, 3_600_000);
        assert!(valid_for(&t, 1_000_000, 60_000));
        assert!(!valid_for(&t, 3_550_000, 60_000));
        assert!(!valid_for(&t, 3_600_000, 0), "expired at its expiry");
    }

    #[test]
    fn short_lived_tokens_are_not_refreshed_on_every_request() {
        // A 60 s grant asked for with min_validity 60 s: good while more than half is left.
        let t = token(Some(60_000), 60_000);
        assert!(valid_for(&t, 1_000, 60_000));
        assert!(!valid_for(&t, 31_000, 60_000));
        // A token a caller stored with 50 s left is not "short-lived": 60 s means 60 s.
        assert!(!valid_for(&token(None, 50_000), 0, 60_000));
    }
}
