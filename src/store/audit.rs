//! The `audit_events` table.

use sqlx::QueryBuilder;

use super::columns::{select, table, Build, Statement, INSERT};
use super::sql::{PerBackend, Sql};
use super::{with_pool, Backend, Store, StoreError};

table! {
    /// One audit record, as stored.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AuditRow in "audit_events" {
        /// Given by the audit collector when empty (uuid v7, in the order events were recorded).
        pub id: String [INSERT],
        pub at: i64 [INSERT],
        pub caller: String [INSERT],
        pub tenant: String [INSERT],
        pub token_id: Option<String> [INSERT],
        pub action: String [INSERT],
        pub outcome: String [INSERT],
        pub status: i64 [INSERT],
        pub detail: Option<String> [INSERT],
        pub request_id: Option<String> [INSERT],
        /// How many identical events this row stands for (1 unless aggregated).
        pub occurrences: i64 [INSERT],
        /// When the last of them happened, for aggregated rows.
        pub last_at: Option<i64> [INSERT],
        /// The client's address, for refused unauthenticated calls (counted per source).
        pub source: Option<String> [INSERT],
    }
}

/// Filters of the audit query, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub token_id: Option<String>,
    pub caller: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    /// Only ids strictly before this one (the cursor).
    pub before: Option<String>,
    pub limit: u32,
}

/// The batch sizes of `insert_audit`: multi-row INSERTs of these sizes only, so the database
/// (and sqlx's statement cache) sees at most three distinct statements.
const BATCH_SIZES: [usize; 3] = [50, 10, 1];

/// The statements of `audit_events`, per backend.
struct AuditSql {
    /// One INSERT per entry of [`BATCH_SIZES`].
    inserts: [Statement<AuditRow>; 3],
    /// The SELECT list the dynamic `list_audit` starts from.
    select: String,
    purge: Sql,
}

static AUDIT_SQL: PerBackend<AuditSql> = PerBackend::new(AuditSql::build);

impl AuditSql {
    fn build(b: Backend) -> Self {
        Self {
            inserts: BATCH_SIZES
                .map(|n| Build::new(b).text("INSERT").into_values(INSERT, n).finish()),
            select: select::<AuditRow>(b),
            purge: Sql::new(b, "DELETE FROM audit_events WHERE at < ?"),
        }
    }
}

impl Store {
    /// Writes a batch of events, in chunks of [`BATCH_SIZES`].
    pub async fn insert_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let sql = AUDIT_SQL.get(self.backend());
        let mut rest = rows;
        while !rest.is_empty() {
            let (insert, size) = sql
                .inserts
                .iter()
                .zip(BATCH_SIZES)
                .find(|&(_, n)| rest.len() >= n)
                .expect("1 always fits");
            let (chunk, tail) = rest.split_at(size);
            let args = insert.args_rows(chunk.iter().cloned());
            self.execute(insert.sql(), args).await?;
            rest = tail;
        }
        Ok(())
    }

    /// Deletes the rows recorded before `before` (ms); returns how many.
    pub async fn purge_audit(&self, before: i64) -> Result<u64, StoreError> {
        let sql = &AUDIT_SQL.get(self.backend()).purge;
        self.execute(sql, vec![before.into()]).await
    }

    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let select = AUDIT_SQL.get(self.backend()).select.as_str();
        let rows = with_pool!(self, p => {
            let mut q = QueryBuilder::new(select);
            q.push(" WHERE 1 = 1");
            for (column, value) in [
                ("tenant", &f.tenant),
                ("token_id", &f.token_id),
                ("caller", &f.caller),
                ("action", &f.action),
            ] {
                if let Some(v) = value {
                    q.push(format_args!(" AND {column} = ")).push_bind(v.as_str());
                }
            }
            if let Some(since) = f.since {
                q.push(" AND at >= ").push_bind(since);
            }
            if let Some(before) = &f.before {
                q.push(" AND id < ").push_bind(before.as_str());
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(f.limit));
            q.build_query_as::<AuditRow>().fetch_all(p).await?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::tests::{check, check_select, placeholders, BACKENDS};
    use super::super::columns::Table;
    use super::*;

    #[test]
    fn statements_name_every_column_once() {
        check_select::<AuditRow>();
        for b in BACKENDS {
            let s = AuditSql::build(b);
            for (insert, n) in s.inserts.iter().zip(BATCH_SIZES) {
                check(b, insert, 0);
                let sql = insert.sql().as_str();
                assert_eq!(placeholders(b, sql), n * AuditRow::COLUMNS.len(), "{sql}");
            }
        }
    }
}
