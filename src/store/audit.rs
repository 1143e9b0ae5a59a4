//! The `audit_events` table.

use super::{Arg, Backend, Store, StoreError};

/// One audit record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// Given by the audit collector when empty (uuid v7, in the order events were recorded).
    pub id: String,
    pub at: i64,
    pub caller: String,
    pub tenant: String,
    pub token_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub status: i64,
    pub detail: Option<String>,
    pub request_id: Option<String>,
    /// How many identical events this row stands for (1 unless aggregated).
    pub occurrences: i64,
    /// When the last of them happened, for aggregated rows.
    pub last_at: Option<i64>,
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

const COLUMNS: &str = "id, at, caller, tenant, token_id, action, outcome, status, detail, \
    request_id, occurrences, last_at";
const MYSQL_COLUMNS: &str = "CAST(id AS CHAR) AS id, at, CAST(caller AS CHAR) AS caller, \
    CAST(tenant AS CHAR) AS tenant, CAST(token_id AS CHAR) AS token_id, \
    CAST(action AS CHAR) AS action, CAST(outcome AS CHAR) AS outcome, status, \
    CAST(detail AS CHAR) AS detail, CAST(request_id AS CHAR) AS request_id, occurrences, last_at";

impl Store {
    /// Writes a batch of events: multi-row INSERTs of a few fixed sizes, so the database (and
    /// sqlx's statement cache) sees at most three distinct statements.
    pub async fn insert_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let mut rest = rows;
        while !rest.is_empty() {
            let size = [50, 10, 1]
                .into_iter()
                .find(|&n| rest.len() >= n)
                .expect("1 always fits");
            let (chunk, tail) = rest.split_at(size);
            self.insert_audit_chunk(chunk).await?;
            rest = tail;
        }
        Ok(())
    }

    async fn insert_audit_chunk(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let mut sql = format!("INSERT INTO audit_events ({COLUMNS}) VALUES ");
        let mut args = Vec::with_capacity(rows.len() * 10);
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            args.extend([
                Arg::from(r.id.as_str()),
                Arg::from(r.at),
                Arg::from(r.caller.as_str()),
                Arg::from(r.tenant.as_str()),
                Arg::from(r.token_id.clone()),
                Arg::from(r.action.as_str()),
                Arg::from(r.outcome.as_str()),
                Arg::from(r.status),
                Arg::from(r.detail.clone()),
                Arg::from(r.request_id.clone()),
                Arg::from(r.occurrences),
                Arg::from(r.last_at),
            ]);
        }
        self.execute(&sql, args).await.map(|_| ())
    }

    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let columns = match self.backend() {
            Backend::MySql => MYSQL_COLUMNS,
            _ => COLUMNS,
        };
        let mut sql = format!("SELECT {columns} FROM audit_events WHERE 1 = 1");
        let mut args = Vec::new();
        for (column, value) in [
            ("tenant", &f.tenant),
            ("token_id", &f.token_id),
            ("caller", &f.caller),
            ("action", &f.action),
        ] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(Arg::from(v.as_str()));
            }
        }
        if let Some(since) = f.since {
            sql.push_str(" AND at >= ?");
            args.push(Arg::from(since));
        }
        if let Some(before) = &f.before {
            sql.push_str(" AND id < ?");
            args.push(Arg::from(before.as_str()));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Arg::from(i64::from(f.limit)));
        self.fetch_all(&sql, args).await
    }

    /// How many tokens there are per status (for the metrics gauge).
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Count {
            status: String,
            n: i64,
        }
        let sql = match self.backend() {
            Backend::MySql => {
                "SELECT CAST(status AS CHAR) AS status, COUNT(*) AS n FROM oauth_tokens GROUP BY status"
            }
            _ => "SELECT status, COUNT(*) AS n FROM oauth_tokens GROUP BY status",
        };
        let rows: Vec<Count> = self.fetch_all(sql, Vec::new()).await?;
        Ok(rows.into_iter().map(|c| (c.status, c.n)).collect())
    }
}
