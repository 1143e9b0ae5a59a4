//! Who is calling: caller JWTs, their scopes and tenant. `verifier.rs` checks them (HS256, public
//! keys, a JWKS); this file holds what a verified caller is, and `jwt mint`.

mod verifier;

use std::collections::BTreeSet;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::tokens::Tenancy;

pub use verifier::{check_hs256_secret, Verifier, MIN_HS256_SECRET_LEN};

/// What a caller may do, from the JWT's space-separated `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// find, get, list (secrets redacted).
    Read,
    /// Get a valid access token.
    Access,
    /// save, delete one, exchange, refresh, revoke.
    Write,
    /// See client_secret / refresh_token / grant_token in responses.
    Secrets,
    /// Delete all tokens.
    Admin,
    /// Call the provider's API with a token through `/v1/proxy` (the token itself never shown).
    Proxy,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "tokens:read",
            Self::Access => "tokens:access",
            Self::Write => "tokens:write",
            Self::Secrets => "tokens:secrets",
            Self::Admin => "tokens:admin",
            Self::Proxy => "tokens:proxy",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Read,
            Self::Access,
            Self::Write,
            Self::Secrets,
            Self::Admin,
            Self::Proxy,
        ]
        .into_iter()
        .find(|scope| scope.as_str() == s)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The calling service (`sub`).
    pub sub: String,
    pub scopes: BTreeSet<Scope>,
    pub tenancy: Tenancy,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Fails with 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this call needs the `{}` scope",
                scope.as_str()
            )))
        }
    }
}

/// The tenant claim's value that grants every tenant.
pub const ALL_TENANTS: &str = "*";

/// The claims `jwt mint` writes (verification reads them more leniently: see [`Verifier`]).
#[derive(Debug, Serialize)]
struct MintedClaims {
    sub: String,
    exp: u64,
    iat: u64,
    scope: String,
    tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// What to put in a minted caller JWT.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub sub: String,
    pub scope: String,
    /// A tenant name, or [`ALL_TENANTS`].
    pub tenant: String,
    pub ttl_secs: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Signs a caller JWT with the HS256 secret (the `jwt mint` subcommand and tests).
pub fn mint(secret: &SecretString, req: &MintRequest) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = MintedClaims {
        sub: req.sub.clone(),
        exp: now + req.ttl_secs,
        iat: now,
        scope: req.scope.clone(),
        tenant: req.tenant.clone(),
        iss: req.issuer.clone(),
        aud: req.audience.clone(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?)
}
