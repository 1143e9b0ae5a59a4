//! Getting tokens in and out: code exchange, the browser login (state + PKCE S256), and revoke.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use url::Url;

use super::client::{ClientCredentials, ProviderError, TokenGrant};
use super::providers::Provider;
use super::{credentials, OAuthService, PROVIDER_RETRY_AFTER_SECS, RATE_LIMIT_BACKOFF_SECS};
use crate::domain::{
    InvalidField, PartialToken, ProviderKey, Secret, TenantName, Token, TokenId, TokenStatus,
    UserName,
};
use crate::error::{Error, Result};
use crate::tokens::{PendingLogin, Tenancy};

/// `POST /v1/oauth/exchange`, parsed.
#[derive(Debug)]
pub struct ExchangeRequest {
    pub provider: Option<ProviderKey>,
    pub grant_token: Secret,
    pub user_name: Option<UserName>,
    pub redirect_url: Option<String>,
    pub code_verifier: Option<Secret>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// Zoho: the data center's accounts server the code was issued by.
    pub accounts_server: Option<String>,
}

/// `GET /v1/oauth/authorize`, parsed.
#[derive(Debug)]
pub struct AuthorizeRequest {
    pub provider: ProviderKey,
    pub user_name: Option<UserName>,
    pub return_to: Option<Url>,
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

/// A finished login.
#[derive(Debug)]
pub struct CallbackOutcome {
    pub token: Token,
    pub return_to: Option<String>,
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    B64URL.encode(buf)
}

/// PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

fn exchange_error(e: ProviderError) -> Error {
    match e {
        ProviderError::InvalidGrant(code) => Error::bad_request(
            crate::error::ErrorCode::InvalidGrant,
            format!("the provider rejected the grant token ({code}); it may be used up or expired"),
        ),
        ProviderError::Unavailable(_) => Error::ProviderUnavailable {
            retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
        },
        ProviderError::RateLimited { retry_after_secs } => Error::ProviderRateLimited {
            retry_after_secs: retry_after_secs.unwrap_or(RATE_LIMIT_BACKOFF_SECS),
        },
        ProviderError::Rejected(code) => {
            Error::Provider(format!("the provider refused the exchange ({code})"))
        }
    }
}

impl OAuthService {
    fn exchange_provider(
        &self,
        provider: Option<&ProviderKey>,
        accounts_server: Option<&str>,
    ) -> Result<Arc<Provider>> {
        match accounts_server.filter(|s| !s.is_empty()) {
            Some(server) => {
                let found = self
                    .providers()
                    .zoho_by_accounts_server(server)
                    .ok_or_else(|| {
                        InvalidField::new("accounts_server", "not a known Zoho accounts server")
                    })?;
                if let Some(p) = provider {
                    let asked = self.providers().get(p);
                    if asked.is_none_or(|a| !a.takes_accounts_server()) {
                        return Err(InvalidField::new(
                            "accounts_server",
                            "only Zoho providers take an accounts server",
                        )
                        .into());
                    }
                }
                Ok(found)
            }
            None => {
                // As save does: no provider named means `tokens.default_provider`.
                let key = provider.unwrap_or_else(|| self.tokens().default_provider());
                self.providers().get(key).ok_or_else(|| {
                    InvalidField::new("provider", "not a configured provider").into()
                })
            }
        }
    }

    /// Exchanges a grant token at the provider and stores (upserts) the result.
    pub async fn exchange(&self, tenancy: &Tenancy, req: ExchangeRequest) -> Result<Token> {
        let provider =
            self.exchange_provider(req.provider.as_ref(), req.accounts_server.as_deref())?;
        let client_id = req
            .client_id
            .clone()
            .or_else(|| provider.client_id.clone())
            .ok_or_else(|| {
                InvalidField::new(
                    "client_id",
                    "required: the provider has no configured client_id",
                )
            })?;
        let client_secret = req.client_secret.as_ref().or(provider
            .client_secret
            .as_ref()
            .filter(|_| provider.client_id.as_deref() == Some(client_id.as_str())));
        let grant = self
            .inner
            .client
            .exchange_code(
                &provider,
                &ClientCredentials {
                    client_id: &client_id,
                    client_secret,
                },
                &req.grant_token,
                req.redirect_url.as_deref(),
                req.code_verifier.as_ref(),
            )
            .await
            .map_err(exchange_error)?;
        tracing::info!(provider = %provider.key, outcome = "exchanged", "exchanged a grant token");
        let partial = self.granted_token(
            &provider,
            grant,
            req.user_name,
            None,
            Some(client_id),
            req.client_secret,
            Some(req.grant_token),
            req.redirect_url,
        );
        let replaced = self.replaced_token(tenancy, &partial).await;
        let (token, _) = self.tokens().save(tenancy, partial).await?;
        self.revoke_replaced(replaced, &token, provider);
        Ok(token)
    }

    /// The stored token a new grant is about to replace (same user and provider), if any.
    async fn replaced_token(&self, tenancy: &Tenancy, partial: &PartialToken) -> Option<Token> {
        partial.user_name.as_ref()?;
        self.tokens().find(tenancy, partial).await.ok().flatten()
    }

    /// A new login replaced a stored grant: revoke the old refresh token at the provider (in the
    /// background, best effort) so it does not stay valid there for its whole lifetime.
    fn revoke_replaced(&self, old: Option<Token>, new: &Token, provider: Arc<Provider>) {
        let Some(old) = old else { return };
        let Some(old_refresh) = old.refresh_token.clone() else {
            return;
        };
        if new.refresh_token.as_ref() == Some(&old_refresh) || old.provider != new.provider {
            return;
        }
        let client = self.inner.client.clone();
        tokio::spawn(async move {
            let Ok((client_id, client_secret)) = credentials(&old, &provider) else {
                return;
            };
            let creds = ClientCredentials {
                client_id: &client_id,
                client_secret,
            };
            match client
                .revoke(&provider, &creds, &old_refresh, "refresh_token")
                .await
            {
                Ok(()) => {
                    tracing::info!(token_id = %old.id, provider = %provider.key, "revoked the grant a new login replaced")
                }
                Err(e) => {
                    tracing::warn!(token_id = %old.id, provider = %provider.key, error = %e, "could not revoke the grant a new login replaced")
                }
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn granted_token(
        &self,
        provider: &Provider,
        grant: TokenGrant,
        user_name: Option<UserName>,
        tenant: Option<TenantName>,
        client_id: Option<String>,
        client_secret: Option<Secret>,
        grant_token: Option<Secret>,
        redirect_url: Option<String>,
    ) -> PartialToken {
        let now = self.now_ms();
        PartialToken {
            id: None,
            tenant,
            provider: Some(provider.key.clone()),
            user_name,
            client_id,
            client_secret,
            refresh_token: grant.refresh_token,
            access_token: Some(grant.access_token),
            grant_token,
            expiry_time: Some(now + grant.expires_in_ms.unwrap_or(3_600_000)),
            granted_lifetime_ms: Some(grant.expires_in_ms.unwrap_or(3_600_000)),
            redirect_url,
            api_domain: grant.api_domain,
            status: Some(TokenStatus::Active),
        }
    }

    /// The broker's own callback URL.
    pub fn callback_url(&self) -> String {
        let mut url = self.settings().public_url.clone();
        url.set_path("/v1/oauth/callback");
        url.set_query(None);
        url.to_string()
    }

    /// Starts a browser login: stores a single-use state with a PKCE verifier and returns the
    /// provider's authorize URL to send the browser to.
    pub async fn authorize(
        &self,
        tenancy: &Tenancy,
        caller: &str,
        req: AuthorizeRequest,
    ) -> Result<Url> {
        let provider = self
            .providers()
            .get(&req.provider)
            .ok_or_else(|| InvalidField::new("provider", "not a configured provider"))?;
        let client_id = provider.client_id.clone().ok_or_else(|| {
            InvalidField::new(
                "provider",
                format!("providers.{}.client_id is not configured", provider.key),
            )
        })?;
        let state = Secret::new(random_b64(32));
        let verifier = Secret::new(random_b64(48));
        let redirect_uri = self.callback_url();
        let login = PendingLogin {
            provider: provider.key.clone(),
            tenant: tenancy.own_tenant().cloned(),
            caller: caller.to_owned(),
            user_name: req.user_name.clone(),
            return_to: req.return_to.as_ref().map(Url::to_string),
            redirect_uri: redirect_uri.clone(),
            code_verifier: Some(verifier.clone()),
        };
        let expires_at = self.now_ms() + self.settings().state_ttl_ms;
        self.tokens().save_login(&state, &login, expires_at).await?;

        let mut url = provider.authorize_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("state", state.expose());
            if !provider.scopes.is_empty() {
                q.append_pair("scope", &provider.scopes.join(provider.scope_separator()));
            }
            if provider.pkce {
                q.append_pair("code_challenge", &pkce_challenge(verifier.expose()))
                    .append_pair("code_challenge_method", "S256");
            }
            if let Some(u) = &req.user_name {
                q.append_pair("login_hint", u.as_str());
            }
            for (k, v) in &provider.extra_authorize_params {
                q.append_pair(k, v);
            }
        }
        tracing::info!(provider = %provider.key, caller, "started a browser login");
        Ok(url)
    }

    /// Finishes a browser login: takes the state (once), exchanges the code with the PKCE
    /// verifier and stores the token in the tenant of the caller who started the login.
    pub async fn callback(&self, params: CallbackParams) -> Result<CallbackOutcome> {
        let state = params.state.ok_or_else(|| {
            Error::bad_request(
                crate::error::ErrorCode::InvalidState,
                "the login has no state",
            )
        })?;
        let login = self.tokens().take_login(&state).await?.ok_or_else(|| {
            Error::bad_request(
                crate::error::ErrorCode::InvalidState,
                "this login link is unknown, expired or already used; start the login again",
            )
        })?;
        crate::audit::note_caller(&login.caller, login.tenant.as_ref().map(TenantName::as_str));
        let provider_key = login.provider.clone();
        let mut provider = self.providers().get(&provider_key).ok_or_else(|| {
            Error::Provider(format!("provider `{provider_key}` is no longer configured"))
        })?;
        if let Some(server) = params.accounts_server.as_deref().filter(|s| !s.is_empty()) {
            if provider.takes_accounts_server() {
                provider = self
                    .providers()
                    .zoho_by_accounts_server(server)
                    .ok_or_else(|| {
                        Error::bad_request(
                            crate::error::ErrorCode::InvalidAccountsServer,
                            "not a known Zoho accounts server",
                        )
                    })?;
            }
        }
        // RFC 9207: a response from another issuer than the one the login went to is a mix-up.
        if let Some(issuer) = &provider.issuer {
            if params.iss.as_deref() != Some(issuer.as_str()) {
                return Err(Error::bad_request(
                    crate::error::ErrorCode::InvalidIssuer,
                    match params.iss {
                        None => "the provider's answer names no issuer (iss), but this provider must",
                        Some(_) => "the provider's answer names another issuer (iss) than the one the login went to",
                    },
                ));
            }
        }
        if let Some(error) = params.error {
            return Err(Error::bad_request(
                crate::error::ErrorCode::LoginRefused,
                format!(
                    "the provider reported `{}`",
                    error.chars().take(64).collect::<String>()
                ),
            ));
        }
        let code = params.code.ok_or_else(|| {
            Error::bad_request(
                crate::error::ErrorCode::InvalidCode,
                "the provider sent no code",
            )
        })?;
        let (client_id, client_secret) = match (&provider.client_id, &provider.client_secret) {
            (Some(id), secret) => (id.clone(), secret.as_ref()),
            (None, _) => {
                return Err(Error::Provider(format!(
                    "providers.{}.client_id is not configured",
                    provider.key
                )))
            }
        };
        let grant = self
            .inner
            .client
            .exchange_code(
                &provider,
                &ClientCredentials {
                    client_id: &client_id,
                    client_secret,
                },
                &code,
                Some(&login.redirect_uri),
                login.code_verifier.as_ref().filter(|_| provider.pkce),
            )
            .await
            .map_err(exchange_error)?;
        let partial = self.granted_token(
            &provider,
            grant,
            login.user_name,
            login.tenant,
            Some(client_id),
            None,
            None,
            Some(login.redirect_uri),
        );
        let replaced = self.replaced_token(&Tenancy::Unrestricted, &partial).await;
        let (token, _) = self.tokens().save(&Tenancy::Unrestricted, partial).await?;
        self.revoke_replaced(replaced, &token, provider.clone());
        crate::audit::note_token(token.id.as_str());
        tracing::info!(token_id = %token.id, provider = %provider.key, caller = %login.caller, outcome = "connected", "finished a browser login");
        Ok(CallbackOutcome {
            token,
            return_to: login.return_to,
        })
    }

    /// Revokes the token at its provider, then removes it. A provider that is down leaves the
    /// token in place (503) so the revoke can be retried.
    pub async fn revoke(&self, tenancy: &Tenancy, id: &TokenId) -> Result<()> {
        let token = self.tokens().get(tenancy, id).await?;
        let provider = self.provider_for(&token)?;
        let (secret, hint) = match (&token.refresh_token, &token.access_token) {
            (Some(r), _) => (Some(r), "refresh_token"),
            (None, Some(a)) => (Some(a), "access_token"),
            (None, None) => (None, ""),
        };
        if let Some(secret) = secret {
            let (client_id, client_secret) = credentials(&token, &provider)?;
            self.inner
                .client
                .revoke(
                    &provider,
                    &ClientCredentials {
                        client_id: &client_id,
                        client_secret,
                    },
                    secret,
                    hint,
                )
                .await
                .map_err(|e| match e {
                    ProviderError::Unavailable(_) => Error::ProviderUnavailable {
                        retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                    },
                    ProviderError::RateLimited { retry_after_secs } => Error::ProviderRateLimited {
                        retry_after_secs: retry_after_secs.unwrap_or(RATE_LIMIT_BACKOFF_SECS),
                    },
                    ProviderError::InvalidGrant(code) | ProviderError::Rejected(code) => {
                        Error::Provider(format!("the provider refused the revocation ({code})"))
                    }
                })?;
        }
        self.tokens().delete(tenancy, id).await?;
        tracing::info!(token_id = %id, provider = %provider.key, outcome = "revoked", "revoked a token");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
