//! Connect sessions (`connect_sessions`): a browser login from the service's request to the
//! provider's answer. Created by a service, opened once by a browser (which binds it), claimed
//! once by the callback, finished as connected or failed. Rows outlive their expiry by a day so a
//! late or repeated visit can be told "expired" or "already used" rather than "unknown".

use super::columns::{select, table, Build, Statement, INSERT};
use super::sql::{PerBackend, Sql};
use super::{Arg, Backend, Store, StoreError, TenantFilter};

table! {
    /// One connect session, as stored.
    #[derive(Clone)]
    pub struct SessionRow in "connect_sessions" {
        pub id: String [INSERT],
        pub link_hash: String [INSERT],
        pub state_hash: String [INSERT],
        pub browser_hash: Option<String> [INSERT],
        pub nonce_hash: Option<String> [INSERT],
        pub provider: String [INSERT],
        pub tenant: String [INSERT],
        pub caller: String [INSERT],
        pub user_name: Option<String> [INSERT],
        pub return_to: Option<String> [INSERT],
        pub redirect_uri: String [INSERT],
        pub scopes: Option<String> [INSERT],
        pub code_verifier: Option<Vec<u8>> [INSERT],
        pub key_id: String [INSERT],
        pub status: String [INSERT],
        pub token_id: Option<String> [INSERT],
        pub error: Option<String> [INSERT],
        pub created_at: i64 [INSERT],
        pub updated_at: i64 [INSERT],
        pub expires_at: i64 [INSERT],
    }
}

/// How long a finished or expired session is kept to explain a late visit.
pub const SESSION_AFTERLIFE_MS: i64 = 24 * 3600 * 1000;

/// The statements of `connect_sessions`, per backend.
struct SessionSql {
    sweep: Sql,
    insert: Statement<SessionRow>,
    by_link: Sql,
    by_state: Sql,
    /// [any tenant, one tenant].
    by_id: [Sql; 2],
    open: Sql,
    claim: Sql,
    finish: Sql,
}

static SESSION_SQL: PerBackend<SessionSql> = PerBackend::new(SessionSql::build);

impl SessionSql {
    fn build(b: Backend) -> Self {
        let select = select::<SessionRow>(b);
        Self {
            sweep: Sql::new(b, "DELETE FROM connect_sessions WHERE expires_at < ?"),
            insert: Build::new(b).text("INSERT").into_values(INSERT, 1).finish(),
            by_link: Sql::new(b, &format!("{select} WHERE link_hash = ?")),
            by_state: Sql::new(b, &format!("{select} WHERE state_hash = ?")),
            by_id: [
                Sql::new(b, &format!("{select} WHERE id = ?")),
                Sql::new(b, &format!("{select} WHERE id = ? AND tenant = ?")),
            ],
            open: Sql::new(
                b,
                "UPDATE connect_sessions SET status = 'opened', browser_hash = ?, updated_at = ? \
                 WHERE link_hash = ? AND status = 'pending' AND expires_at > ?",
            ),
            claim: Sql::new(
                b,
                "UPDATE connect_sessions SET status = 'exchanging', updated_at = ? \
                 WHERE id = ? AND status = 'opened' AND expires_at > ?",
            ),
            finish: Sql::new(
                b,
                "UPDATE connect_sessions SET status = ?, token_id = ?, error = ?, updated_at = ? \
                 WHERE id = ? AND status IN ('pending', 'opened', 'exchanging')",
            ),
        }
    }
}

impl Store {
    /// Forgets sessions that expired more than [`SESSION_AFTERLIFE_MS`] before `now`.
    pub async fn sweep_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let sql = SESSION_SQL.get(self.backend());
        self.execute(&sql.sweep, vec![(now - SESSION_AFTERLIFE_MS).into()])
            .await
    }

    /// Stores a new session, first forgetting those a day past their expiry.
    pub async fn insert_session(&self, row: SessionRow, now: i64) -> Result<(), StoreError> {
        let sql = SESSION_SQL.get(self.backend());
        self.execute(&sql.sweep, vec![(now - SESSION_AFTERLIFE_MS).into()])
            .await?;
        self.execute(sql.insert.sql(), sql.insert.args(row, []))
            .await
            .map(|_| ())
    }

    pub async fn session_by_link(&self, link_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = SESSION_SQL.get(self.backend());
        self.fetch_optional(&sql.by_link, vec![link_hash.into()])
            .await
    }

    pub async fn session_by_state(
        &self,
        state_hash: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        let sql = SESSION_SQL.get(self.backend());
        self.fetch_optional(&sql.by_state, vec![state_hash.into()])
            .await
    }

    pub async fn session_by_id(
        &self,
        id: &str,
        tenants: &TenantFilter,
    ) -> Result<Option<SessionRow>, StoreError> {
        let (sql, tenant) = tenants.pick(&SESSION_SQL.get(self.backend()).by_id);
        let args = std::iter::once(Arg::from(id)).chain(tenant).collect();
        self.fetch_optional(sql, args).await
    }

    /// Opens a pending, unexpired session for the browser whose cookie hashes to
    /// `browser_hash`: only the first opener gets it.
    pub async fn open_session(
        &self,
        link_hash: &str,
        browser_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sql = SESSION_SQL.get(self.backend());
        let args = vec![
            browser_hash.into(),
            now.into(),
            link_hash.into(),
            now.into(),
        ];
        Ok(self.execute(&sql.open, args).await? == 1)
    }

    /// Claims an opened, unexpired session for its callback: only the first claimer gets it.
    pub async fn claim_session(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let sql = SESSION_SQL.get(self.backend());
        let args = vec![now.into(), id.into(), now.into()];
        Ok(self.execute(&sql.claim, args).await? == 1)
    }

    /// Records how an unfinished session ended.
    pub async fn finish_session(
        &self,
        id: &str,
        status: &str,
        token_id: Option<&str>,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let sql = SESSION_SQL.get(self.backend());
        let args = vec![
            status.into(),
            token_id.map(str::to_owned).into(),
            error.map(str::to_owned).into(),
            now.into(),
            id.into(),
        ];
        self.execute(&sql.finish, args).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::tests::{check, check_select, placeholders, BACKENDS};
    use super::super::columns::Table;
    use super::*;

    #[test]
    fn statements_name_every_column_once() {
        check_select::<SessionRow>();
        for b in BACKENDS {
            let s = SessionSql::build(b);
            check(b, &s.insert, 0);
            assert_eq!(
                placeholders(b, s.insert.sql().as_str()),
                SessionRow::COLUMNS.len()
            );
            for (sql, n) in [
                (&s.sweep, 1),
                (&s.by_link, 1),
                (&s.by_state, 1),
                (&s.by_id[0], 1),
                (&s.by_id[1], 2),
                (&s.open, 4),
                (&s.claim, 3),
                (&s.finish, 5),
            ] {
                assert_eq!(placeholders(b, sql.as_str()), n, "{}", sql.as_str());
            }
        }
    }
}
