//! OpenID Connect (`kind = "oidc"`): a provider known by its issuer alone. Its endpoints come from
//! the issuer's discovery document (`/.well-known/openid-configuration`, fetched on first use and
//! again after an hour or a failure) and id_tokens are checked against its JWKS (`crate::jwks`). Client
//! authentication and revocation are plain OAuth 2.0 (`oauth2.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

pub use crate::jwks::FetchError as DiscoveryError;
use crate::jwks::{fetch_json, KeySetCache};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use super::dialect::{Dialect, Endpoints};
use super::oauth2::OAuth2;
use crate::config::AuthMethod;

/// Discovery documents are fetched again after this long.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);

/// The dialect of an OpenID Connect provider.
pub(super) fn dialect(auth_method: AuthMethod) -> Box<dyn Dialect> {
    Box::new(OAuth2 {
        auth_method,
        id_tokens: true,
    })
}

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
    keys: KeySetCache,
}

impl Discovery {
    pub(super) fn new(issuer: Url) -> Self {
        Self {
            issuer,
            endpoints: Mutex::new(None),
            keys: KeySetCache::new(METADATA_MAX_AGE),
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
        let url = self
            .endpoints(http)
            .await?
            .jwks
            .clone()
            .ok_or_else(|| DiscoveryError("the issuer names no jwks_uri".into()))?;
        self.keys.get(http, &url, kid).await
    }
}
