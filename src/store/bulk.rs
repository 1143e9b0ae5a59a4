//! Statements over many token rows at once, for imports and key rotation: multi-row INSERTs in
//! one transaction, "which of these values are stored already?", and a page of re-encryptions
//! in one transaction.

use super::sql::bind_all;
use super::tokens::INSERT_BATCH_SIZES;
use super::{with_pool, with_writer, Arg, Backend, Store, StoreError, TokenRow};

/// Values asked about per query.
const VALUES_PER_QUERY: usize = 500;

/// A column an import asks "is this value stored already?" about (`existing_values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyColumn {
    Id,
    UserName,
    RefreshHash,
    AccessHash,
    GrantHash,
}

impl KeyColumn {
    fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::UserName => "user_name",
            Self::RefreshHash => "refresh_token_hash",
            Self::AccessHash => "access_token_hash",
            Self::GrantHash => "grant_token_hash",
        }
    }
}

impl Store {
    /// Inserts new rows with multi-row INSERTs, in one transaction: all or none.
    /// [`StoreError::Conflict`] if any id or (tenant, provider, user) is taken.
    pub async fn insert_tokens(&self, rows: Vec<TokenRow>) -> Result<(), StoreError> {
        let statements = &self.token_sql().inserts;
        let mut rows: Vec<TokenRow> = rows
            .into_iter()
            .map(|mut row| {
                row.version = rand::random::<i64>() >> 2;
                row
            })
            .collect();
        with_writer!(self, p => {
            let mut tx = p.begin().await?;
            while !rows.is_empty() {
                let (statement, size) = statements
                    .iter()
                    .zip(INSERT_BATCH_SIZES)
                    .find(|&(_, n)| rows.len() >= n)
                    .expect("1 always fits");
                let chunk: Vec<TokenRow> = rows.drain(..size).collect();
                let args = statement.args_rows(chunk.into_iter());
                bind_all!(sqlx::query(statement.sql().as_str()), args)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Which of `values` are stored in `column`, among the tokens of `tenant` (all tenants when
    /// `None`).
    pub async fn existing_values(
        &self,
        column: KeyColumn,
        tenant: Option<&str>,
        values: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let name = column.name();
        let selected = match self.backend() {
            // Binary-collated text comes back BINARY on MySQL, which sqlx will not decode as text.
            Backend::MySql => {
                format!("SELECT CAST({name} AS CHAR) FROM oauth_tokens WHERE {name} IN (")
            }
            _ => format!("SELECT {name} FROM oauth_tokens WHERE {name} IN ("),
        };
        let mut found = std::collections::HashSet::new();
        for chunk in values.chunks(VALUES_PER_QUERY) {
            let rows: Vec<(String,)> = with_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new(selected.as_str());
                let mut list = q.separated(", ");
                for v in chunk {
                    list.push_bind(v.as_str());
                }
                q.push(")");
                if let Some(t) = tenant {
                    q.push(" AND tenant = ").push_bind(t);
                }
                q.build_query_as::<(String,)>().fetch_all(p).await?
            });
            found.extend(rows.into_iter().map(|(v,)| v));
        }
        Ok(found)
    }

    /// [`reencrypt_token`](Store::reencrypt_token) for a page of rows, in one transaction (one
    /// commit instead of one per row). Per row: whether it was written.
    pub async fn reencrypt_tokens(
        &self,
        rows: Vec<(TokenRow, String, i64)>,
    ) -> Result<Vec<bool>, StoreError> {
        let reencrypt = &self.token_sql().reencrypt;
        let mut written = Vec::with_capacity(rows.len());
        with_writer!(self, p => {
            let mut tx = p.begin().await?;
            for (row, read_key_id, read_updated_at) in rows {
                let args = reencrypt.args(row, [read_key_id.into(), read_updated_at.into()]);
                let done = bind_all!(sqlx::query(reencrypt.sql().as_str()), args)
                    .execute(&mut *tx)
                    .await?;
                written.push(done.rows_affected() == 1);
            }
            tx.commit().await?;
        });
        Ok(written)
    }
}
