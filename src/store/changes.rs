//! The `token_changes` table: the change feed replicas poll to drop cached copies of tokens
//! another broker wrote (see `tokens/changes.rs`).

use super::sql::{PerBackend, Sql};
use super::{Backend, Store, StoreError};

/// One change: the token written, or `None` for "every token" (a delete_tokens).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChangeRow {
    pub seq: i64,
    pub token_id: Option<String>,
}

struct ChangeSql {
    insert: Sql,
    since: Sql,
    latest: Sql,
    purge: Sql,
}

static CHANGE_SQL: PerBackend<ChangeSql> = PerBackend::new(ChangeSql::build);

/// The most changes one poll reads; a replica that falls further behind reads on next time.
pub const CHANGES_PER_POLL: i64 = 5000;

impl ChangeSql {
    fn build(b: Backend) -> Self {
        // MySQL marks binary-collated text BINARY, which sqlx will not decode as a String.
        let token_id = match b {
            Backend::MySql => "CAST(token_id AS CHAR) AS token_id",
            _ => "token_id",
        };
        Self {
            insert: Sql::new(b, "INSERT INTO token_changes (token_id, at) VALUES (?, ?)"),
            since: Sql::new(
                b,
                &format!(
                    "SELECT seq, {token_id} FROM token_changes WHERE seq > ? ORDER BY seq LIMIT {CHANGES_PER_POLL}"
                ),
            ),
            latest: Sql::new(b, "SELECT COALESCE(MAX(seq), 0) FROM token_changes"),
            purge: Sql::new(b, "DELETE FROM token_changes WHERE at < ?"),
        }
    }
}

/// Which cached tokens a write makes stale on the other replicas.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Changed<'a> {
    Token(&'a str),
    /// Every token (a delete_tokens).
    Every,
}

impl Store {
    /// The statement that appends `changed` to the feed, and its arguments (run in the write's
    /// own transaction: a committed write is always in the feed).
    pub(super) fn change_row(&self, changed: Changed<'_>) -> (&'static Sql, Vec<super::Arg>) {
        let sql = &CHANGE_SQL.get(self.backend()).insert;
        let token_id = match changed {
            Changed::Token(id) => Some(id.to_owned()),
            Changed::Every => None,
        };
        let now = chrono::Utc::now().timestamp_millis();
        (sql, vec![token_id.into(), now.into()])
    }

    /// Changes after `seq`, oldest first, at most [`CHANGES_PER_POLL`].
    pub async fn changes_since(&self, seq: i64) -> Result<Vec<ChangeRow>, StoreError> {
        let sql = &CHANGE_SQL.get(self.backend()).since;
        self.fetch_all(sql, vec![seq.into()]).await
    }

    /// The newest change's number (0 when there is none).
    pub async fn latest_change(&self) -> Result<i64, StoreError> {
        let sql = &CHANGE_SQL.get(self.backend()).latest;
        let row: Option<(i64,)> = self.fetch_optional(sql, vec![]).await?;
        Ok(row.map_or(0, |(seq,)| seq))
    }

    /// Deletes changes recorded before `before` (ms).
    pub async fn purge_changes(&self, before: i64) -> Result<u64, StoreError> {
        let sql = &CHANGE_SQL.get(self.backend()).purge;
        self.execute(sql, vec![before.into()]).await
    }
}
