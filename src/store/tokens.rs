//! The `oauth_tokens` table: rows as stored (ciphertexts and lookup hashes, never plaintext).

use super::sql::AnyRow;
use super::{Arg, Backend, Store, StoreError};

/// One row of `oauth_tokens`, exactly as stored.
#[derive(Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    /// '' when the token belongs to no tenant.
    pub tenant: String,
    pub provider: String,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
    pub refresh_token_hash: Option<String>,
    pub access_token: Option<Vec<u8>>,
    pub access_token_hash: Option<String>,
    pub grant_token: Option<Vec<u8>>,
    pub grant_token_hash: Option<String>,
    pub expiry_time: Option<i64>,
    pub granted_lifetime_ms: Option<i64>,
    pub redirect_url: Option<String>,
    pub api_domain: Option<String>,
    pub status: String,
    pub key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Changes with every write of the row (set by the database; ignored when writing).
    pub version: i64,
}

/// A token's id and version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenVersion {
    pub id: String,
    pub version: i64,
}

/// The columns a write sets (`version` is the database's), as a literal for `concat!`.
macro_rules! written_columns {
    () => {
        "id, tenant, provider, user_name, client_id, client_secret, \
        refresh_token, refresh_token_hash, access_token, access_token_hash, grant_token, \
        grant_token_hash, expiry_time, granted_lifetime_ms, redirect_url, api_domain, status, \
        key_id, created_at, updated_at"
    };
}

/// The columns a write sets.
const COLUMNS: &str = written_columns!();

/// The columns of a SELECT of whole rows: those written, and the version.
const SELECT_COLUMNS: &str = concat!(written_columns!(), ", version");

/// The same columns for SELECT on MySQL: its binary (case-sensitive) collations mark text
/// columns BINARY, which sqlx will not decode as `String`; a CAST gives them a text collation.
const MYSQL_COLUMNS: &str = "CAST(id AS CHAR) AS id, CAST(tenant AS CHAR) AS tenant, \
    CAST(provider AS CHAR) AS provider, CAST(user_name AS CHAR) AS user_name, \
    CAST(client_id AS CHAR) AS client_id, client_secret, refresh_token, \
    CAST(refresh_token_hash AS CHAR) AS refresh_token_hash, access_token, \
    CAST(access_token_hash AS CHAR) AS access_token_hash, grant_token, \
    CAST(grant_token_hash AS CHAR) AS grant_token_hash, expiry_time, granted_lifetime_ms, \
    CAST(redirect_url AS CHAR) AS redirect_url, CAST(api_domain AS CHAR) AS api_domain, \
    CAST(status AS CHAR) AS status, CAST(key_id AS CHAR) AS key_id, created_at, updated_at, \
    version";

/// Which tenants an operation may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantFilter {
    /// Every tenant (callers whose JWT names no tenant).
    Any,
    /// Only this tenant ('' is "no tenant").
    Only(String),
}

impl TenantFilter {
    fn push(&self, sql: &mut String, args: &mut Vec<Arg>) {
        if let Self::Only(t) = self {
            sql.push_str(" AND tenant = ?");
            args.push(Arg::from(t.as_str()));
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
    /// The column list of a SELECT of whole rows, for this backend.
    fn columns(&self) -> &'static str {
        match self.backend() {
            Backend::MySql => MYSQL_COLUMNS,
            _ => SELECT_COLUMNS,
        }
    }

    pub async fn token_by_id(
        &self,
        id: &str,
        tenants: &TenantFilter,
    ) -> Result<Option<TokenRow>, StoreError> {
        let mut sql = format!("SELECT {} FROM oauth_tokens WHERE id = ?", self.columns());
        let mut args = vec![Arg::from(id)];
        tenants.push(&mut sql, &mut args);
        self.fetch_optional(&sql, args).await
    }

    /// The tokens of `ids` that exist, in any tenant.
    pub async fn tokens_by_ids(&self, ids: &[String]) -> Result<Vec<TokenRow>, StoreError> {
        self.rows_by_ids(self.columns(), ids).await
    }

    /// The `version` of each token of `ids` that exists, in any tenant: what a cached copy is
    /// checked against.
    pub async fn token_versions(&self, ids: &[String]) -> Result<Vec<TokenVersion>, StoreError> {
        let columns = match self.backend() {
            Backend::MySql => "CAST(id AS CHAR) AS id, version",
            _ => "id, version",
        };
        self.rows_by_ids(columns, ids).await
    }

    /// `columns` of the rows of `ids`. Queries take a fixed number of ids (the last one
    /// repeated), so the database sees one statement however many are asked for.
    async fn rows_by_ids<T: AnyRow>(
        &self,
        columns: &str,
        ids: &[String],
    ) -> Result<Vec<T>, StoreError> {
        const IDS_PER_QUERY: usize = 50;
        let placeholders = vec!["?"; IDS_PER_QUERY].join(", ");
        let sql = format!("SELECT {columns} FROM oauth_tokens WHERE id IN ({placeholders})");
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let last = chunk.last().expect("chunks are never empty");
            let args = chunk
                .iter()
                .chain(std::iter::repeat(last))
                .take(IDS_PER_QUERY)
                .map(|id| Arg::from(id.as_str()))
                .collect();
            rows.extend(self.fetch_all::<T>(&sql, args).await?);
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
        let mut sql = format!(
            "SELECT {} FROM oauth_tokens WHERE tenant = ? AND user_name = ?",
            self.columns()
        );
        let mut args = vec![Arg::from(tenant), Arg::from(user_name)];
        if let Some(p) = provider {
            sql.push_str(" AND provider = ?");
            args.push(Arg::from(p));
        }
        sql.push_str(" ORDER BY created_at, id LIMIT 1");
        self.fetch_optional(&sql, args).await
    }

    /// The oldest token in `tenant` whose `column` hash is `hash` (and client_id, when given).
    pub async fn token_by_hash(
        &self,
        tenant: &str,
        column: HashColumn,
        hash: &str,
        client_id: Option<&str>,
    ) -> Result<Option<TokenRow>, StoreError> {
        let mut sql = format!(
            "SELECT {} FROM oauth_tokens WHERE tenant = ? AND {} = ?",
            self.columns(),
            column.column()
        );
        let mut args = vec![Arg::from(tenant), Arg::from(hash)];
        if let Some(c) = client_id {
            sql.push_str(" AND client_id = ?");
            args.push(Arg::from(c));
        }
        sql.push_str(" ORDER BY created_at, id LIMIT 1");
        self.fetch_optional(&sql, args).await
    }

    /// Inserts a new row; [`StoreError::Conflict`] if its id or (tenant, provider, user) is taken.
    pub async fn insert_token(&self, row: TokenRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO oauth_tokens ({COLUMNS}, version) VALUES \
             (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let mut args = row_args(row, true);
        // Random, far from overflowing: a re-created token does not repeat its old numbers.
        args.push(Arg::from(rand::random::<i64>() >> 2));
        self.execute(&sql, args).await.map(|_| ())
    }

    /// Overwrites every stored field of the row with this id. Returns false if it is gone.
    pub async fn update_token(&self, row: TokenRow) -> Result<bool, StoreError> {
        let sql = "UPDATE oauth_tokens SET tenant = ?, provider = ?, user_name = ?, \
             client_id = ?, client_secret = ?, refresh_token = ?, refresh_token_hash = ?, \
             access_token = ?, access_token_hash = ?, grant_token = ?, grant_token_hash = ?, \
             expiry_time = ?, granted_lifetime_ms = ?, redirect_url = ?, api_domain = ?, \
             status = ?, key_id = ?, updated_at = ?, version = version + 1 WHERE id = ?";
        Ok(self.execute(sql, row_args(row, false)).await? > 0)
    }

    /// Replaces a row's ciphertexts and key id, unless the row changed since it was read
    /// (`key_id` and `updated_at` as read). True when written.
    pub async fn reencrypt_token(
        &self,
        row: TokenRow,
        read_key_id: &str,
        read_updated_at: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE oauth_tokens SET client_secret = ?, refresh_token = ?, \
             access_token = ?, grant_token = ?, key_id = ?, version = version + 1 \
             WHERE id = ? AND key_id = ? AND updated_at = ?";
        let args = vec![
            Arg::from(row.client_secret),
            Arg::from(row.refresh_token),
            Arg::from(row.access_token),
            Arg::from(row.grant_token),
            Arg::from(row.key_id),
            Arg::from(row.id),
            Arg::from(read_key_id),
            Arg::from(read_updated_at),
        ];
        Ok(self.execute(sql, args).await? == 1)
    }

    pub async fn delete_token(&self, id: &str, tenants: &TenantFilter) -> Result<bool, StoreError> {
        let mut sql = "DELETE FROM oauth_tokens WHERE id = ?".to_owned();
        let mut args = vec![Arg::from(id)];
        tenants.push(&mut sql, &mut args);
        Ok(self.execute(&sql, args).await? > 0)
    }

    pub async fn delete_all_tokens(&self, tenants: &TenantFilter) -> Result<u64, StoreError> {
        let mut sql = "DELETE FROM oauth_tokens WHERE 1 = 1".to_owned();
        let mut args = Vec::new();
        tenants.push(&mut sql, &mut args);
        self.execute(&sql, args).await
    }

    /// A page of tokens in id order.
    pub async fn list_tokens(
        &self,
        tenants: &TenantFilter,
        filter: &ListFilter,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let mut sql = format!("SELECT {} FROM oauth_tokens WHERE 1 = 1", self.columns());
        let mut args = Vec::new();
        tenants.push(&mut sql, &mut args);
        for (column, value) in [
            ("tenant", &filter.tenant),
            ("user_name", &filter.user_name),
            ("provider", &filter.provider),
            ("status", &filter.status),
        ] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(Arg::from(v.as_str()));
            }
        }
        if let Some(after) = &filter.after {
            sql.push_str(" AND id > ?");
            args.push(Arg::from(after.as_str()));
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        args.push(Arg::from(i64::from(filter.limit)));
        self.fetch_all(&sql, args).await
    }
}

/// Arguments in `COLUMNS` order (insert) or in the UPDATE's SET order with the id last.
fn row_args(row: TokenRow, insert: bool) -> Vec<Arg> {
    let mut args = Vec::with_capacity(19);
    if insert {
        args.push(Arg::from(row.id.clone()));
    }
    args.extend([
        Arg::from(row.tenant),
        Arg::from(row.provider),
        Arg::from(row.user_name),
        Arg::from(row.client_id),
        Arg::from(row.client_secret),
        Arg::from(row.refresh_token),
        Arg::from(row.refresh_token_hash),
        Arg::from(row.access_token),
        Arg::from(row.access_token_hash),
        Arg::from(row.grant_token),
        Arg::from(row.grant_token_hash),
        Arg::from(row.expiry_time),
        Arg::from(row.granted_lifetime_ms),
        Arg::from(row.redirect_url),
        Arg::from(row.api_domain),
        Arg::from(row.status),
        Arg::from(row.key_id),
    ]);
    if insert {
        args.push(Arg::from(row.created_at));
    }
    args.push(Arg::from(row.updated_at));
    if !insert {
        args.push(Arg::from(row.id));
    }
    args
}
