//! Pending browser logins (`oauth_states`): written by authorize, taken exactly once by callback.

use super::columns::{select, table, Build, Statement, INSERT};
use super::sql::{PerBackend, Sql};
use super::{Backend, Store, StoreError};

table! {
    /// One pending login, as stored.
    #[derive(Clone)]
    pub struct StateRow in "oauth_states" {
        pub state_hash: String [INSERT],
        pub provider: String [INSERT],
        pub tenant: String [INSERT],
        pub caller: String [INSERT],
        pub user_name: Option<String> [INSERT],
        pub return_to: Option<String> [INSERT],
        pub redirect_uri: String [INSERT],
        pub code_verifier: Option<Vec<u8>> [INSERT],
        pub key_id: String [INSERT],
        pub created_at: i64 [INSERT],
        pub expires_at: i64 [INSERT],
    }
}

/// The statements of `oauth_states`, per backend.
struct StateSql {
    sweep: Sql,
    insert: Statement<StateRow>,
    read: Sql,
    delete: Sql,
}

static STATE_SQL: PerBackend<StateSql> = PerBackend::new(StateSql::build);

impl StateSql {
    fn build(b: Backend) -> Self {
        Self {
            sweep: Sql::new(b, "DELETE FROM oauth_states WHERE expires_at < ?"),
            insert: Build::new(b).text("INSERT").into_values(INSERT, 1).finish(),
            read: Sql::new(
                b,
                &format!("{} WHERE state_hash = ?", select::<StateRow>(b)),
            ),
            delete: Sql::new(b, "DELETE FROM oauth_states WHERE state_hash = ?"),
        }
    }
}

impl Store {
    /// Stores a pending login and sweeps expired ones.
    pub async fn insert_state(&self, row: StateRow, now: i64) -> Result<(), StoreError> {
        let sql = STATE_SQL.get(self.backend());
        self.execute(&sql.sweep, vec![now.into()]).await?;
        self.execute(sql.insert.sql(), sql.insert.args(row, []))
            .await
            .map(|_| ())
    }

    /// Takes a pending login: only the first taker of an unexpired state gets it.
    pub async fn take_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<StateRow>, StoreError> {
        let sql = STATE_SQL.get(self.backend());
        let row: Option<StateRow> = self
            .fetch_optional(&sql.read, vec![state_hash.into()])
            .await?;
        let Some(row) = row else { return Ok(None) };
        let taken = self.execute(&sql.delete, vec![state_hash.into()]).await?;
        Ok((taken == 1 && row.expires_at > now).then_some(row))
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::tests::{check, check_select, placeholders, BACKENDS};
    use super::super::columns::Table;
    use super::*;

    #[test]
    fn statements_name_every_column_once() {
        check_select::<StateRow>();
        for b in BACKENDS {
            let s = StateSql::build(b);
            check(b, &s.insert, 0);
            assert_eq!(
                placeholders(b, s.insert.sql().as_str()),
                StateRow::COLUMNS.len()
            );
            for sql in [&s.sweep, &s.read, &s.delete] {
                assert_eq!(placeholders(b, sql.as_str()), 1, "{}", sql.as_str());
            }
        }
    }
}
