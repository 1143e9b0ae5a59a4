//! JSON Web Key Sets fetched from a URL — an OpenID provider's (id_tokens of logins) and the
//! caller keys of `auth.jwks_url` (service tokens from an identity provider or Kubernetes). A set
//! is cached, fetched again after its maximum age, and fetched again early when a token names a
//! key id the cached set lacks (a rotation) — at most once every ten seconds, so tokens with
//! invented key ids cannot make the broker hammer the issuer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::Algorithm;
use tokio::sync::Mutex;
use url::Url;

/// A key set is fetched again for an unknown key id at most this often.
const UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The largest document (discovery or key set) read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why a document could not be had; worded for logs and errors, never holding a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// One key set, cached.
#[derive(Debug)]
pub struct KeySetCache {
    max_age: Duration,
    cached: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    set: Option<(Arc<JwkSet>, Instant)>,
    /// When a token's unknown key id last made us fetch early.
    last_early_fetch: Option<Instant>,
}

impl KeySetCache {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The set at `url`, fetched again when it is older than the maximum age or (rate-limited)
    /// when no key has the id `kid`. One fetch at a time; callers meanwhile wait for it.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        url: &Url,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, FetchError> {
        let mut cached = self.cached.lock().await;
        if let Some((set, at)) = cached.set.as_ref() {
            let fresh = at.elapsed() < self.max_age;
            let known = kid.is_none_or(|k| set.find(k).is_some());
            let may_fetch_early = cached
                .last_early_fetch
                .is_none_or(|t| t.elapsed() >= UNKNOWN_KID_MIN_INTERVAL);
            if fresh && (known || !may_fetch_early) {
                return Ok(set.clone());
            }
            if fresh {
                cached.last_early_fetch = Some(Instant::now());
            }
        }
        match fetch_json::<JwkSet>(http, url.clone()).await {
            Ok(set) => {
                let set = Arc::new(set);
                cached.set = Some((set.clone(), Instant::now()));
                Ok(set)
            }
            // A set we had stays usable while its issuer is briefly unreachable.
            Err(e) => match cached.set.as_ref() {
                Some((set, _)) => {
                    tracing::warn!(error = %e, "could not fetch a key set again; using the cached one");
                    Ok(set.clone())
                }
                None => Err(e),
            },
        }
    }
}

/// The keys a token with key id `kid` may be signed with: that key, or every key without one.
pub fn candidates<'a>(set: &'a JwkSet, kid: Option<&str>) -> Vec<&'a Jwk> {
    match kid {
        Some(kid) => set.find(kid).into_iter().collect(),
        None => set.keys.iter().collect(),
    }
}

/// Public-key signature algorithms: the only ones a published key can verify (never a shared
/// secret or `none`).
pub fn is_public_key_algorithm(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    )
}

/// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`].
pub async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: Url,
) -> Result<T, FetchError> {
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|_| FetchError("the issuer could not be reached".into()))?;
    if !response.status().is_success() {
        return Err(FetchError(format!(
            "the issuer answered HTTP {}",
            response.status().as_u16()
        )));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(FetchError("the issuer's document is too large".into()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| FetchError("the issuer's answer was cut short".into()))?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(FetchError("the issuer's document is too large".into()));
    }
    serde_json::from_slice(&body)
        .map_err(|_| FetchError("the issuer's document could not be read".into()))
}
