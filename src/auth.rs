//! Who is calling: caller JWTs (HS256 and/or RS/PS/ES/EdDSA public keys), their scopes and tenant.

use std::collections::BTreeSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{AuthSettings, ConfigError};
use crate::domain::TenantName;
use crate::error::{Error, Result};
use crate::tokens::Tenancy;

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
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "tokens:read",
            Self::Access => "tokens:access",
            Self::Write => "tokens:write",
            Self::Secrets => "tokens:secrets",
            Self::Admin => "tokens:admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Read,
            Self::Access,
            Self::Write,
            Self::Secrets,
            Self::Admin,
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

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default)]
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

struct PublicKey {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Checks caller JWTs against the configured keys.
pub struct Verifier {
    hs: Option<DecodingKey>,
    public: Vec<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    /// Callers already verified, by the SHA-256 of their JWT, with the JWT's `exp`: a JWT's
    /// verdict cannot change before it expires, so services that reuse one skip the signature
    /// check. Keyed by hash so no bearer token is kept in memory.
    verified: quick_cache::sync::Cache<[u8; 32], Verified>,
}

/// A remembered verdict: the caller, the JWT's `exp`, and when to check the signature again.
#[derive(Clone)]
struct Verified {
    caller: Caller,
    exp: u64,
    until: std::time::Instant,
}

/// How long a verified caller is remembered at most.
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The smallest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET_LEN: usize = 32;

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

impl Verifier {
    /// Builds a verifier. `hs256_secret` is the configured one, or the local key file's.
    pub fn new(
        settings: &AuthSettings,
        hs256_secret: Option<&SecretString>,
    ) -> Result<Self, ConfigError> {
        let hs = match hs256_secret {
            Some(s) if s.expose_secret().len() < MIN_HS256_SECRET_LEN => {
                return Err(ConfigError(format!(
                    "auth.hs256_secret: must be at least {MIN_HS256_SECRET_LEN} bytes"
                )))
            }
            Some(s) => Some(DecodingKey::from_secret(s.expose_secret().as_bytes())),
            None => None,
        };
        let mut public = Vec::new();
        for (i, k) in settings.public_keys.iter().enumerate() {
            let name = format!("auth.public_keys[{i}]");
            let alg: Algorithm = k
                .alg
                .parse()
                .map_err(|_| ConfigError(format!("{name}.alg: unknown algorithm `{}`", k.alg)))?;
            let pem = match (&k.pem, &k.pem_file) {
                (Some(pem), None) => pem.clone(),
                (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "{name}.pem_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?,
                _ => {
                    return Err(ConfigError(format!(
                        "{name}: give exactly one of pem or pem_file"
                    )))
                }
            };
            let key = match alg {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem.as_bytes()),
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                _ => {
                    return Err(ConfigError(format!(
                        "{name}.alg: `{}` is not an asymmetric algorithm",
                        k.alg
                    )))
                }
            }
            .map_err(|e| ConfigError(format!("{name}.pem: not a valid public key: {e}")))?;
            public.push(PublicKey {
                alg,
                kid: k.kid.clone(),
                key,
            });
        }
        if hs.is_none() && public.is_empty() {
            return Err(ConfigError(
                "auth: configure auth.hs256_secret or auth.public_keys so callers can authenticate"
                    .into(),
            ));
        }
        Ok(Self {
            hs,
            public,
            issuer: non_empty(&settings.issuer),
            audience: non_empty(&settings.audience),
            leeway: settings.leeway_secs,
            verified: quick_cache::sync::Cache::new(10_000),
        })
    }

    /// Verifies a bearer token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(v) = self.verified.get(&key) {
            if now <= v.exp + self.leeway && std::time::Instant::now() < v.until {
                return Ok(v.caller);
            }
            self.verified.remove(&key);
        }
        let (caller, exp) = self.verify_signature(token)?;
        let until = std::time::Instant::now() + VERIFIED_TTL;
        self.verified.insert(
            key,
            Verified {
                caller: caller.clone(),
                exp,
                until,
            },
        );
        Ok(caller)
    }

    /// The full check: algorithm, key, signature and claims. Returns the caller and `exp`.
    fn verify_signature(&self, token: &str) -> Result<(Caller, u64)> {
        let unauth = |why: &str| Error::Unauthenticated(format!("invalid bearer token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauth("malformed"))?;
        let key = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.hs.as_ref(),
            alg => self
                .public
                .iter()
                .find(|k| {
                    k.alg == alg && (k.kid.is_none() || header.kid.is_none() || k.kid == header.kid)
                })
                .map(|k| &k.key),
        }
        .ok_or_else(|| unauth("algorithm or key id not accepted"))?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => unauth("expired"),
                K::InvalidIssuer => unauth("wrong issuer"),
                K::InvalidAudience => unauth("wrong audience"),
                K::InvalidSignature => unauth("bad signature"),
                K::MissingRequiredClaim(c) => unauth(&format!("missing claim `{c}`")),
                K::ImmatureSignature => unauth("not valid yet"),
                _ => unauth("rejected"),
            }
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(unauth("empty `sub`"));
        }
        let exp = claims.exp;
        let tenancy = match claims.tenant.as_deref() {
            None | Some("") => Tenancy::Unrestricted,
            Some(t) => Tenancy::Only(TenantName::parse(t).map_err(|_| unauth("bad `tenant`"))?),
        };
        let caller = Caller {
            sub: claims.sub,
            scopes: claims
                .scope
                .split_whitespace()
                .filter_map(Scope::parse)
                .collect(),
            tenancy,
        };
        Ok((caller, exp))
    }
}

/// What to put in a minted caller JWT.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub sub: String,
    pub scope: String,
    pub tenant: Option<String>,
    pub ttl_secs: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Signs a caller JWT with the HS256 secret (the `jwt mint` subcommand and tests).
pub fn mint(secret: &SecretString, req: &MintRequest) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = Claims {
        sub: req.sub.clone(),
        exp: now + req.ttl_secs,
        iat: Some(now),
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
