//! The `oauth_tokens` table: rows as stored (ciphertexts and lookup hashes, never plaintext),
//! declared once with their column table; every statement of the table is generated from it.

use sqlx::QueryBuilder;

use super::changes::Changed;
use super::columns::{select, table, Build, Statement, INSERT, REENCRYPT, UPDATE};
use super::sql::{AnyRow, PerBackend, Sql};
use super::{with_pool, Arg, Backend, Store, StoreError, WebhookRow};

table! {
    /// One row of `oauth_tokens`, exactly as stored. The brackets say which writes set a column
    /// (see `columns`); `lease_owner`, `lease_until` and `last_used_at` are the refresh
    /// coordination's and never part of a row.
    #[derive(Clone)]
    pub struct TokenRow in "oauth_tokens" {
        pub id: String [INSERT, KEY],
        /// '' when the token belongs to no tenant.
        pub tenant: String [INSERT, UPDATE],
        pub provider: String [INSERT, UPDATE],
        pub user_name: Option<String> [INSERT, UPDATE],
        pub client_id: Option<String> [INSERT, UPDATE],
        pub client_secret: Option<Vec<u8>> [INSERT, UPDATE, COMMIT, REENCRYPT],
        pub refresh_token: Option<Vec<u8>> [INSERT, UPDATE, COMMIT, REENCRYPT],
        pub refresh_token_hash: Option<String> [INSERT, UPDATE, COMMIT],
        pub access_token: Option<Vec<u8>> [INSERT, UPDATE, COMMIT, REENCRYPT],
        pub access_token_hash: Option<String> [INSERT, UPDATE, COMMIT],
        pub grant_token: Option<Vec<u8>> [INSERT, UPDATE, COMMIT, REENCRYPT],
        pub grant_token_hash: Option<String> [INSERT, UPDATE, COMMIT],
        pub expiry_time: Option<i64> [INSERT, UPDATE, COMMIT],
        pub granted_lifetime_ms: Option<i64> [INSERT, UPDATE, COMMIT],
        pub redirect_url: Option<String> [INSERT, UPDATE],
        pub api_domain: Option<String> [INSERT, UPDATE, COMMIT],
        pub status: String [INSERT, UPDATE, COMMIT],
        pub key_id: String [INSERT, UPDATE, COMMIT, REENCRYPT],
        pub created_at: i64 [INSERT],
        pub updated_at: i64 [INSERT, UPDATE, COMMIT],
        /// Changes with every write of the row: random on insert, incremented by the database
        /// on each update (the value a caller sets is ignored).
        pub version: i64 [INSERT],
        /// Who logged in (the provider's subject, email and name) and the scopes granted,
        /// space-separated: the broker's, from a login or an exchange.
        pub subject: Option<String> [INSERT, UPDATE],
        pub email: Option<String> [INSERT, UPDATE],
        pub display_name: Option<String> [INSERT, UPDATE],
        pub scopes: Option<String> [INSERT, UPDATE],
    }
}

table! {
    /// A token's id and version.
    #[derive(Debug, Clone)]
    pub struct TokenVersion in "oauth_tokens" {
        pub id: String [],
        pub version: i64 [],
    }
}

/// How many ids one `id IN (…)` read takes; fewer are padded with the last one, so the database
/// sees one statement however many are asked for.
const IDS_PER_QUERY: usize = 50;

/// The statements of `oauth_tokens`, per backend. Two-element arrays are [any tenant, one tenant]
/// (see [`TenantFilter::pick`]).
pub(super) struct TokenSql {
    by_id: [Sql; 2],
    by_ids: Sql,
    versions_by_ids: Sql,
    /// [any provider, one provider].
    by_user: [Sql; 2],
    /// Per [`HashColumn::ALL`]: [any client, one client_id].
    by_hash: [[Sql; 2]; 3],
    delete: [Sql; 2],
    delete_all: [Sql; 2],
    /// The SELECT list the dynamic `list_tokens` starts from.
    select: String,
    /// Tokens per status, for the metrics gauge.
    count_by_status: Sql,
    insert: Statement<TokenRow>,
    /// Multi-row INSERTs of [`INSERT_BATCH_SIZES`] rows.
    pub(super) inserts: [Statement<TokenRow>; 3],
    update: Statement<TokenRow>,
    pub(super) reencrypt: Statement<TokenRow>,
}

static TOKEN_SQL: PerBackend<TokenSql> = PerBackend::new(TokenSql::build);

/// The sizes of the multi-row INSERTs of `insert_tokens` (a few distinct statements only).
pub(super) const INSERT_BATCH_SIZES: [usize; 3] = [50, 10, 1];

impl TokenSql {
    fn build(b: Backend) -> Self {
        let rows = select::<TokenRow>(b);
        let sql = |text: String| Sql::new(b, &text);
        let in_tenant = |text: &str| [sql(text.to_owned()), sql(format!("{text} AND tenant = ?"))];
        let ids = vec!["?"; IDS_PER_QUERY].join(", ");
        let oldest = " ORDER BY created_at, id LIMIT 1";
        Self {
            by_id: in_tenant(&format!("{rows} WHERE id = ?")),
            by_ids: sql(format!("{rows} WHERE id IN ({ids})")),
            versions_by_ids: sql(format!("{} WHERE id IN ({ids})", select::<TokenVersion>(b))),
            by_user: [
                sql(format!("{rows} WHERE tenant = ? AND user_name = ?{oldest}")),
                sql(format!(
                    "{rows} WHERE tenant = ? AND user_name = ? AND provider = ?{oldest}"
                )),
            ],
            by_hash: HashColumn::ALL.map(|h| {
                let c = h.column();
                [
                    sql(format!("{rows} WHERE tenant = ? AND {c} = ?{oldest}")),
                    sql(format!(
                        "{rows} WHERE tenant = ? AND {c} = ? AND client_id = ?{oldest}"
                    )),
                ]
            }),
            delete: in_tenant("DELETE FROM oauth_tokens WHERE id = ?"),
            delete_all: in_tenant("DELETE FROM oauth_tokens WHERE 1 = 1"),
            select: rows,
            count_by_status: sql(format!(
                "SELECT {}, COUNT(*) AS n FROM oauth_tokens GROUP BY status",
                match b {
                    Backend::MySql => "CAST(status AS CHAR) AS status",
                    _ => "status",
                }
            )),
            insert: Build::new(b).text("INSERT").into_values(INSERT, 1).finish(),
            inserts: INSERT_BATCH_SIZES
                .map(|n| Build::new(b).text("INSERT").into_values(INSERT, n).finish()),
            update: Build::new(b)
                .update(UPDATE)
                .text(", version = version + 1")
                .where_key()
                .finish(),
            reencrypt: Build::new(b)
                .update(REENCRYPT)
                .text(", version = version + 1")
                .where_key()
                .text(" AND key_id = ? AND updated_at = ?")
                .finish(),
        }
    }
}

/// Which tenants an operation may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantFilter {
    /// Every tenant (callers whose JWT names no tenant).
    Any,
    /// Only this tenant ('' is "no tenant").
    Only(String),
}

impl TenantFilter {
    /// Which of a statement's two forms to run ([any tenant, one tenant]), and its parameter.
    pub(super) fn pick<'a, T>(&'a self, forms: &'a [T; 2]) -> (&'a T, Option<Arg>) {
        match self {
            Self::Any => (&forms[0], None),
            Self::Only(t) => (&forms[1], Some(Arg::from(t.as_str()))),
        }
    }
}

/// The lookup-hash columns a token can be found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashColumn {
    AccessToken,
    GrantToken,
    RefreshToken,
}

impl HashColumn {
    const ALL: [Self; 3] = [Self::AccessToken, Self::GrantToken, Self::RefreshToken];

    fn column(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token_hash",
            Self::GrantToken => "grant_token_hash",
            Self::RefreshToken => "refresh_token_hash",
        }
    }
}

/// Filters of `GET /v1/tokens`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub tenant: Option<String>,
    pub user_name: Option<String>,
    pub provider: Option<String>,
    pub status: Option<String>,
    /// Return ids strictly after this one (the cursor).
    pub after: Option<String>,
    pub limit: u32,
}

impl Store {
    pub(super) fn token_sql(&self) -> &'static TokenSql {
        TOKEN_SQL.get(self.backend())
    }

    pub async fn token_by_id(
        &self,
        id: &str,
        tenants: &TenantFilter,
    ) -> Result<Option<TokenRow>, StoreError> {
        let (sql, tenant) = tenants.pick(&self.token_sql().by_id);
        let args = std::iter::once(Arg::from(id)).chain(tenant).collect();
        self.fetch_optional(sql, args).await
    }

    /// The tokens of `ids` that exist, in any tenant.
    pub async fn tokens_by_ids(&self, ids: &[String]) -> Result<Vec<TokenRow>, StoreError> {
        self.rows_by_ids(&self.token_sql().by_ids, ids).await
    }

    /// The `version` of each token of `ids` that exists, in any tenant: what a cached copy is
    /// checked against.
    pub async fn token_versions(&self, ids: &[String]) -> Result<Vec<TokenVersion>, StoreError> {
        self.rows_by_ids(&self.token_sql().versions_by_ids, ids)
            .await
    }

    /// The rows of `ids` that `sql` (an `id IN` of [`IDS_PER_QUERY`]) reads, a chunk at a time.
    async fn rows_by_ids<T: AnyRow>(
        &self,
        sql: &Sql,
        ids: &[String],
    ) -> Result<Vec<T>, StoreError> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let last = chunk.last().expect("chunks are never empty");
            let args = chunk
                .iter()
                .chain(std::iter::repeat(last))
                .take(IDS_PER_QUERY)
                .map(|id| Arg::from(id.as_str()))
                .collect();
            rows.extend(self.fetch_all::<T>(sql, args).await?);
        }
        Ok(rows)
    }

    /// The oldest token of `user_name` in `tenant` (of `provider`, when given).
    pub async fn token_by_user(
        &self,
        tenant: &str,
        user_name: &str,
        provider: Option<&str>,
    ) -> Result<Option<TokenRow>, StoreError> {
        let sql = &self.token_sql().by_user[usize::from(provider.is_some())];
        let mut args = vec![Arg::from(tenant), Arg::from(user_name)];
        args.extend(provider.map(Arg::from));
        self.fetch_optional(sql, args).await
    }

    /// The oldest token in `tenant` whose `column` hash is `hash` (and client_id, when given).
    pub async fn token_by_hash(
        &self,
        tenant: &str,
        column: HashColumn,
        hash: &str,
        client_id: Option<&str>,
    ) -> Result<Option<TokenRow>, StoreError> {
        let sql = &self.token_sql().by_hash[column as usize][usize::from(client_id.is_some())];
        let mut args = vec![Arg::from(tenant), Arg::from(hash)];
        args.extend(client_id.map(Arg::from));
        self.fetch_optional(sql, args).await
    }

    /// Inserts a new row, with the webhook `events` reporting it; [`StoreError::Conflict`] if its
    /// id or (tenant, provider, user) is taken.
    pub async fn insert_token(
        &self,
        mut row: TokenRow,
        events: Vec<WebhookRow>,
    ) -> Result<(), StoreError> {
        // Random, far from overflowing: a re-created token does not repeat its old numbers.
        row.version = rand::random::<i64>() >> 2;
        let insert = &self.token_sql().insert;
        self.write(insert.sql(), insert.args(row, []), events)
            .await
            .map(|_| ())
    }

    /// Overwrites every stored field of the row with this id (and appends `events` when it
    /// did). Returns false if it is gone.
    pub async fn update_token(
        &self,
        row: TokenRow,
        events: Vec<WebhookRow>,
    ) -> Result<bool, StoreError> {
        let update = &self.token_sql().update;
        let id = row.id.clone();
        let args = update.args(row, []);
        let changed = Changed::Token(&id);
        Ok(self
            .write_changing(update.sql(), args, changed, |_| events)
            .await?
            > 0)
    }

    /// Replaces a row's ciphertexts and key id, unless the row changed since it was read
    /// (`key_id` and `updated_at` as read). True when written.
    pub async fn reencrypt_token(
        &self,
        row: TokenRow,
        read_key_id: &str,
        read_updated_at: i64,
    ) -> Result<bool, StoreError> {
        let reencrypt = &self.token_sql().reencrypt;
        let args = reencrypt.args(row, [read_key_id.into(), read_updated_at.into()]);
        Ok(self.execute(reencrypt.sql(), args).await? == 1)
    }

    pub async fn delete_token(
        &self,
        id: &str,
        tenants: &TenantFilter,
        events: Vec<WebhookRow>,
    ) -> Result<bool, StoreError> {
        let (sql, tenant) = tenants.pick(&self.token_sql().delete);
        let args = std::iter::once(Arg::from(id)).chain(tenant).collect();
        Ok(self
            .write_changing(sql, args, Changed::Token(id), |_| events)
            .await?
            > 0)
    }

    /// Deletes every token `tenants` covers, with the webhook events `events(how many)` makes.
    pub async fn delete_all_tokens(
        &self,
        tenants: &TenantFilter,
        events: impl FnOnce(u64) -> Vec<WebhookRow>,
    ) -> Result<u64, StoreError> {
        let (sql, tenant) = tenants.pick(&self.token_sql().delete_all);
        let args = tenant.into_iter().collect();
        self.write_changing(sql, args, Changed::Every, events).await
    }

    /// A page of tokens in id order.
    pub async fn list_tokens(
        &self,
        tenants: &TenantFilter,
        filter: &ListFilter,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let select = self.token_sql().select.as_str();
        let rows = with_pool!(self, p => {
            let mut q = QueryBuilder::new(select);
            q.push(" WHERE 1 = 1");
            if let TenantFilter::Only(t) = tenants {
                q.push(" AND tenant = ").push_bind(t.as_str());
            }
            for (column, value) in [
                ("tenant", &filter.tenant),
                ("user_name", &filter.user_name),
                ("provider", &filter.provider),
                ("status", &filter.status),
            ] {
                if let Some(v) = value {
                    q.push(format_args!(" AND {column} = ")).push_bind(v.as_str());
                }
            }
            if let Some(after) = &filter.after {
                q.push(" AND id > ").push_bind(after.as_str());
            }
            q.push(" ORDER BY id LIMIT ").push_bind(i64::from(filter.limit));
            q.build_query_as::<TokenRow>().fetch_all(p).await?
        });
        Ok(rows)
    }

    /// How many tokens there are per status (for the metrics gauge).
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Count {
            status: String,
            n: i64,
        }
        let rows: Vec<Count> = self
            .fetch_all(&self.token_sql().count_by_status, Vec::new())
            .await?;
        Ok(rows.into_iter().map(|c| (c.status, c.n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::tests::{check, check_select, placeholders, written, BACKENDS};
    use super::super::columns::Table;
    use super::*;

    #[test]
    fn selects_name_every_column_once() {
        check_select::<TokenRow>();
        check_select::<TokenVersion>();
    }

    #[test]
    fn writes_bind_what_they_name() {
        for b in BACKENDS {
            let s = TokenSql::build(b);
            check(b, &s.insert, 0);
            check(b, &s.update, 0);
            check(b, &s.reencrypt, 2);
            let counts = [
                (&s.by_id[0], 1),
                (&s.by_id[1], 2),
                (&s.by_ids, IDS_PER_QUERY),
                (&s.versions_by_ids, IDS_PER_QUERY),
                (&s.by_user[0], 2),
                (&s.by_user[1], 3),
                (&s.delete[0], 1),
                (&s.delete[1], 2),
                (&s.delete_all[0], 0),
                (&s.delete_all[1], 1),
                (&s.count_by_status, 0),
            ];
            for (sql, n) in counts {
                assert_eq!(placeholders(b, sql.as_str()), n, "{}", sql.as_str());
            }
            for (i, forms) in s.by_hash.iter().enumerate() {
                // `token_by_hash` indexes by the enum's discriminant.
                assert_eq!(HashColumn::ALL[i] as usize, i);
                assert!(forms[0].as_str().contains(HashColumn::ALL[i].column()));
                assert_eq!(placeholders(b, forms[0].as_str()), 2);
                assert_eq!(placeholders(b, forms[1].as_str()), 3);
            }
        }
    }

    #[test]
    fn statements_read_as_before() {
        // The shape the hand-written statements had, without pinning the column list (a new
        // column must not mean editing this test).
        let s = TokenSql::build(Backend::Sqlite);
        let set: Vec<String> = written::<TokenRow>(UPDATE)
            .iter()
            .map(|c| format!("{c} = ?"))
            .collect();
        assert_eq!(
            s.update.sql().as_str(),
            format!(
                "UPDATE oauth_tokens SET {}, version = version + 1 WHERE id = ?",
                set.join(", ")
            )
        );
        for never in ["id", "created_at", "version"] {
            assert!(!written::<TokenRow>(UPDATE).contains(&never), "{never}");
        }
        assert_eq!(
            written::<TokenRow>(INSERT).len(),
            TokenRow::COLUMNS.len(),
            "an insert writes every column of the row"
        );
        let pg = TokenSql::build(Backend::Postgres);
        assert!(pg.by_id[1]
            .as_str()
            .ends_with("FROM oauth_tokens WHERE id = $1 AND tenant = $2"));
        let my = TokenSql::build(Backend::MySql);
        assert!(my.versions_by_ids.as_str().starts_with(
            "SELECT CAST(id AS CHAR) AS id, version FROM oauth_tokens WHERE id IN (?, ?"
        ));
    }
}
