//! Pending browser logins (`oauth_states`): written by authorize, taken exactly once by callback.

use super::{Backend, Store, StoreError};

/// One pending login, as stored.
#[derive(Clone, sqlx::FromRow)]
pub struct StateRow {
    pub state_hash: String,
    pub provider: String,
    pub tenant: String,
    pub caller: String,
    pub user_name: Option<String>,
    pub return_to: Option<String>,
    pub redirect_uri: String,
    pub code_verifier: Option<Vec<u8>>,
    pub key_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// Stores a pending login and sweeps expired ones.
    pub async fn insert_state(&self, row: StateRow, now: i64) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM oauth_states WHERE expires_at < ?",
            vec![now.into()],
        )
        .await?;
        self.execute(
            "INSERT INTO oauth_states (state_hash, provider, tenant, caller, user_name, return_to, \
             redirect_uri, code_verifier, key_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                row.state_hash.into(),
                row.provider.into(),
                row.tenant.into(),
                row.caller.into(),
                row.user_name.into(),
                row.return_to.into(),
                row.redirect_uri.into(),
                row.code_verifier.into(),
                row.key_id.into(),
                row.created_at.into(),
                row.expires_at.into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Takes a pending login: only the first taker of an unexpired state gets it.
    pub async fn take_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<StateRow>, StoreError> {
        let columns = match self.backend() {
            Backend::MySql => {
                "CAST(state_hash AS CHAR) AS state_hash, CAST(provider AS CHAR) AS provider, \
                 CAST(tenant AS CHAR) AS tenant, CAST(caller AS CHAR) AS caller, \
                 CAST(user_name AS CHAR) AS user_name, CAST(return_to AS CHAR) AS return_to, \
                 CAST(redirect_uri AS CHAR) AS redirect_uri, code_verifier, \
                 CAST(key_id AS CHAR) AS key_id, created_at, expires_at"
            }
            _ => {
                "state_hash, provider, tenant, caller, user_name, return_to, redirect_uri, \
                 code_verifier, key_id, created_at, expires_at"
            }
        };
        let row: Option<StateRow> = self
            .fetch_optional(
                &format!("SELECT {columns} FROM oauth_states WHERE state_hash = ?"),
                vec![state_hash.into()],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let taken = self
            .execute(
                "DELETE FROM oauth_states WHERE state_hash = ?",
                vec![state_hash.into()],
            )
            .await?;
        Ok((taken == 1 && row.expires_at > now).then_some(row))
    }
}
