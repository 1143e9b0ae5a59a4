//! Getting tokens in and out: code exchange and revoke, and what both kinds of login share (the
//! token a grant makes, the identity it is stored under, the grant it replaces). The browser
//! login itself is `connect.rs`.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::client::{ClientCredentials, ProviderError, TokenGrant};
use super::providers::Provider;
use super::{credentials, OAuthService, PROVIDER_RETRY_AFTER_SECS, RATE_LIMIT_BACKOFF_SECS};
use crate::domain::{
    Identity, InvalidField, PartialToken, ProviderKey, Secret, TenantName, Token, TokenId,
    TokenStatus, UserName,
};
use crate::error::{Error, Result};
use crate::tokens::Tenancy;

/// Whom a new grant is stored for.
pub(super) struct Grantee {
    pub user_name: Option<UserName>,
    pub tenant: Option<TenantName>,
    pub identity: Option<Identity>,
    pub scopes: Option<Vec<String>>,
}

/// The scopes a grant holds: what the provider said it granted, else what was asked for.
pub(super) fn granted_scopes(grant: &TokenGrant, asked: &[String]) -> Option<Vec<String>> {
    match grant.scope.as_deref() {
        Some(s) if !s.trim().is_empty() => Some(
            s.split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        _ if asked.is_empty() => None,
        _ => Some(asked.to_vec()),
    }
}

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

/// PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

pub(super) fn exchange_error(e: ProviderError) -> Error {
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
        let identity = self
            .inner
            .client
            .identity(&provider, &grant, &client_id)
            .await
            .map_err(|e| Error::Provider(e.to_string()))?
            .identity;
        let scopes = granted_scopes(&grant, &provider.scopes);
        let partial = self.granted_token(
            &provider,
            grant,
            Grantee {
                user_name: req.user_name,
                tenant: None,
                identity,
                scopes,
            },
            Some(client_id),
            req.client_secret,
            Some(req.grant_token),
            req.redirect_url,
        );
        let replaced = self.replaced_token(tenancy, &partial).await?;
        let (token, _) = self.tokens().save_connection(tenancy, partial).await?;
        self.revoke_replaced(replaced, &token, provider);
        Ok(token)
    }

    /// The stored token a new grant is about to replace (same user and provider), if any. A
    /// grant of another identity never replaces it: that is refused as a conflict.
    pub(super) async fn replaced_token(
        &self,
        tenancy: &Tenancy,
        partial: &PartialToken,
    ) -> Result<Option<Token>> {
        if partial.user_name.is_none() {
            return Ok(None);
        }
        let Some(stored) = self.tokens().find(tenancy, partial).await.ok().flatten() else {
            return Ok(None);
        };
        if let (Some(old), Some(new)) = (&stored.identity, &partial.identity) {
            if stored.provider == *partial.provider.as_ref().unwrap_or(&stored.provider)
                && old.subject != new.subject
            {
                return Err(Error::Conflict(format!(
                    "{} is connected to another account at this provider; a login as {} does not replace it",
                    stored.user_name.as_ref().map_or("this user", |u| u.as_str()),
                    new.label()
                )));
            }
        }
        Ok(Some(stored))
    }

    /// A new login replaced a stored grant: revoke the old refresh token at the provider (in the
    /// background, best effort) so it does not stay valid there for its whole lifetime — only
    /// where each refresh token is a grant of its own (`revoke_replaced`: Zoho). Elsewhere the
    /// provider's grant is one per user and client, so the new tokens belong to the very grant
    /// the old refresh token would revoke.
    pub(super) fn revoke_replaced(&self, old: Option<Token>, new: &Token, provider: Arc<Provider>) {
        let Some(old) = old else { return };
        let Some(old_refresh) = old.refresh_token.clone() else {
            return;
        };
        if !provider.revoke_replaced
            || new.refresh_token.as_ref() == Some(&old_refresh)
            || old.provider != new.provider
        {
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
    pub(super) fn granted_token(
        &self,
        provider: &Provider,
        grant: TokenGrant,
        grantee: Grantee,
        client_id: Option<String>,
        client_secret: Option<Secret>,
        grant_token: Option<Secret>,
        redirect_url: Option<String>,
    ) -> PartialToken {
        let now = self.now_ms();
        let Grantee {
            user_name,
            tenant,
            identity,
            scopes,
        } = grantee;
        PartialToken {
            id: None,
            tenant,
            provider: Some(provider.key.clone()),
            user_name,
            identity,
            scopes,
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
        self.tokens().delete_revoked(tenancy, id).await?;
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
