//! Refresh coordination in the database, so several broker processes sharing one database act as
//! one: a lease per token (a conditional UPDATE works the same on all three backends), the
//! refresh budget per refresh credential, and "last handed out" marks for the background refresher.

use sqlx::QueryBuilder;

use super::changes::Changed;
use super::columns::{select, table, Build, Statement, COMMIT, INSERT};
use super::sql::{PerBackend, Sql};
use super::{with_writer, Backend, Store, StoreError, TokenRow, WebhookRow};

/// Why the budget refused a refresh, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// This broker's own count for the window is spent; it renews at `until`.
    Spent { until: i64 },
    /// The provider said "too many requests"; nothing is sent before `until`.
    Blocked { until: i64 },
}

table! {
    /// One credential's refresh budget.
    #[derive(Debug, Clone)]
    struct BudgetRow in "refresh_budgets" {
        credential_hash: String [INSERT, KEY],
        window_start: i64 [INSERT],
        used: i64 [INSERT],
        blocked_until: i64 [INSERT],
    }
}

table! {
    /// A token the background refresher should look at.
    #[derive(Debug, Clone)]
    pub struct DueToken in "oauth_tokens" {
        pub id: String [],
        pub tenant: String [],
    }
}

/// The statements of refresh coordination, per backend.
struct RefreshSql {
    acquire: Sql,
    release: Sql,
    /// Creates a credential's budget unless it exists.
    budget_insert: Statement<BudgetRow>,
    budget_take: Sql,
    budget_read: Sql,
    budget_block: Sql,
    budget_purge: Sql,
    commit: Statement<TokenRow>,
    due: Sql,
}

static REFRESH_SQL: PerBackend<RefreshSql> = PerBackend::new(RefreshSql::build);

impl RefreshSql {
    fn build(b: Backend) -> Self {
        let sql = |text: &str| Sql::new(b, text);
        let budget_insert = match b {
            Backend::MySql => Build::new(b).text("INSERT IGNORE").into_values(INSERT, 1),
            _ => Build::new(b)
                .text("INSERT")
                .into_values(INSERT, 1)
                .text(" ON CONFLICT (credential_hash) DO NOTHING"),
        };
        Self {
            acquire: sql(
                "UPDATE oauth_tokens SET lease_owner = ?, lease_until = ? \
                 WHERE id = ? AND lease_until < ?",
            ),
            release: sql(
                "UPDATE oauth_tokens SET lease_owner = NULL, lease_until = 0 \
                 WHERE id = ? AND lease_owner = ?",
            ),
            budget_insert: budget_insert.finish(),
            // `used` is assigned before `window_start`: MySQL evaluates SET left to right, and
            // both CASEs must see the window as it was.
            budget_take: sql(
                "UPDATE refresh_budgets SET \
                 used = CASE WHEN window_start <= ? THEN 1 ELSE used + 1 END, \
                 window_start = CASE WHEN window_start <= ? THEN ? ELSE window_start END \
                 WHERE credential_hash = ? AND blocked_until <= ? AND (window_start <= ? OR used < ?)",
            ),
            budget_read: sql(&format!(
                "{} WHERE credential_hash = ?",
                select::<BudgetRow>(b)
            )),
            budget_block: sql(
                "UPDATE refresh_budgets SET blocked_until = ? \
                 WHERE credential_hash = ? AND blocked_until < ?",
            ),
            budget_purge: sql(
                "DELETE FROM refresh_budgets WHERE window_start < ? AND blocked_until < ?",
            ),
            // The row's refresh-side columns, and the lease released if the committer holds it
            // (lease_until is assigned before lease_owner: MySQL evaluates SET left to right).
            commit: Build::new(b)
                .update(COMMIT)
                .text(
                    ", version = version + 1, \
                     lease_until = CASE WHEN lease_owner = ? THEN 0 ELSE lease_until END, \
                     lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END",
                )
                .where_key()
                .finish(),
            due: sql(&format!(
                "{} WHERE status = 'active' \
                 AND refresh_token IS NOT NULL AND expiry_time IS NOT NULL AND expiry_time < ? \
                 AND last_used_at > ? ORDER BY expiry_time LIMIT ?",
                select::<DueToken>(b)
            )),
        }
    }
}

impl Store {
    fn refresh_sql(&self) -> &'static RefreshSql {
        REFRESH_SQL.get(self.backend())
    }

    /// Takes the refresh lease of token `id` until `until` unless another holder's lease is still
    /// running at `now`. True when this caller now holds it.
    pub async fn acquire_lease(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let args = vec![owner.into(), until.into(), id.into(), now.into()];
        Ok(self.execute(&self.refresh_sql().acquire, args).await? == 1)
    }

    /// Gives the lease back, if `owner` still holds it.
    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let args = vec![id.into(), owner.into()];
        self.execute(&self.refresh_sql().release, args)
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
        let sql = self.refresh_sql();
        let fresh = BudgetRow {
            credential_hash: hash.to_owned(),
            window_start: now,
            used: 0,
            blocked_until: 0,
        };
        let insert = &sql.budget_insert;
        self.execute(insert.sql(), insert.args(fresh, [])).await?;
        let expired = now - window_ms;
        let taken = self
            .execute(
                &sql.budget_take,
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
            .fetch_optional(&sql.budget_read, vec![hash.into()])
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
        let args = vec![until.into(), hash.into(), until.into()];
        self.execute(&self.refresh_sql().budget_block, args)
            .await
            .map(|_| ())
    }

    /// Forgets budgets whose window ended before `before` and that are not blocked: the next
    /// refresh of such a credential starts a new window anyway.
    pub async fn purge_refresh_budgets(&self, before: i64) -> Result<u64, StoreError> {
        let args = vec![before.into(), before.into()];
        self.execute(&self.refresh_sql().budget_purge, args).await
    }

    /// Writes a refreshed token and, if `owner` still holds the lease, releases it — in one
    /// statement, so the new (possibly rotated) refresh token is stored before anyone is answered.
    pub async fn commit_refresh(
        &self,
        row: TokenRow,
        owner: &str,
        events: Vec<WebhookRow>,
    ) -> Result<bool, StoreError> {
        let commit = &self.refresh_sql().commit;
        let id = row.id.clone();
        let args = commit.args(row, [owner.into(), owner.into()]);
        let changed = Changed::Token(&id);
        Ok(self
            .write_changing(commit.sql(), args, changed, |_| events)
            .await?
            == 1)
    }

    /// Notes that access tokens of `ids` were handed out by `now`.
    pub async fn mark_used(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        with_writer!(self, p => {
            let mut q = QueryBuilder::new("UPDATE oauth_tokens SET last_used_at = ");
            q.push_bind(now).push(" WHERE id IN (");
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(id.as_str());
            }
            q.push(")");
            q.build().execute(p).await?;
        });
        Ok(())
    }

    /// Active tokens with a refresh token whose access token expires before `expiring_before`
    /// and that were used after `used_after`, soonest first.
    pub async fn refresh_due(
        &self,
        expiring_before: i64,
        used_after: i64,
        limit: i64,
    ) -> Result<Vec<DueToken>, StoreError> {
        let args = vec![expiring_before.into(), used_after.into(), limit.into()];
        self.fetch_all(&self.refresh_sql().due, args).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::tests::{check, check_select, placeholders, written, BACKENDS};
    use super::*;

    #[test]
    fn selects_name_every_column_once() {
        check_select::<BudgetRow>();
        check_select::<DueToken>();
    }

    #[test]
    fn statements_bind_what_they_name() {
        for b in BACKENDS {
            let s = RefreshSql::build(b);
            check(b, &s.budget_insert, 0);
            check(b, &s.commit, 2);
            for (sql, n) in [
                (&s.acquire, 4),
                (&s.release, 2),
                (&s.budget_take, 7),
                (&s.budget_read, 1),
                (&s.budget_block, 3),
                (&s.budget_purge, 2),
                (&s.due, 3),
            ] {
                assert_eq!(placeholders(b, sql.as_str()), n, "{}", sql.as_str());
            }
        }
    }

    #[test]
    fn a_commit_writes_the_refresh_side_of_the_row() {
        let commit = written::<TokenRow>(COMMIT);
        for kept in [
            "id",
            "tenant",
            "provider",
            "user_name",
            "client_id",
            "redirect_url",
            "created_at",
            "version",
        ] {
            assert!(!commit.contains(&kept), "a refresh must not write {kept}");
        }
        for written in [
            "refresh_token",
            "refresh_token_hash",
            "access_token",
            "access_token_hash",
            "expiry_time",
            "key_id",
            "updated_at",
        ] {
            assert!(commit.contains(&written), "a refresh writes {written}");
        }
        let n = commit.len();
        let s = RefreshSql::build(Backend::Postgres);
        assert!(s.commit.sql().as_str().ends_with(&format!(
            "lease_owner = CASE WHEN lease_owner = ${} THEN NULL ELSE lease_owner END \
                 WHERE id = ${}",
            n + 2,
            n + 3
        )));
    }
}
