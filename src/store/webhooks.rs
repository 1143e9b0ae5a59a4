//! The `webhook_events` table: the outbox of webhook events (see `webhooks/`). An event is
//! written in the same transaction as the change it reports ([`Store::write_with_events`]),
//! then claimed, delivered and finished by whichever broker gets to it first.

use super::changes::Changed;
use super::sql::{bind_all, Arg, PerBackend, Sql};
use super::{with_writer, Backend, Store, StoreError};

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookRow {
    /// Given by the database on insert.
    pub seq: i64,
    pub event_id: String,
    pub endpoint: String,
    pub event_type: String,
    /// The token the event is about (`*` for one about many tokens): events of one token go to
    /// an endpoint in order.
    pub token_id: String,
    /// The token's tenant ('' for none).
    pub tenant: String,
    /// The JSON body sent.
    pub payload: String,
    pub created_at: i64,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
}

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// Which events `GET /v1/webhooks/events` lists, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this tenant's ('' for tokens of no tenant); `None`: every tenant.
    pub tenant: Option<String>,
    pub endpoint: Option<String>,
    pub state: Option<String>,
    pub token_id: Option<String>,
    /// Events before this seq (the cursor).
    pub before: Option<i64>,
    pub limit: u32,
}

struct WebhookSql {
    insert: Sql,
    due: Sql,
    claim: Sql,
    finish: Sql,
    retry: Sql,
    purge: Sql,
    pending: Sql,
    columns: String,
}

static WEBHOOK_SQL: PerBackend<WebhookSql> = PerBackend::new(WebhookSql::build);

impl WebhookSql {
    fn build(b: Backend) -> Self {
        // MySQL marks binary-collated text BINARY, which sqlx will not decode as a String.
        let text = |c: &str| match b {
            Backend::MySql => format!("CAST({c} AS CHAR) AS {c}"),
            _ => c.to_owned(),
        };
        let columns = format!(
            "seq, event_id, endpoint, event_type, {}, {}, payload, created_at, state, attempts, \
             next_attempt_at, last_status, last_error, finished_at",
            text("token_id"),
            text("tenant")
        );
        let sql = |s: &str| Sql::new(b, s);
        Self {
            insert: sql(
                "INSERT INTO webhook_events (event_id, endpoint, event_type, token_id, tenant, \
                 payload, created_at, state, attempts, next_attempt_at, lease_until) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0)",
            ),
            // Due, not leased, and no earlier event of the same token for the same endpoint
            // still pending: each endpoint gets a token's events in order.
            due: sql(&format!(
                "SELECT {columns} FROM webhook_events e WHERE e.state = 'pending' \
                 AND e.next_attempt_at <= ? AND e.lease_until <= ? AND NOT EXISTS (\
                 SELECT 1 FROM webhook_events p WHERE p.endpoint = e.endpoint \
                 AND p.token_id = e.token_id AND p.state = 'pending' AND p.seq < e.seq) \
                 ORDER BY e.seq LIMIT ?"
            )),
            claim: sql(
                "UPDATE webhook_events SET lease_until = ?, lease_owner = ? \
                 WHERE seq = ? AND state = 'pending' AND lease_until <= ?",
            ),
            finish: sql(
                "UPDATE webhook_events SET state = ?, attempts = attempts + 1, last_status = ?, \
                 last_error = ?, next_attempt_at = ?, finished_at = ?, lease_until = 0 \
                 WHERE seq = ? AND lease_owner = ?",
            ),
            retry: sql(
                "UPDATE webhook_events SET state = 'pending', attempts = 0, next_attempt_at = ?, \
                 finished_at = NULL, lease_until = 0 WHERE seq = ?",
            ),
            purge: sql("DELETE FROM webhook_events WHERE state <> 'pending' AND finished_at < ?"),
            pending: sql(
                "SELECT endpoint, COUNT(*) FROM webhook_events WHERE state = 'pending' \
                 GROUP BY endpoint",
            ),
            columns,
        }
    }
}

fn insert_args(e: WebhookRow) -> Vec<Arg> {
    vec![
        e.event_id.into(),
        e.endpoint.into(),
        e.event_type.into(),
        e.token_id.into(),
        e.tenant.into(),
        e.payload.into(),
        e.created_at.into(),
        e.next_attempt_at.into(),
    ]
}

impl Store {
    fn webhook_sql(&self) -> &'static WebhookSql {
        WEBHOOK_SQL.get(self.backend())
    }

    /// Runs a write of cached tokens and, when it changed a row, appends it to the change feed
    /// (`changed`) and the events `events(rows changed)` makes to the outbox, in the same
    /// transaction: the write, its feed entry and its events are committed together or not at all.
    pub(crate) async fn write_changing(
        &self,
        sql: &Sql,
        args: Vec<Arg>,
        changed: Changed<'_>,
        events: impl FnOnce(u64) -> Vec<WebhookRow>,
    ) -> Result<u64, StoreError> {
        self.in_transaction(Some((sql, args)), Some(changed), events)
            .await
    }

    /// A write no other replica has cached (a new token), with its events in the same
    /// transaction; without any, a plain statement.
    pub(crate) async fn write(
        &self,
        sql: &Sql,
        args: Vec<Arg>,
        events: Vec<WebhookRow>,
    ) -> Result<u64, StoreError> {
        if events.is_empty() {
            return self.execute(sql, args).await;
        }
        self.in_transaction(Some((sql, args)), None, move |_| events)
            .await
    }

    /// Appends events that report no write of their own (a refresh that keeps failing).
    pub async fn insert_events(&self, events: Vec<WebhookRow>) -> Result<(), StoreError> {
        self.in_transaction(None, None, move |_| events).await?;
        Ok(())
    }

    /// One transaction: the `write` (when there is one), then — when it changed rows, or there
    /// is no write — the feed entry of `changed` and the outbox rows of `events(rows changed)`.
    async fn in_transaction(
        &self,
        write: Option<(&Sql, Vec<Arg>)>,
        changed: Option<Changed<'_>>,
        events: impl FnOnce(u64) -> Vec<WebhookRow>,
    ) -> Result<u64, StoreError> {
        let insert = self.webhook_sql().insert.as_str();
        let feed = changed.map(|c| self.change_row(c));
        let written = with_writer!(self, p => {
            let mut tx = p.begin().await?;
            let written = match write {
                Some((sql, args)) => bind_all!(sqlx::query(sql.as_str()), args)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                None => 1,
            };
            if written > 0 {
                if let Some((feed, feed_args)) = feed {
                    bind_all!(sqlx::query(feed.as_str()), feed_args)
                        .execute(&mut *tx)
                        .await?;
                }
                for event in events(written) {
                    bind_all!(sqlx::query(insert), insert_args(event))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            written
        });
        Ok(written)
    }

    /// Pending events due by `now` that no broker holds, oldest first.
    pub async fn due_events(&self, now: i64, limit: u32) -> Result<Vec<WebhookRow>, StoreError> {
        let args = vec![now.into(), now.into(), i64::from(limit).into()];
        self.fetch_all(&self.webhook_sql().due, args).await
    }

    /// Takes event `seq` for `owner` until `until`, unless another broker holds it or it is
    /// finished. True when taken.
    pub async fn claim_event(
        &self,
        seq: i64,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let args = vec![until.into(), owner.into(), seq.into(), now.into()];
        Ok(self.execute(&self.webhook_sql().claim, args).await? == 1)
    }

    /// Records an attempt of a claimed event: its new `state` (pending again at `next_attempt_at`,
    /// delivered, or failed for good), the endpoint's status and the error, if any.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_attempt(
        &self,
        seq: i64,
        owner: &str,
        state: &str,
        status: Option<i64>,
        error: Option<String>,
        next_attempt_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let finished = (state != PENDING).then_some(now);
        let args = vec![
            state.into(),
            status.into(),
            error.into(),
            next_attempt_at.into(),
            finished.into(),
            seq.into(),
            owner.into(),
        ];
        self.execute(&self.webhook_sql().finish, args).await?;
        Ok(())
    }

    /// Events for the API, newest first.
    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<WebhookRow>, StoreError> {
        let mut text = format!(
            "SELECT {} FROM webhook_events WHERE 1 = 1",
            self.webhook_sql().columns
        );
        let mut args: Vec<Arg> = Vec::new();
        for (column, value) in [
            ("tenant", &f.tenant),
            ("endpoint", &f.endpoint),
            ("state", &f.state),
            ("token_id", &f.token_id),
        ] {
            if let Some(v) = value {
                text.push_str(&format!(" AND {column} = ?"));
                args.push(v.clone().into());
            }
        }
        if let Some(before) = f.before {
            text.push_str(" AND seq < ?");
            args.push(before.into());
        }
        text.push_str(" ORDER BY seq DESC LIMIT ?");
        args.push(i64::from(f.limit).into());
        self.fetch_all(&Sql::new(self.backend(), &text), args).await
    }

    /// Event `seq`, if it exists.
    pub async fn event(&self, seq: i64) -> Result<Option<WebhookRow>, StoreError> {
        let text = format!(
            "SELECT {} FROM webhook_events WHERE seq = ?",
            self.webhook_sql().columns
        );
        self.fetch_optional(&Sql::new(self.backend(), &text), vec![seq.into()])
            .await
    }

    /// Sends event `seq` again from now, with a fresh count of attempts.
    pub async fn retry_event(&self, seq: i64, now: i64) -> Result<bool, StoreError> {
        let args = vec![now.into(), seq.into()];
        Ok(self.execute(&self.webhook_sql().retry, args).await? == 1)
    }

    /// Deletes delivered and failed events finished before `before`.
    pub async fn purge_events(&self, before: i64) -> Result<u64, StoreError> {
        self.execute(&self.webhook_sql().purge, vec![before.into()])
            .await
    }

    /// Pending events per endpoint.
    pub async fn pending_events(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.fetch_all(&self.webhook_sql().pending, vec![]).await
    }
}
