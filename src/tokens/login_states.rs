//! Pending browser logins (`oauth_states`): what authorize leaves for the callback, stored under
//! an HMAC of the single-use state (never the state itself) with the PKCE verifier encrypted
//! like every other secret. Taken exactly once.

use super::{tenancy, TokenService};
use crate::domain::{ProviderKey, Secret, TenantName, UserName};
use crate::error::{Error, Result};
use crate::store::StateRow;

/// The `caller` column holds at most this many characters of the starting caller's `sub`.
const CALLER_MAX_CHARS: usize = 255;

/// A login started by authorize and not finished yet.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub provider: ProviderKey,
    /// The tenant the connected token lands in: the starting caller's own.
    pub tenant: Option<TenantName>,
    /// The `sub` of the caller who started it (for the audit trail).
    pub caller: String,
    pub user_name: Option<UserName>,
    pub return_to: Option<String>,
    pub redirect_uri: String,
    pub code_verifier: Option<Secret>,
}

impl TokenService {
    /// Stores `login` under `state` until `expires_at`, sweeping expired logins.
    pub async fn save_login(
        &self,
        state: &Secret,
        login: &PendingLogin,
        expires_at: i64,
    ) -> Result<()> {
        let now = self.now_ms();
        let state_hash = self.keys.lookup_hash(state);
        let row = StateRow {
            code_verifier: login
                .code_verifier
                .as_ref()
                .map(|v| self.keys.encrypt(&state_hash, "code_verifier", v)),
            state_hash,
            provider: login.provider.to_string(),
            tenant: tenancy::to_column(login.tenant.as_ref()).to_owned(),
            caller: login.caller.chars().take(CALLER_MAX_CHARS).collect(),
            user_name: login.user_name.as_ref().map(|u| u.as_str().to_owned()),
            return_to: login.return_to.clone(),
            redirect_uri: login.redirect_uri.clone(),
            key_id: self.keys.active_key_id().to_owned(),
            created_at: now,
            expires_at,
        };
        Ok(self.store.insert_state(row, now).await?)
    }

    /// Takes the login `state` stands for: only the first taker of an unexpired state gets it.
    pub async fn take_login(&self, state: &Secret) -> Result<Option<PendingLogin>> {
        let state_hash = self.keys.lookup_hash(state);
        let Some(row) = self.store.take_state(&state_hash, self.now_ms()).await? else {
            return Ok(None);
        };
        let corrupt =
            |what: &str| Error::Internal(anyhow::anyhow!("stored login has a bad {what}"));
        let code_verifier = row
            .code_verifier
            .as_ref()
            .map(|blob| {
                self.keys
                    .decrypt(&row.key_id, &row.state_hash, "code_verifier", blob)
            })
            .transpose()?;
        Ok(Some(PendingLogin {
            provider: ProviderKey::parse(row.provider).map_err(|_| corrupt("provider"))?,
            tenant: tenancy::from_column(&row.tenant, "login")?,
            caller: row.caller,
            user_name: row
                .user_name
                .map(UserName::parse)
                .transpose()
                .map_err(|_| corrupt("user name"))?,
            return_to: row.return_to,
            redirect_uri: row.redirect_uri,
            code_verifier,
        }))
    }
}
