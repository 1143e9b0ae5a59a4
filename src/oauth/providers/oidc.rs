//! OpenID Connect (`kind = "oidc"`): a provider known by its issuer alone. Its endpoints come from
//! the issuer's discovery document (`/.well-known/openid-configuration`, fetched on first use and
//! again after an hour or a failure) and id_tokens are checked against its JWKS (cached, fetched
//! again when a token names a key id the cached set lacks, at most every ten seconds). Client
//! authentication and revocation are plain OAuth 2.0 (`oauth2.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::dialect::{Dialect, Endpoints};
use super::oauth2::OAuth2;
use crate::config::AuthMethod;

/// Discovery documents are fetched again after this long.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// A JWKS is fetched again for an unknown key id at most this often.
const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The dialect of an OpenID Connect provider.
pub(super) fn dialect(auth_method: AuthMethod) -> Box<dyn Dialect> {
    Box::new(OAuth2 {
        auth_method,
        id_tokens: true,
    })
}

/// Why discovery or the key set could not be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DiscoveryError(pub String);

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    revocation_endpoint: Option<Url>,
    userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
}

/// An issuer's endpoints and keys, fetched when needed and kept.
#[derive(Debug)]
pub struct Discovery {
    issuer: Url,
    endpoints: Mutex<Option<(Arc<Endpoints>, Instant)>>,
    keys: Mutex<Option<(Arc<JwkSet>, Instant)>>,
}

impl Discovery {
    pub(super) fn new(issuer: Url) -> Self {
        Self {
            issuer,
            endpoints: Mutex::new(None),
            keys: Mutex::new(None),
        }
    }

    /// The issuer's endpoints, from its discovery document.
    pub async fn endpoints(
        &self,
        http: &reqwest::Client,
    ) -> Result<Arc<Endpoints>, DiscoveryError> {
        let mut cached = self.endpoints.lock().await;
        if let Some((endpoints, at)) = cached.as_ref() {
            if at.elapsed() < METADATA_MAX_AGE {
                return Ok(endpoints.clone());
            }
        }
        let mut url = self.issuer.clone();
        let path = format!(
            "{}/.well-known/openid-configuration",
            url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        let metadata: Metadata = fetch_json(http, url).await?;
        // OpenID Connect Discovery §4.3: the document's issuer must be the one asked about.
        if metadata.issuer.trim_end_matches('/') != self.issuer.as_str().trim_end_matches('/') {
            return Err(DiscoveryError(
                "the discovery document names another issuer".into(),
            ));
        }
        let endpoints = Arc::new(Endpoints {
            authorize: metadata.authorization_endpoint,
            token: metadata.token_endpoint,
            revoke: metadata.revocation_endpoint,
            userinfo: metadata.userinfo_endpoint,
            jwks: Some(metadata.jwks_uri),
        });
        *cached = Some((endpoints.clone(), Instant::now()));
        Ok(endpoints)
    }

    /// The issuer's signing keys; fetched again when none has the key id `kid`.
    pub async fn keys(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, DiscoveryError> {
        let mut cached = self.keys.lock().await;
        if let Some((set, at)) = cached.as_ref() {
            let known = kid.is_none_or(|k| set.find(k).is_some());
            if known || at.elapsed() < JWKS_MIN_INTERVAL {
                return Ok(set.clone());
            }
        }
        let url = self
            .endpoints(http)
            .await?
            .jwks
            .clone()
            .ok_or_else(|| DiscoveryError("the issuer names no jwks_uri".into()))?;
        let set: JwkSet = fetch_json(http, url).await?;
        let set = Arc::new(set);
        *cached = Some((set.clone(), Instant::now()));
        Ok(set)
    }
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: Url,
) -> Result<T, DiscoveryError> {
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|_| DiscoveryError("the issuer could not be reached".into()))?;
    if !response.status().is_success() {
        return Err(DiscoveryError(format!(
            "the issuer answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| DiscoveryError("the issuer's answer was cut short".into()))?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(DiscoveryError("the issuer's document is too large".into()));
    }
    serde_json::from_slice(&body)
        .map_err(|_| DiscoveryError("the issuer's document could not be read".into()))
}
