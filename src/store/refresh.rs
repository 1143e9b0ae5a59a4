//! Refresh coordination in the database, so several broker processes sharing one database act as
//! one: a lease per token (a conditional UPDATE works the same on all three backends), the
//! refresh budget per refresh credential, and "last handed out" marks for the background refresher.

use super::{Arg, Backend, Store, StoreError, TokenRow};

/// Why the budget refused a refresh, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// This broker's own count for the window is spent; it renews at `until`.
    Spent { until: i64 },
    /// The provider said "too many requests"; nothing is sent before `until`.
    Blocked { until: i64 },
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct BudgetRow {
    window_start: i64,
    used: i64,
    blocked_until: i64,
}

/// A token the background refresher should look at.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueToken {
    pub id: String,
    pub tenant: String,
}

impl Store {
    /// Takes the refresh lease of token `id` until `until` unless another holder's lease is still
    /// running at `now`. True when this caller now holds it.
    pub async fn acquire_lease(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE oauth_tokens SET lease_owner = ?, lease_until = ? \
                 WHERE id = ? AND lease_until < ?",
                vec![owner.into(), until.into(), id.into(), now.into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Gives the lease back, if `owner` still holds it.
    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE oauth_tokens SET lease_owner = NULL, lease_until = 0 \
             WHERE id = ? AND lease_owner = ?",
            vec![id.into(), owner.into()],
        )
        .await
        .map(|_| ())
    }

    /// Takes one refresh from the budget of credential `hash` (at most `budget` per `window_ms`),
    /// atomically across every broker sharing the database: the conditional UPDATE counts only
    /// while the window has room (or has run out and starts again) and the provider has not asked
    /// us to back off. Taken before the provider call, so a crash mid-call still counts.
    pub async fn take_refresh_budget(
        &self,
        hash: &str,
        now: i64,
        budget: i64,
        window_ms: i64,
    ) -> Result<Result<(), BudgetRefusal>, StoreError> {
        let insert = match self.backend() {
            Backend::MySql => {
                "INSERT IGNORE INTO refresh_budgets (credential_hash, window_start, used, blocked_until) \
                 VALUES (?, ?, 0, 0)"
            }
            _ => {
                "INSERT INTO refresh_budgets (credential_hash, window_start, used, blocked_until) \
                 VALUES (?, ?, 0, 0) ON CONFLICT (credential_hash) DO NOTHING"
            }
        };
        self.execute(insert, vec![hash.into(), now.into()]).await?;
        let expired = now - window_ms;
        // `used` is assigned before `window_start`: MySQL evaluates SET left to right, and both
        // CASEs must see the window as it was.
        let taken = self
            .execute(
                "UPDATE refresh_budgets SET \
                 used = CASE WHEN window_start <= ? THEN 1 ELSE used + 1 END, \
                 window_start = CASE WHEN window_start <= ? THEN ? ELSE window_start END \
                 WHERE credential_hash = ? AND blocked_until <= ? AND (window_start <= ? OR used < ?)",
                vec![
                    expired.into(),
                    expired.into(),
                    now.into(),
                    hash.into(),
                    now.into(),
                    expired.into(),
                    budget.into(),
                ],
            )
            .await?;
        if taken == 1 {
            return Ok(Ok(()));
        }
        let row: Option<BudgetRow> = self
            .fetch_optional(
                "SELECT window_start, used, blocked_until FROM refresh_budgets WHERE credential_hash = ?",
                vec![hash.into()],
            )
            .await?;
        Ok(Err(match row {
            Some(r) if r.blocked_until > now => BudgetRefusal::Blocked {
                until: r.blocked_until,
            },
            Some(r) if r.used >= budget => BudgetRefusal::Spent {
                until: r.window_start + window_ms,
            },
            // Changed under us (another broker started a new window): refuse briefly.
            _ => BudgetRefusal::Spent { until: now + 1000 },
        }))
    }

    /// The provider answered "too many requests" for credential `hash`: no refresh before `until`.
    pub async fn block_refresh_budget(&self, hash: &str, until: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE refresh_budgets SET blocked_until = ? WHERE credential_hash = ? AND blocked_until < ?",
            vec![until.into(), hash.into(), until.into()],
        )
        .await
        .map(|_| ())
    }

    /// Forgets budgets whose window ended before `before` and that are not blocked: the next
    /// refresh of such a credential starts a new window anyway.
    pub async fn purge_refresh_budgets(&self, before: i64) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM refresh_budgets WHERE window_start < ? AND blocked_until < ?",
            vec![before.into(), before.into()],
        )
        .await
    }

    /// Writes a refreshed token and, if `owner` still holds the lease, releases it — in one
    /// statement, so the new (possibly rotated) refresh token is stored before anyone is answered.
    pub async fn commit_refresh(&self, row: TokenRow, owner: &str) -> Result<bool, StoreError> {
        // lease_until is assigned before lease_owner: MySQL evaluates SET left to right.
        let sql = "UPDATE oauth_tokens SET client_secret = ?, refresh_token = ?, \
             refresh_token_hash = ?, access_token = ?, access_token_hash = ?, grant_token = ?, \
             grant_token_hash = ?, expiry_time = ?, granted_lifetime_ms = ?, api_domain = ?, \
             status = ?, key_id = ?, \
             updated_at = ?, version = version + 1, \
             lease_until = CASE WHEN lease_owner = ? THEN 0 ELSE lease_until END, \
             lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END \
             WHERE id = ?";
        let args = vec![
            Arg::from(row.client_secret),
            Arg::from(row.refresh_token),
            Arg::from(row.refresh_token_hash),
            Arg::from(row.access_token),
            Arg::from(row.access_token_hash),
            Arg::from(row.grant_token),
            Arg::from(row.grant_token_hash),
            Arg::from(row.expiry_time),
            Arg::from(row.granted_lifetime_ms),
            Arg::from(row.api_domain),
            Arg::from(row.status),
            Arg::from(row.key_id),
            Arg::from(row.updated_at),
            Arg::from(owner),
            Arg::from(owner),
            Arg::from(row.id),
        ];
        Ok(self.execute(sql, args).await? == 1)
    }

    /// Notes that access tokens of `ids` were handed out by `now`.
    pub async fn mark_used(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let placeholders = vec!["?"; ids.len()].join(", ");
        let mut args = vec![Arg::from(now)];
        args.extend(ids.iter().map(|id| Arg::from(id.as_str())));
        self.execute(
            &format!("UPDATE oauth_tokens SET last_used_at = ? WHERE id IN ({placeholders})"),
            args,
        )
        .await
        .map(|_| ())
    }

    /// Active tokens with a refresh token whose access token expires before `expiring_before`
    /// and that were used after `used_after`, soonest first.
    pub async fn refresh_due(
        &self,
        expiring_before: i64,
        used_after: i64,
        limit: i64,
    ) -> Result<Vec<DueToken>, StoreError> {
        let columns = match self.backend() {
            Backend::MySql => "CAST(id AS CHAR) AS id, CAST(tenant AS CHAR) AS tenant",
            _ => "id, tenant",
        };
        self.fetch_all(
            &format!(
                "SELECT {columns} FROM oauth_tokens WHERE status = 'active' \
                 AND refresh_token IS NOT NULL AND expiry_time IS NOT NULL AND expiry_time < ? \
                 AND last_used_at > ? ORDER BY expiry_time LIMIT ?"
            ),
            vec![expiring_before.into(), used_after.into(), limit.into()],
        )
        .await
    }
}
