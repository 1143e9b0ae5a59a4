//! Who logged in: what a provider vouches for about the account behind a new grant. OpenID Connect
//! providers sign it (the id_token, checked here against the issuer's keys: signature, `iss`,
//! `aud`, `exp`; the nonce is compared by the login, which knows it); Zoho answers its user-info
//! endpoint for the new access token. Nothing here logs a token or a claim value.

use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::client::{OAuthClient, TokenGrant};
use super::providers::{IdentitySource, Provider};
use crate::domain::Identity;

/// Leeway on an id_token's `exp`, `iat` and `nbf` (clock skew between us and the provider).
const LEEWAY_SECS: u64 = 60;

/// What a login's grant says about who logged in.
#[derive(Debug, Default)]
pub struct LoginIdentity {
    /// `None` when the provider does not say (no id_token asked for, no user-info endpoint, or
    /// Zoho's user info refused for want of the profile scope).
    pub identity: Option<Identity>,
    /// The id_token's `nonce`, for the login to compare with the one it sent.
    pub nonce: Option<String>,
}

/// Why a login's identity could not be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The id_token is not one this provider issued for us now: never store such a login.
    #[error("the provider's id_token is not valid ({0})")]
    Invalid(&'static str),
    /// The provider's keys or user info could not be fetched.
    #[error("the provider could not say who logged in ({0})")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct IdTokenClaims {
    iss: String,
    sub: String,
    email: Option<String>,
    name: Option<String>,
    nonce: Option<String>,
}

/// Zoho's `GET /oauth/user/info` answer.
#[derive(Deserialize)]
struct ZohoUserInfo {
    #[serde(rename = "ZUID")]
    zuid: serde_json::Value,
    #[serde(rename = "Email")]
    email: Option<String>,
    #[serde(rename = "Display_Name")]
    display_name: Option<String>,
}

impl OAuthClient {
    /// Who logged in, as `provider` vouches for it in `grant` (issued to `client_id`).
    pub async fn identity(
        &self,
        provider: &Provider,
        grant: &TokenGrant,
        client_id: &str,
    ) -> Result<LoginIdentity, IdentityError> {
        match provider.identity_source() {
            IdentitySource::None => Ok(LoginIdentity::default()),
            IdentitySource::IdToken => match &grant.id_token {
                None => Ok(LoginIdentity::default()),
                Some(t) => {
                    let mut login = self
                        .verify_id_token(provider, t.expose(), client_id)
                        .await?;
                    if let Some(identity) = login.identity.as_mut() {
                        if identity.email.is_none() {
                            self.complete_from_userinfo(provider, grant, identity).await;
                        }
                    }
                    Ok(login)
                }
            },
            IdentitySource::UserInfo(scheme) => Ok(LoginIdentity {
                identity: self.user_info(provider, grant, scheme).await,
                nonce: None,
            }),
        }
    }

    async fn verify_id_token(
        &self,
        provider: &Provider,
        id_token: &str,
        client_id: &str,
    ) -> Result<LoginIdentity, IdentityError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| IdentityError::Invalid("unreadable"))?;
        // Only the provider's published public keys: never a shared secret or `none`.
        if !crate::jwks::is_public_key_algorithm(header.alg) {
            return Err(IdentityError::Invalid(
                "not signed with a public-key algorithm",
            ));
        }
        let discovery = provider
            .discovery()
            .ok_or(IdentityError::Invalid("the provider publishes no keys"))?;
        let keys = discovery
            .keys(&self.http, header.kid.as_deref())
            .await
            .map_err(|e| IdentityError::Unavailable(e.to_string()))?;
        let candidates = crate::jwks::candidates(&keys, header.kid.as_deref());
        if candidates.is_empty() {
            return Err(IdentityError::Invalid(
                "signed with a key the provider does not publish",
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut last = IdentityError::Invalid("signature");
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match jsonwebtoken::decode::<IdTokenClaims>(id_token, &key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let expected = provider.issuer.as_deref().unwrap_or_default();
                    if claims.iss.trim_end_matches('/') != expected.trim_end_matches('/') {
                        return Err(IdentityError::Invalid("issuer"));
                    }
                    return Ok(LoginIdentity {
                        identity: Some(Identity {
                            subject: claims.sub,
                            email: claims.email.filter(|e| !e.is_empty()),
                            name: claims.name.filter(|n| !n.is_empty()),
                        }),
                        nonce: claims.nonce,
                    });
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = IdentityError::Invalid(match e.kind() {
                        K::ExpiredSignature => "expired",
                        K::InvalidAudience => "audience",
                        K::InvalidIssuer => "issuer",
                        K::ImmatureSignature => "not valid yet",
                        K::MissingRequiredClaim(_) => "a required claim is missing",
                        _ => "signature",
                    });
                    if !matches!(last, IdentityError::Invalid("signature")) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    /// Many providers put only `sub` in the id_token: the email and name come from the
    /// userinfo endpoint, taken only when its `sub` is the id_token's (OpenID Connect Core
    /// §5.3.2). Best effort: without them the identity is the subject alone.
    async fn complete_from_userinfo(
        &self,
        provider: &Provider,
        grant: &TokenGrant,
        identity: &mut Identity,
    ) {
        #[derive(Deserialize)]
        struct UserInfo {
            sub: String,
            email: Option<String>,
            name: Option<String>,
        }
        let Some(url) = self
            .endpoints(provider)
            .await
            .ok()
            .and_then(|e| e.userinfo.clone())
        else {
            return;
        };
        let Ok(response) = self
            .http
            .get(url)
            .bearer_auth(grant.access_token.expose())
            .send()
            .await
        else {
            return;
        };
        if !response.status().is_success() {
            return;
        }
        let Ok(info) = response.json::<UserInfo>().await else {
            return;
        };
        if info.sub == identity.subject {
            identity.email = info.email.filter(|e| !e.is_empty());
            identity.name = identity.name.take().or(info.name.filter(|n| !n.is_empty()));
        }
    }

    /// Zoho's user info for the new access token; `None` when Zoho will not say (the grant
    /// lacks the profile scope, or the call fails): the login is stored without an identity.
    async fn user_info(
        &self,
        provider: &Provider,
        grant: &TokenGrant,
        scheme: &str,
    ) -> Option<Identity> {
        let url = self.endpoints(provider).await.ok()?.userinfo.clone()?;
        let response = self
            .http
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("{scheme} {}", grant.access_token.expose()),
            )
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            tracing::info!(provider = %provider.key, status = response.status().as_u16(), "the provider's user info was refused; the login has no identity");
            return None;
        }
        let info: ZohoUserInfo = response.json().await.ok()?;
        let subject = match info.zuid {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) if !s.is_empty() => s,
            _ => return None,
        };
        Some(Identity {
            subject,
            email: info.email.filter(|e| !e.is_empty()),
            name: info.display_name.filter(|n| !n.is_empty()),
        })
    }
}
