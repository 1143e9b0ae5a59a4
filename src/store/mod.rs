//! Storage: one `Store` over SQLite, PostgreSQL or MySQL/MariaDB, chosen by the database URL.
//!
//! Each entity's row type is declared with its column table (`columns::table!`); the SELECT
//! lists, INSERTs, UPDATE SET lists and their bind order are generated from that table, once per
//! backend with the placeholders already in the backend's style (`sql::PerBackend`). Values are
//! bound through [`Arg`], so every query body is shared and only the pool differs per backend;
//! the queries whose shape depends on the request's filters go through `sqlx::QueryBuilder`.

mod audit;
mod bulk;
mod changes;
mod columns;
mod refresh;
mod sessions;
mod sql;
mod tokens;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use audit::{AuditFilter, AuditRow};
pub use bulk::KeyColumn;
pub use changes::{ChangeRow, CHANGES_PER_POLL};
pub use refresh::{BudgetRefusal, DueToken};
pub use sessions::{SessionRow, SESSION_AFTERLIFE_MS};
pub use sql::Arg;
pub use tokens::{HashColumn, ListFilter, TenantFilter, TokenRow, TokenVersion};
pub use webhooks::{EventFilter, WebhookRow, DELIVERED, FAILED, PENDING};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// The backend a database URL names.
    ///
    /// ```
    /// use token_broker::store::Backend;
    /// assert_eq!(Backend::from_url("sqlite://token-broker.db"), Some(Backend::Sqlite));
    /// assert_eq!(Backend::from_url("mariadb://root@127.0.0.1/test"), Some(Backend::MySql));
    /// assert_eq!(Backend::from_url("oracle://db"), None);
    /// ```
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Self::MySql)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused the write (a concurrent insert won, or the id is taken).
    #[error("a row with the same unique key already exists")]
    Conflict,
    /// The database could not be reached or answered in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            _ => Self::Other(e),
        }
    }
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to whichever concrete pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
            $crate::store::Pool::MySql($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Like [`with_pool!`] for a write: on SQLite `$pool` is the single writer connection.
macro_rules! with_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match (&$store.pool, &$store.sqlite_writer) {
            (_, Some($pool)) => $body,
            ($crate::store::Pool::Sqlite($pool), None) => $body,
            ($crate::store::Pool::Postgres($pool), _) => $body,
            ($crate::store::Pool::MySql($pool), _) => $body,
        }
    };
}
pub(crate) use with_writer;

/// The database handle shared by the whole service (cheap to clone).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    backend: Backend,
    /// SQLite takes one writer at a time; writers that find it busy sleep and poll, which makes
    /// write latency spiky under load. Every write goes through this one connection instead, in
    /// the pool's first-come order.
    sqlite_writer: Option<SqlitePool>,
}

/// How to open the pool.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Store {
    /// Opens a pool for `url` without touching the schema. Connections are made lazily, so a
    /// database that is down at start makes `/readyz` fail rather than the process.
    pub fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let backend = Backend::from_url(url).ok_or_else(|| {
            StoreError::Other(sqlx::Error::Configuration(
                "unsupported database URL scheme".into(),
            ))
        })?;
        let mut sqlite_writer = None;
        let pool = match backend {
            Backend::Sqlite => {
                let opts = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // The usual pairing with WAL: a crash of the process loses nothing; only a
                    // power cut can lose the last commits, and never corrupts the file.
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = |max_connections| {
                    SqlitePoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(options.acquire_timeout)
                        // A local file cannot drop the connection: skip the ping per acquire.
                        .test_before_acquire(false)
                        .connect_lazy_with(opts.clone())
                };
                sqlite_writer = Some(pool(1));
                Pool::Sqlite(pool(options.max_connections))
            }
            Backend::Postgres => {
                let opts = PgConnectOptions::from_str(url)?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(options.max_connections)
                        .acquire_timeout(options.acquire_timeout)
                        .connect_lazy_with(opts),
                )
            }
            Backend::MySql => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let opts = MySqlConnectOptions::from_str(&url)?;
                Pool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(options.max_connections)
                        .acquire_timeout(options.acquire_timeout)
                        .connect_lazy_with(opts),
                )
            }
        };
        Ok(Self {
            pool,
            backend,
            sqlite_writer,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations of this backend (`migrations/<backend>`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await,
            Pool::MySql(p) => sqlx::migrate!("migrations/mysql").run(p).await,
        };
        result.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
            other => StoreError::Other(sqlx::Error::Migrate(Box::new(other))),
        })
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))
            .map_err(StoreError::from)
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.sqlite_writer {
            writer.close().await;
        }
        with_pool!(self, p => p.close().await)
    }
}
