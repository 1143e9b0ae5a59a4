//! The check of a caller JWT: algorithm and key (the HS256 secret, configured public keys, the
//! keys of `auth.jwks_url`), signature, claims, and the caller they name. Verdicts are remembered
//! by the JWT's hash until it expires (at most a minute), so services reusing one skip the work.

use std::collections::BTreeSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};

use super::{Caller, Scope, ALL_TENANTS};
use crate::config::{AuthSettings, ConfigError};
use crate::domain::TenantName;
use crate::error::{Error, Result};
use crate::tokens::Tenancy;

struct PublicKey {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Caller keys published as a JWKS (`auth.jwks_url`).
struct RemoteKeys {
    url: url::Url,
    cache: crate::jwks::KeySetCache,
    http: reqwest::Client,
}

/// Checks caller JWTs against the configured keys.
///
/// Claims: `sub` and `exp` are required; `nbf` and `exp` are checked with the leeway; `aud` may
/// be a string or an array; `iss`/`aud` must match when configured; the lifetime (`exp` − `iat`,
/// or − now without `iat`) may be capped. Scopes come from `scope` (space-separated, or an
/// array) or `scp`. The tenant claim (`auth.tenant_claim`) is required: a tenant name, or `"*"`
/// for every tenant; absent, empty or malformed is refused, so a forgotten claim mapper at an
/// identity provider can never widen what a caller sees.
pub struct Verifier {
    hs: Option<DecodingKey>,
    public: Vec<PublicKey>,
    remote: Option<RemoteKeys>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    tenant_claim: String,
    max_lifetime: Option<u64>,
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
            Some(s) => {
                check_hs256_secret(s.expose_secret())?;
                Some(DecodingKey::from_secret(s.expose_secret().as_bytes()))
            }
            None => None,
        };
        let mut public = Vec::new();
        for (i, k) in settings.public_keys.iter().enumerate() {
            public.push(public_key(&format!("auth.public_keys[{i}]"), k)?);
        }
        let remote = match non_empty(&settings.jwks_url) {
            None => None,
            Some(u) => {
                let url = url::Url::parse(&u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| ConfigError("auth.jwks_url: must be an http(s) URL".into()))?;
                Some(RemoteKeys {
                    url,
                    cache: crate::jwks::KeySetCache::new(std::time::Duration::from_secs(
                        settings.jwks_cache_secs.max(1),
                    )),
                    http: reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(10))
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .map_err(|e| ConfigError(format!("auth.jwks_url: {e}")))?,
                })
            }
        };
        if hs.is_none() && public.is_empty() && remote.is_none() {
            return Err(ConfigError(
                "auth: configure auth.hs256_secret, auth.public_keys or auth.jwks_url so callers can authenticate"
                    .into(),
            ));
        }
        let tenant_claim = settings.tenant_claim.trim().to_owned();
        if tenant_claim.is_empty() {
            return Err(ConfigError(
                "auth.tenant_claim: name the claim that holds the caller's tenant".into(),
            ));
        }
        Ok(Self {
            hs,
            public,
            remote,
            issuer: non_empty(&settings.issuer),
            audience: non_empty(&settings.audience),
            leeway: settings.leeway_secs,
            tenant_claim,
            max_lifetime: (settings.max_token_lifetime_secs > 0)
                .then_some(settings.max_token_lifetime_secs),
            verified: quick_cache::sync::Cache::new(10_000),
        })
    }

    /// Verifies a bearer token and returns the caller it names.
    pub async fn verify(&self, token: &str) -> Result<Caller> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some(v) = self.verified.get(&key) {
            if now <= v.exp + self.leeway && std::time::Instant::now() < v.until {
                return Ok(v.caller);
            }
            self.verified.remove(&key);
        }
        let (caller, exp) = self.verify_signature(token).await?;
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

    /// The keys a token with this header may be signed with.
    async fn keys_for(&self, header: &jsonwebtoken::Header) -> Result<Vec<DecodingKey>> {
        let unauth = |why: &str| Error::Unauthenticated(format!("invalid bearer token: {why}"));
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return self
                .hs
                .clone()
                .map(|k| vec![k])
                .ok_or_else(|| unauth("algorithm or key id not accepted"));
        }
        let mut keys: Vec<DecodingKey> = self
            .public
            .iter()
            .filter(|k| {
                k.alg == header.alg
                    && (k.kid.is_none() || header.kid.is_none() || k.kid == header.kid)
            })
            .map(|k| k.key.clone())
            .collect();
        if let Some(remote) = &self.remote {
            if crate::jwks::is_public_key_algorithm(header.alg) {
                match remote
                    .cache
                    .get(&remote.http, &remote.url, header.kid.as_deref())
                    .await
                {
                    Ok(set) => keys.extend(
                        crate::jwks::candidates(&set, header.kid.as_deref())
                            .into_iter()
                            .filter(|jwk| {
                                jwk.common
                                    .key_algorithm
                                    .is_none_or(|a| a.to_string() == format!("{:?}", header.alg))
                            })
                            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok()),
                    ),
                    Err(e) if keys.is_empty() => {
                        tracing::warn!(error = %e, "caller keys (auth.jwks_url) could not be fetched");
                        return Err(Error::CallerKeysUnavailable);
                    }
                    Err(_) => {}
                }
            }
        }
        if keys.is_empty() {
            return Err(unauth("algorithm or key id not accepted"));
        }
        Ok(keys)
    }

    /// The full check: algorithm, key, signature and claims. Returns the caller and `exp`.
    async fn verify_signature(&self, token: &str) -> Result<(Caller, u64)> {
        let unauth = |why: &str| Error::Unauthenticated(format!("invalid bearer token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauth("malformed"))?;
        let keys = self.keys_for(&header).await?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
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
        let mut last = unauth("bad signature");
        let mut claims = None;
        for key in &keys {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                key,
                &validation,
            ) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::ExpiredSignature => unauth("expired"),
                        K::InvalidIssuer => unauth("wrong issuer"),
                        K::InvalidAudience => unauth("wrong audience"),
                        K::InvalidSignature => unauth("bad signature"),
                        K::MissingRequiredClaim(c) => unauth(&format!("missing claim `{c}`")),
                        K::ImmatureSignature => unauth("not valid yet (nbf)"),
                        _ => unauth("rejected"),
                    };
                    // Another key can only help when this one's signature did not match.
                    if !matches!(e.kind(), K::InvalidSignature | K::InvalidAlgorithm) {
                        return Err(last);
                    }
                }
            }
        }
        let claims = claims.ok_or(last)?;
        self.caller_from(&claims)
    }

    /// The caller the verified claims name.
    fn caller_from(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(Caller, u64)> {
        use serde_json::Value;
        let unauth = |why: &str| Error::Unauthenticated(format!("invalid bearer token: {why}"));
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(unauth("empty `sub`")),
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| unauth("bad `exp`"))?;
        if let Some(max) = self.max_lifetime {
            let from = match claims.get("iat") {
                None => now_secs(),
                Some(v) => v.as_u64().ok_or_else(|| unauth("bad `iat`"))?,
            };
            if exp.saturating_sub(from) > max {
                return Err(unauth(&format!(
                    "it lives longer than the {max} s this broker accepts (auth.max_token_lifetime_secs)"
                )));
            }
        }
        let tenancy = match claims.get(&self.tenant_claim) {
            None => {
                return Err(unauth(&format!(
                    "missing claim `{}` (a tenant, or \"*\" for every tenant)",
                    self.tenant_claim
                )))
            }
            Some(Value::String(t)) if t == ALL_TENANTS => Tenancy::Unrestricted,
            Some(Value::String(t)) => Tenancy::Only(
                TenantName::parse(t.clone())
                    .map_err(|_| unauth(&format!("bad `{}`", self.tenant_claim)))?,
            ),
            Some(_) => return Err(unauth(&format!("bad `{}`", self.tenant_claim))),
        };
        let mut scopes = BTreeSet::new();
        for name in ["scope", "scp"] {
            match claims.get(name) {
                Some(Value::String(s)) => {
                    scopes.extend(s.split_whitespace().filter_map(Scope::parse));
                }
                Some(Value::Array(items)) => scopes.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .filter_map(Scope::parse),
                ),
                _ => {}
            }
        }
        Ok((
            Caller {
                sub,
                scopes,
                tenancy,
            },
            exp,
        ))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One configured public key.
fn public_key(name: &str, k: &crate::config::PublicKeySettings) -> Result<PublicKey, ConfigError> {
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
    Ok(PublicKey {
        alg,
        kid: k.kid.clone(),
        key,
    })
}

/// Refuses an HS256 secret anyone could guess: shorter than 32 bytes, or with too little
/// variety to be random (`"                                "`, `"aaaa…"`, `"abababab…"`): at
/// least 8 distinct characters and an estimated 80 bits, counting each character at the Shannon
/// entropy of the secret's own character frequencies (32 random hex digits estimate ~115).
pub fn check_hs256_secret(secret: &str) -> Result<(), ConfigError> {
    if secret.len() < MIN_HS256_SECRET_LEN {
        return Err(ConfigError(format!(
            "auth.hs256_secret: must be at least {MIN_HS256_SECRET_LEN} bytes"
        )));
    }
    if crate::crypto::estimated_entropy_bits(secret.as_bytes()) < 80.0
        || distinct(secret.as_bytes()) < 8
    {
        return Err(ConfigError(
            "auth.hs256_secret: too predictable (repeated or few distinct characters); use a random one, e.g. `token-broker keys generate`"
                .into(),
        ));
    }
    Ok(())
}

fn distinct(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}
