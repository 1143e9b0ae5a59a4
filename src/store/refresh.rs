//! Refresh coordination in the database, so several broker processes sharing one database act as
//! one: a lease per token (a conditional UPDATE works the same on all three backends), the
//! per-token refresh budget, and "last handed out" marks for the background refresher.

use super::{Arg, Backend, Store, StoreError, TokenRow};

/// The coordination columns of one token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshState {
    pub lease_until: i64,
    pub refresh_window_start: i64,
    pub refresh_count: i64,
    pub last_used_at: i64,
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

    pub async fn refresh_state(&self, id: &str) -> Result<Option<RefreshState>, StoreError> {
        self.fetch_optional(
            "SELECT lease_until, refresh_window_start, refresh_count, last_used_at \
             FROM oauth_tokens WHERE id = ?",
            vec![id.into()],
        )
        .await
    }

    /// Counts a refresh attempt against the budget window (written before the provider call, so a
    /// crash mid-call still counts).
    pub async fn record_refresh_attempt(
        &self,
        id: &str,
        window_start: i64,
        count: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE oauth_tokens SET refresh_window_start = ?, refresh_count = ? WHERE id = ?",
            vec![window_start.into(), count.into(), id.into()],
        )
        .await
        .map(|_| ())
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
