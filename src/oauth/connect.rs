//! The browser login, as connect sessions: a service creates a session (provider, user name,
//! scopes, where to send the person back) and gets a link on the broker; the browser that opens
//! the link is bound to the login (a cookie only it holds) and sent to the provider with state,
//! PKCE S256 and, for OpenID Connect, a nonce; the callback takes the session once, only from
//! that browser, exchanges the code, establishes who logged in and stores the token — unless the
//! identity is not the one the session was for, or another identity's grant would be replaced.

use std::sync::Arc;

use url::Url;

use super::client::{ClientCredentials, ProviderError};
use super::identity::IdentityError;
use super::login::{exchange_error, granted_scopes, pkce_challenge, Grantee};
use super::providers::{IdentitySource, Provider};
use super::OAuthService;
use crate::domain::{InvalidField, ProviderKey, Secret, Token, UserName};
use crate::error::{Error, ErrorCode, Result};
use crate::tokens::{ConnectSession, NewSession, Opened, SessionStatus, Tenancy};

/// Longest `return_to` accepted.
pub const RETURN_TO_MAX: usize = 2048;
/// Most scopes one session may ask for.
const MAX_SCOPES: usize = 50;

/// `POST /v1/connect/sessions`, parsed.
#[derive(Debug)]
pub struct ConnectRequest {
    pub provider: ProviderKey,
    pub user_name: Option<UserName>,
    pub return_to: Option<String>,
    /// `None`: the provider's configured scopes.
    pub scopes: Option<Vec<String>>,
}

/// What the provider sent back to `/v1/oauth/callback`.
#[derive(Debug, Default)]
pub struct CallbackParams {
    pub code: Option<Secret>,
    pub state: Option<Secret>,
    pub error: Option<String>,
    pub accounts_server: Option<String>,
    /// RFC 9207: the issuer that sent the browser back.
    pub iss: Option<String>,
}

/// Why a browser login did not connect an account: what the person's page (or `return_to`'s
/// `error=`) says.
#[derive(Debug)]
pub enum LoginFailure {
    /// No session has this link or state (or it was forgotten a day after it expired).
    UnknownLink,
    Expired,
    AlreadyUsed,
    /// The callback came to another browser than the one that opened the link.
    OtherBrowser,
    /// The person said no at the provider.
    Declined,
    /// The login was for `wanted`, but `logged_in` logged in.
    IdentityMismatch {
        wanted: String,
        logged_in: String,
    },
    /// The user name is connected to another account; a login as `logged_in` does not replace it.
    IdentityConflict {
        logged_in: String,
    },
    ProviderUnavailable,
    /// The provider refused, or answered something the broker will not store.
    Refused {
        code: ErrorCode,
        message: String,
    },
    Internal,
}

impl LoginFailure {
    /// The code a `return_to` gets as `error=` and the session records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownLink => "unknown_link",
            Self::Expired => "expired",
            Self::AlreadyUsed => "already_used",
            Self::OtherBrowser => "other_browser",
            Self::Declined => "access_denied",
            Self::IdentityMismatch { .. } => "identity_mismatch",
            Self::IdentityConflict { .. } => "identity_conflict",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::Refused { code, .. } => code.as_str(),
            Self::Internal => "internal",
        }
    }
}

impl From<Error> for LoginFailure {
    fn from(e: Error) -> Self {
        match e {
            Error::BadRequest { code, message } => Self::Refused { code, message },
            Error::ProviderUnavailable { .. } | Error::ProviderRateLimited { .. } => {
                Self::ProviderUnavailable
            }
            Error::Provider(message) => Self::Refused {
                code: ErrorCode::ProviderError,
                message,
            },
            other => {
                tracing::error!(error = %other, "browser login failed");
                Self::Internal
            }
        }
    }
}

/// How a callback ended: the session it belonged to (when known) and its outcome.
pub struct LoginResult {
    pub session: Option<ConnectSession>,
    pub provider: Option<Arc<Provider>>,
    pub outcome: std::result::Result<Token, LoginFailure>,
}

/// Opening a connect link.
pub enum OpenResult {
    /// Send the browser here (the provider's authorize URL); it now holds the session.
    Redirect(Box<ConnectSession>, Url),
    Failed(Option<Arc<Provider>>, LoginFailure),
}

impl OAuthService {
    /// The broker's own callback URL.
    pub fn callback_url(&self) -> String {
        let mut url = self.settings().public_url.clone();
        url.set_path("/v1/oauth/callback");
        url.set_query(None);
        url.to_string()
    }

    /// The link a person opens to start `session`.
    fn connect_url(&self, link: &Secret) -> Url {
        let mut url = self.settings().public_url.clone();
        url.set_path(&format!("/connect/{}", link.expose()));
        url.set_query(None);
        url
    }

    /// Checks a `return_to`: an absolute http(s) URL of an allowed origin, without user info,
    /// at most [`RETURN_TO_MAX`] characters.
    pub fn check_return_to(&self, raw: &str) -> Result<Url> {
        let bad = |why: &str| -> Error { InvalidField::new("return_to", why).into() };
        if raw.len() > RETURN_TO_MAX {
            return Err(bad(&format!("must be at most {RETURN_TO_MAX} characters")));
        }
        if raw
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        {
            return Err(bad(
                "must be an absolute http(s) URL without spaces or backslashes",
            ));
        }
        let url = Url::parse(raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| bad("must be an absolute http(s) URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry a user name or password"));
        }
        if !self.settings().return_to_origins.contains(&url.origin()) {
            return Err(bad(
                "this origin is not allowed (oauth.return_to_origins lists the allowed ones)",
            ));
        }
        Ok(url)
    }

    /// Creates a connect session for a service; returns it with the link to send the person to.
    pub async fn create_session(
        &self,
        tenancy: &Tenancy,
        caller: &str,
        req: ConnectRequest,
    ) -> Result<(ConnectSession, Url)> {
        let own = tenancy.own_tenant().map_or("*", |t| t.as_str());
        self.check_login_start(format!("{own}/{caller}"))?;
        let provider = self
            .providers()
            .get(&req.provider)
            .ok_or_else(|| InvalidField::new("provider", "not a configured provider"))?;
        if provider.client_id.is_none() {
            return Err(InvalidField::new(
                "provider",
                format!("providers.{}.client_id is not configured", provider.key),
            )
            .into());
        }
        let scopes = match req.scopes {
            None => provider.scopes.clone(),
            Some(asked) => {
                if asked.len() > MAX_SCOPES {
                    return Err(InvalidField::new(
                        "scopes",
                        format!("at most {MAX_SCOPES} scopes"),
                    )
                    .into());
                }
                if let Some(bad) = asked.iter().find(|s| !provider.allowed_scopes.contains(s)) {
                    let shown: String = bad.chars().take(64).collect();
                    return Err(InvalidField::new(
                        "scopes",
                        format!("`{shown}` is not a scope this provider allows (providers.{}.allowed_scopes)", provider.key),
                    )
                    .into());
                }
                let mut unique: Vec<String> = Vec::with_capacity(asked.len());
                for s in asked {
                    if !unique.contains(&s) {
                        unique.push(s);
                    }
                }
                unique
            }
        };
        let return_to = req
            .return_to
            .as_deref()
            .map(|r| self.check_return_to(r))
            .transpose()?;
        let verifier = Secret::new(crate::tokens::random_b64(48));
        let new = NewSession {
            provider: provider.key.clone(),
            tenant: tenancy.own_tenant().cloned(),
            caller: caller.to_owned(),
            user_name: req.user_name,
            return_to: return_to.as_ref().map(Url::to_string),
            scopes,
            redirect_uri: self.callback_url(),
            expires_at: self.now_ms() + self.settings().state_ttl_ms,
        };
        let (session, link) = self.tokens().create_session(new, &verifier).await?;
        tracing::info!(provider = %provider.key, caller, session = %session.id, "created a connect session");
        Ok((session, self.connect_url(&link)))
    }

    /// A caller's view of one of its sessions.
    pub async fn session(&self, tenancy: &Tenancy, id: &str) -> Result<ConnectSession> {
        self.tokens().session(tenancy, id).await
    }

    /// A browser opened a connect link: bind the session to it (`browser` is the secret of the
    /// cookie it is about to get) and send it to the provider.
    pub async fn open(&self, link: &Secret, browser: &Secret) -> Result<OpenResult> {
        let (session, secrets) = match self.tokens().open_session(link, browser).await? {
            Opened::Now(session, secrets) => (session, secrets),
            Opened::Unknown => return Ok(OpenResult::Failed(None, LoginFailure::UnknownLink)),
            Opened::Expired(s) => {
                return Ok(OpenResult::Failed(
                    self.providers().get(&s.provider),
                    LoginFailure::Expired,
                ))
            }
            Opened::AlreadyUsed(s) => {
                return Ok(OpenResult::Failed(
                    self.providers().get(&s.provider),
                    LoginFailure::AlreadyUsed,
                ))
            }
        };
        crate::audit::note_caller(&session.caller, session.tenant.as_ref().map(|t| t.as_str()));
        let Some(provider) = self.providers().get(&session.provider) else {
            return Ok(OpenResult::Failed(None, LoginFailure::Internal));
        };
        let endpoints = match self.inner.client.endpoints(&provider).await {
            Ok(e) => e,
            Err(_) => {
                let _ = self
                    .tokens()
                    .finish_session(&session, Err("provider_unavailable"))
                    .await;
                return Ok(OpenResult::Failed(
                    Some(provider),
                    LoginFailure::ProviderUnavailable,
                ));
            }
        };
        let client_id = provider.client_id.clone().unwrap_or_default();
        let mut url = endpoints.authorize.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client_id)
                .append_pair("redirect_uri", &session.redirect_uri)
                .append_pair("state", secrets.state.expose());
            if !session.scopes.is_empty() {
                q.append_pair("scope", &session.scopes.join(provider.scope_separator()));
            }
            if provider.pkce {
                q.append_pair(
                    "code_challenge",
                    &pkce_challenge(secrets.code_verifier.expose()),
                )
                .append_pair("code_challenge_method", "S256");
            }
            if provider.identity_source() == IdentitySource::IdToken {
                q.append_pair("nonce", secrets.nonce.expose());
            }
            if let Some(u) = &session.user_name {
                q.append_pair("login_hint", u.as_str());
            }
            for (k, v) in &provider.extra_authorize_params {
                q.append_pair(k, v);
            }
        }
        tracing::info!(provider = %provider.key, session = %session.id, "a browser opened a connect session");
        Ok(OpenResult::Redirect(Box::new(session), url))
    }

    /// Finishes a browser login. `cookie` gives the binding cookie the browser sent for a
    /// session id, if any.
    pub async fn callback(
        &self,
        params: CallbackParams,
        cookie: impl Fn(&str) -> Option<Secret>,
    ) -> LoginResult {
        let Some(state) = params.state.as_ref() else {
            return failed(None, None, LoginFailure::UnknownLink);
        };
        let session = match self.tokens().session_by_state(state).await {
            Ok(Some(s)) => s,
            Ok(None) => return failed(None, None, LoginFailure::UnknownLink),
            Err(e) => return failed(None, None, e.into()),
        };
        crate::audit::note_caller(&session.caller, session.tenant.as_ref().map(|t| t.as_str()));
        let provider = self.providers().get(&session.provider);
        match session.status {
            SessionStatus::Opened => {}
            SessionStatus::Pending => {
                return failed(Some(session), provider, LoginFailure::UnknownLink)
            }
            _ => return failed(Some(session), provider, LoginFailure::AlreadyUsed),
        }
        let verdict = if session.expires_at <= self.now_ms() {
            Some(LoginFailure::Expired)
        } else if !cookie(&session.id).is_some_and(|c| self.tokens().opened_by(&session, &c)) {
            Some(LoginFailure::OtherBrowser)
        } else {
            None
        };
        if let Some(failure) = verdict {
            let _ = self
                .tokens()
                .finish_session(&session, Err(failure.code()))
                .await;
            return failed(Some(session), provider, failure);
        }
        match self.tokens().claim_session(&session).await {
            Ok(true) => {}
            Ok(false) => return failed(Some(session), provider, LoginFailure::AlreadyUsed),
            Err(e) => return failed(Some(session), provider, e.into()),
        }
        let outcome = self.finish_login(&session, params).await;
        let recorded = match &outcome {
            Ok((token, _)) => Ok(&token.id),
            Err(f) => Err(f.code()),
        };
        if let Err(e) = self.tokens().finish_session(&session, recorded).await {
            tracing::warn!(session = %session.id, error = %e, "could not record how a connect session ended");
        }
        let provider = outcome.as_ref().ok().map(|(_, p)| p.clone()).or(provider);
        LoginResult {
            session: Some(session),
            provider,
            outcome: outcome.map(|(t, _)| t),
        }
    }

    /// The part of the callback after the session is claimed: every failure here is recorded
    /// on the session.
    async fn finish_login(
        &self,
        session: &ConnectSession,
        params: CallbackParams,
    ) -> std::result::Result<(Token, Arc<Provider>), LoginFailure> {
        let mut provider = self
            .providers()
            .get(&session.provider)
            .ok_or(LoginFailure::Internal)?;
        if let Some(server) = params.accounts_server.as_deref().filter(|s| !s.is_empty()) {
            if provider.takes_accounts_server() {
                provider = self
                    .providers()
                    .zoho_by_accounts_server(server)
                    .ok_or_else(|| {
                        refused(
                            ErrorCode::InvalidAccountsServer,
                            "the provider named an accounts server the broker does not know",
                        )
                    })?;
            }
        }
        // RFC 9207: a response from another issuer than the one the login went to is a mix-up.
        if let Some(issuer) = &provider.issuer {
            if params.iss.as_deref() != Some(issuer.as_str()) {
                return Err(refused(
                    ErrorCode::InvalidIssuer,
                    match params.iss {
                        None => "the provider's answer names no issuer (iss), but this provider must",
                        Some(_) => "the provider's answer names another issuer (iss) than the one the login went to",
                    },
                ));
            }
        }
        if let Some(error) = params.error {
            return Err(if error == "access_denied" {
                LoginFailure::Declined
            } else {
                refused(
                    ErrorCode::LoginRefused,
                    &format!(
                        "the provider refused the login ({})",
                        error.chars().take(64).collect::<String>()
                    ),
                )
            });
        }
        let code = params
            .code
            .ok_or_else(|| refused(ErrorCode::InvalidCode, "the provider sent no code"))?;
        let client_id = provider.client_id.clone().ok_or(LoginFailure::Internal)?;
        let verifier = self.tokens().code_verifier(session)?;
        let grant = self
            .inner
            .client
            .exchange_code(
                &provider,
                &ClientCredentials {
                    client_id: &client_id,
                    client_secret: provider.client_secret.as_ref(),
                },
                &code,
                Some(&session.redirect_uri),
                Some(&verifier).filter(|_| provider.pkce),
            )
            .await
            .map_err(|e| LoginFailure::from(exchange_error(e)))?;
        let who = self
            .inner
            .client
            .identity(&provider, &grant, &client_id)
            .await
            .map_err(|e| match e {
                IdentityError::Unavailable(_) => LoginFailure::ProviderUnavailable,
                IdentityError::Invalid(why) => refused(
                    ErrorCode::InvalidIdToken,
                    &format!("the provider's id_token was refused ({why})"),
                ),
            })?;
        if provider.identity_source() == IdentitySource::IdToken
            && grant.id_token.is_some()
            && !who
                .nonce
                .as_deref()
                .is_some_and(|n| self.tokens().nonce_of(session, n))
        {
            return Err(refused(
                ErrorCode::InvalidIdToken,
                "the provider's id_token was refused (nonce)",
            ));
        }
        let identity = who.identity;
        if provider.require_identity_match {
            if let Some(wanted) = &session.user_name {
                match &identity {
                    Some(i) if i.is(wanted) => {}
                    other => {
                        self.revoke_unwanted(&provider, &client_id, &grant);
                        return Err(LoginFailure::IdentityMismatch {
                            wanted: wanted.as_str().to_owned(),
                            logged_in: other.as_ref().map_or_else(
                                || "an account the provider did not name".into(),
                                |i| i.label().to_owned(),
                            ),
                        });
                    }
                }
            }
        }
        let scopes = granted_scopes(&grant, &session.scopes);
        let unwanted = (
            provider.clone(),
            client_id.clone(),
            grant.refresh_token.clone(),
        );
        let partial = self.granted_token(
            &provider,
            grant,
            Grantee {
                // Without a user name asked for, a browser login is stored under who logged in.
                user_name: session.user_name.clone().or_else(|| {
                    identity.as_ref().and_then(|i| {
                        UserName::parse(i.email.as_deref().unwrap_or(&i.subject)).ok()
                    })
                }),
                tenant: session.tenant.clone(),
                identity: identity.clone(),
                scopes,
            },
            Some(client_id),
            None,
            None,
            Some(session.redirect_uri.clone()),
        );
        let tenancy = Tenancy::of_token(session.tenant.as_ref());
        let replaced = match self.replaced_token(&tenancy, &partial).await {
            Ok(r) => r,
            Err(Error::Conflict(_)) => {
                if let (p, id, Some(rt)) = unwanted {
                    self.revoke_in_background(p, id, rt);
                }
                return Err(LoginFailure::IdentityConflict {
                    logged_in: identity.map(|i| i.label().to_owned()).unwrap_or_default(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let (token, _) = self.tokens().save_connection(&tenancy, partial).await?;
        self.revoke_replaced(replaced, &token, provider.clone());
        crate::audit::note_token(token.id.as_str());
        tracing::info!(token_id = %token.id, provider = %provider.key, caller = %session.caller, refreshable = token.refresh_token.is_some(), outcome = "connected", "finished a browser login");
        Ok((token, provider))
    }

    /// A grant the broker will not store: give it back to the provider (best effort), so it
    /// does not stay valid there.
    fn revoke_unwanted(
        &self,
        provider: &Arc<Provider>,
        client_id: &str,
        grant: &super::TokenGrant,
    ) {
        if let Some(rt) = grant.refresh_token.clone() {
            self.revoke_in_background(provider.clone(), client_id.to_owned(), rt);
        }
    }

    fn revoke_in_background(&self, provider: Arc<Provider>, client_id: String, token: Secret) {
        let client = self.inner.client.clone();
        tokio::spawn(async move {
            let creds = ClientCredentials {
                client_id: &client_id,
                client_secret: provider.client_secret.as_ref(),
            };
            if let Err(e) = client
                .revoke(&provider, &creds, &token, "refresh_token")
                .await
            {
                let e: ProviderError = e;
                tracing::warn!(provider = %provider.key, error = %e, "could not revoke a grant the broker refused to store");
            }
        });
    }
}

fn refused(code: ErrorCode, message: &str) -> LoginFailure {
    LoginFailure::Refused {
        code,
        message: message.to_owned(),
    }
}

fn failed(
    session: Option<ConnectSession>,
    provider: Option<Arc<Provider>>,
    failure: LoginFailure,
) -> LoginResult {
    LoginResult {
        session,
        provider,
        outcome: Err(failure),
    }
}
