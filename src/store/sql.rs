//! The few primitives every query goes through: statements in their backend's placeholder style
//! (rewritten once, when built), the per-backend cache that holds them, argument binding and
//! execution on whichever pool the store holds.

use std::sync::OnceLock;

use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::FromRow;

use super::{with_pool, Backend, Store, StoreError};

/// A value bound to a `?` placeholder.
pub enum Arg {
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Int(Option<i64>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}
impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Self {
        Self::Bytes(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

/// Rewrites `?` placeholders to `$1, $2, …` for PostgreSQL. Our SQL never has `?` in literals.
fn dialect(backend: Backend, sql: &str) -> String {
    if backend != Backend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A statement in its backend's placeholder style. Only built through [`Sql::new`], which
/// rewrites the placeholders, so a query can't reach PostgreSQL with `?` in it.
#[derive(Debug)]
pub(crate) struct Sql(Box<str>);

impl Sql {
    /// `sql` written with `?` placeholders, for `backend`.
    pub fn new(backend: Backend, sql: &str) -> Self {
        Self(dialect(backend, sql).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One value per backend, built on first use by `build` and kept for the life of the process:
/// the statements of an entity, so none is formatted or rewritten per call.
pub(crate) struct PerBackend<T> {
    build: fn(Backend) -> T,
    built: [OnceLock<T>; 3],
}

impl<T> PerBackend<T> {
    pub const fn new(build: fn(Backend) -> T) -> Self {
        Self {
            build,
            built: [OnceLock::new(), OnceLock::new(), OnceLock::new()],
        }
    }

    pub fn get(&self, backend: Backend) -> &T {
        let slot = match backend {
            Backend::Sqlite => 0,
            Backend::Postgres => 1,
            Backend::MySql => 2,
        };
        self.built[slot].get_or_init(|| (self.build)(backend))
    }
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

/// A row type that decodes from every backend's rows.
pub trait AnyRow:
    for<'r> FromRow<'r, SqliteRow>
    + for<'r> FromRow<'r, PgRow>
    + for<'r> FromRow<'r, MySqlRow>
    + Send
    + Unpin
{
}
impl<T> AnyRow for T where
    T: for<'r> FromRow<'r, SqliteRow>
        + for<'r> FromRow<'r, PgRow>
        + for<'r> FromRow<'r, MySqlRow>
        + Send
        + Unpin
{
}

impl Store {
    /// Runs a statement; returns the number of rows it changed.
    pub(crate) async fn execute(&self, sql: &Sql, args: Vec<Arg>) -> Result<u64, StoreError> {
        let sql = sql.as_str();
        if let Some(writer) = &self.sqlite_writer {
            let done = bind_all!(sqlx::query(sql), args).execute(writer).await?;
            return Ok(done.rows_affected());
        }
        let affected = with_pool!(self, p => bind_all!(sqlx::query(sql), args)
            .execute(p)
            .await?
            .rows_affected());
        Ok(affected)
    }

    pub(crate) async fn fetch_optional<T: AnyRow>(
        &self,
        sql: &Sql,
        args: Vec<Arg>,
    ) -> Result<Option<T>, StoreError> {
        let sql = sql.as_str();
        Ok(
            with_pool!(self, p => bind_all!(sqlx::query_as::<_, T>(sql), args)
            .fetch_optional(p)
            .await?),
        )
    }

    pub(crate) async fn fetch_all<T: AnyRow>(
        &self,
        sql: &Sql,
        args: Vec<Arg>,
    ) -> Result<Vec<T>, StoreError> {
        let sql = sql.as_str();
        Ok(
            with_pool!(self, p => bind_all!(sqlx::query_as::<_, T>(sql), args)
            .fetch_all(p)
            .await?),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_numbered_placeholders() {
        assert_eq!(
            Sql::new(Backend::Postgres, "a = ? AND b = ?").as_str(),
            "a = $1 AND b = $2"
        );
        assert_eq!(Sql::new(Backend::MySql, "a = ?").as_str(), "a = ?");
        assert_eq!(Sql::new(Backend::Sqlite, "a = ?").as_str(), "a = ?");
    }
}
