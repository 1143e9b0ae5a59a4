//! Connect sessions: a browser login from the service's request to its outcome. The link a person
//! opens carries a random secret; the OAuth state and the OpenID Connect nonce are derived from it
//! (keyed hashes, so the link cannot be rebuilt from them), and only lookup hashes of the three
//! and of the browser's cookie are stored. The PKCE verifier is encrypted like every secret.
//! A session is opened once (binding it to one browser), claimed once by the callback, and
//! finished as connected or failed; its row stays a day past its expiry to explain late visits.

use super::{tenancy, Tenancy, TokenService};
use crate::domain::{ProviderKey, Secret, TenantName, TokenId, UserName};
use crate::error::{Error, Result};
use crate::store::SessionRow;

/// The `caller` column holds at most this many characters of the starting caller's `sub`.
const CALLER_MAX_CHARS: usize = 255;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Created; its link was not opened yet.
    Pending,
    /// A browser opened the link and went to the provider.
    Opened,
    /// The provider sent the browser back; the code is being exchanged.
    Exchanging,
    /// The account is connected: `token_id` names the token.
    Connected,
    /// The login failed: `error` says why.
    Failed,
}

impl SessionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Opened => "opened",
            Self::Exchanging => "exchanging",
            Self::Connected => "connected",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "opened" => Self::Opened,
            "exchanging" => Self::Exchanging,
            "connected" => Self::Connected,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// What a service asks for when it creates a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub provider: ProviderKey,
    /// The tenant the connected token lands in: the creating caller's own.
    pub tenant: Option<TenantName>,
    /// The `sub` of the creating caller (for the audit trail).
    pub caller: String,
    pub user_name: Option<UserName>,
    pub return_to: Option<String>,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub expires_at: i64,
}

/// A connect session as stored (secrets only as hashes, the verifier decrypted when asked for).
#[derive(Debug, Clone)]
pub struct ConnectSession {
    pub id: String,
    pub provider: ProviderKey,
    pub tenant: Option<TenantName>,
    pub caller: String,
    pub user_name: Option<UserName>,
    pub return_to: Option<String>,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub status: SessionStatus,
    pub token_id: Option<TokenId>,
    pub error: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    code_verifier: Option<Vec<u8>>,
    key_id: String,
    browser_hash: Option<String>,
    nonce_hash: Option<String>,
}

/// The secrets of a session's authorize request, derived from its link.
pub struct LoginSecrets {
    pub state: Secret,
    pub nonce: Secret,
    pub code_verifier: Secret,
}

/// What opening a link found.
pub enum Opened {
    /// This browser now holds the session.
    Now(ConnectSession, LoginSecrets),
    /// No session has this link (or it was forgotten a day after it expired).
    Unknown,
    Expired(ConnectSession),
    /// Another visit opened it first.
    AlreadyUsed(ConnectSession),
}

impl TokenService {
    /// Forgets connect sessions a day past their expiry (also done on every new session; this is
    /// for a broker where logins stopped). Returns how many.
    pub async fn sweep_sessions(&self) -> Result<u64> {
        Ok(self.store.sweep_sessions(self.now_ms()).await?)
    }

    fn derived(&self, purpose: &str, link: &Secret) -> Secret {
        Secret::new(
            self.keys
                .lookup_hash(&Secret::new(format!("{purpose}:{}", link.expose()))),
        )
    }

    /// Stores a new session; returns it with the secret of its link.
    pub async fn create_session(
        &self,
        new: NewSession,
        code_verifier: &Secret,
    ) -> Result<(ConnectSession, Secret)> {
        let now = self.now_ms();
        let link = Secret::new(super::random_b64(32));
        let id = format!("cs_{}", uuid::Uuid::new_v4().simple());
        let row = SessionRow {
            link_hash: self.keys.lookup_hash(&link),
            state_hash: self.keys.lookup_hash(&self.derived("state", &link)),
            nonce_hash: Some(self.keys.lookup_hash(&self.derived("nonce", &link))),
            browser_hash: None,
            code_verifier: Some(self.keys.encrypt(&id, "code_verifier", code_verifier)),
            id,
            provider: new.provider.to_string(),
            tenant: tenancy::to_column(new.tenant.as_ref()).to_owned(),
            caller: new.caller.chars().take(CALLER_MAX_CHARS).collect(),
            user_name: new.user_name.as_ref().map(|u| u.as_str().to_owned()),
            return_to: new.return_to.clone(),
            redirect_uri: new.redirect_uri.clone(),
            scopes: Some(new.scopes.join(" ")),
            key_id: self.keys.active_key_id().to_owned(),
            status: SessionStatus::Pending.as_str().to_owned(),
            token_id: None,
            error: None,
            created_at: now,
            updated_at: now,
            expires_at: new.expires_at,
        };
        self.store.insert_session(row.clone(), now).await?;
        Ok((self.session_of(row)?, link))
    }

    /// Opens the session of `link` for the browser holding the cookie `browser`: only the
    /// first opener of a pending, unexpired session gets it.
    pub async fn open_session(&self, link: &Secret, browser: &Secret) -> Result<Opened> {
        let now = self.now_ms();
        let link_hash = self.keys.lookup_hash(link);
        let opened = self
            .store
            .open_session(&link_hash, &self.keys.lookup_hash(browser), now)
            .await?;
        let Some(row) = self.store.session_by_link(&link_hash).await? else {
            return Ok(Opened::Unknown);
        };
        let session = self.session_of(row)?;
        if !opened {
            return Ok(if session.status == SessionStatus::Pending {
                Opened::Expired(session)
            } else {
                Opened::AlreadyUsed(session)
            });
        }
        let secrets = LoginSecrets {
            state: self.derived("state", link),
            nonce: self.derived("nonce", link),
            code_verifier: self.code_verifier(&session)?,
        };
        Ok(Opened::Now(session, secrets))
    }

    /// The session a provider's `state` belongs to, whatever its status.
    pub async fn session_by_state(&self, state: &Secret) -> Result<Option<ConnectSession>> {
        let row = self
            .store
            .session_by_state(&self.keys.lookup_hash(state))
            .await?;
        row.map(|r| self.session_of(r)).transpose()
    }

    /// A caller's view of a session (another tenant's is answered as missing).
    pub async fn session(&self, tenancy: &Tenancy, id: &str) -> Result<ConnectSession> {
        let row = self
            .store
            .session_by_id(id, &tenancy.filter())
            .await?
            .ok_or(Error::NotFound)?;
        self.session_of(row)
    }

    /// Whether `cookie` is the one the browser that opened `session` was given.
    pub fn opened_by(&self, session: &ConnectSession, cookie: &Secret) -> bool {
        use subtle::ConstantTimeEq;
        session.browser_hash.as_deref().is_some_and(|h| {
            h.as_bytes()
                .ct_eq(self.keys.lookup_hash(cookie).as_bytes())
                .into()
        })
    }

    /// Whether an id_token's `nonce` is the one `session` sent.
    pub fn nonce_of(&self, session: &ConnectSession, nonce: &str) -> bool {
        session
            .nonce_hash
            .as_deref()
            .is_some_and(|h| h == self.keys.lookup_hash(&Secret::new(nonce)))
    }

    /// The PKCE verifier `session` was created with.
    pub fn code_verifier(&self, session: &ConnectSession) -> Result<Secret> {
        let blob = session
            .code_verifier
            .as_ref()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a session has no PKCE verifier")))?;
        Ok(self
            .keys
            .decrypt(&session.key_id, &session.id, "code_verifier", blob)?)
    }

    /// Claims an opened session for its callback: only the first claimer gets it.
    pub async fn claim_session(&self, session: &ConnectSession) -> Result<bool> {
        Ok(self.store.claim_session(&session.id, self.now_ms()).await?)
    }

    /// Records the outcome of an unfinished session: its token, or the error code.
    pub async fn finish_session(
        &self,
        session: &ConnectSession,
        outcome: std::result::Result<&TokenId, &str>,
    ) -> Result<()> {
        let (status, token, error) = match outcome {
            Ok(id) => (SessionStatus::Connected, Some(id.as_str()), None),
            Err(code) => (SessionStatus::Failed, None, Some(code)),
        };
        Ok(self
            .store
            .finish_session(&session.id, status.as_str(), token, error, self.now_ms())
            .await?)
    }

    fn session_of(&self, row: SessionRow) -> Result<ConnectSession> {
        let corrupt = |what: &str| {
            Error::Internal(anyhow::anyhow!("stored connect session has a bad {what}"))
        };
        Ok(ConnectSession {
            provider: ProviderKey::parse(row.provider).map_err(|_| corrupt("provider"))?,
            tenant: tenancy::from_column(&row.tenant, "connect session")?,
            user_name: row
                .user_name
                .map(UserName::parse)
                .transpose()
                .map_err(|_| corrupt("user name"))?,
            scopes: row
                .scopes
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            status: SessionStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?,
            token_id: row
                .token_id
                .map(TokenId::parse)
                .transpose()
                .map_err(|_| corrupt("token id"))?,
            id: row.id,
            caller: row.caller,
            return_to: row.return_to,
            redirect_uri: row.redirect_uri,
            error: row.error,
            created_at: row.created_at,
            expires_at: row.expires_at,
            code_verifier: row.code_verifier,
            key_id: row.key_id,
            browser_hash: row.browser_hash,
            nonce_hash: row.nonce_hash,
        })
    }
}
