//! The providers the broker talks to: the [`Provider`] the OAuth code calls, built once at start
//! from the typed settings (`config::ProviderConfig`) into the [`ProviderRegistry`].
//!
//! What differs between kinds of provider is the `Dialect` (`dialect.rs`) each kind's file implements:
//! `zoho.rs` (data-center accounts servers, revoke by query string, `expires_in_sec`, comma-separated
//! scopes) and `oauth2.rs` (RFC 6749 / 7009: Basic or form client authentication). A new kind is
//! one more file here plus its arm in [`Provider::new`]; nothing outside this folder branches on
//! a provider's kind.

mod dialect;
mod oauth2;
mod oidc;
mod zoho;

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::RequestBuilder;
use url::Url;

pub use crate::config::ZOHO_DATA_CENTERS;
use crate::config::{KindConfig, ProviderConfig, RefreshBudget};
use crate::domain::{ProviderKey, Secret};
use dialect::Dialect;
pub use dialect::{ClientCredentials, Endpoints, IdentitySource};
pub use oidc::{Discovery, DiscoveryError};

/// A provider the broker can talk to.
#[derive(Debug)]
pub struct Provider {
    pub key: ProviderKey,
    /// What the login pages call it.
    pub display_name: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// What a login asks for when the connect session names no scopes.
    pub scopes: Vec<String>,
    /// What a connect session may ask for.
    pub allowed_scopes: Vec<String>,
    pub extra_authorize_params: Vec<(String, String)>,
    pub pkce: bool,
    /// RFC 9207 issuer identifier the login callback's `iss` must equal, when configured.
    pub issuer: Option<String>,
    pub refresh_budget: Option<RefreshBudget>,
    /// Refuse a login whose identity is not the session's user_name.
    pub require_identity_match: bool,
    /// Revoke the refresh token a new login for the same user replaces.
    pub revoke_replaced: bool,
    /// Where `/v1/proxy` may send this provider's tokens.
    pub api_base_urls: Vec<Url>,
    endpoints: EndpointSource,
    dialect: Box<dyn Dialect>,
}

/// Where a provider's endpoints come from.
#[derive(Debug)]
enum EndpointSource {
    /// Configured (or a Zoho data center's).
    Fixed(Arc<Endpoints>),
    /// The issuer's discovery document (OpenID Connect).
    Discovered(Box<Discovery>),
}

impl Provider {
    /// The provider a typed configuration describes.
    pub fn new(config: ProviderConfig) -> Self {
        let ProviderConfig { key, client, kind } = config;
        let fixed = |(e, d): (Endpoints, Box<dyn Dialect>)| (EndpointSource::Fixed(Arc::new(e)), d);
        let (endpoints, dialect) = match kind {
            KindConfig::Zoho { accounts_url } => fixed(zoho::build(accounts_url)),
            KindConfig::OAuth2 {
                authorize_url,
                token_url,
                revoke_url,
                auth_method,
            } => fixed(oauth2::build(
                Endpoints {
                    authorize: authorize_url,
                    token: token_url,
                    revoke: revoke_url,
                    userinfo: None,
                    jwks: None,
                },
                auth_method,
            )),
            KindConfig::Oidc {
                issuer,
                auth_method,
            } => (
                EndpointSource::Discovered(Box::new(Discovery::new(issuer))),
                oidc::dialect(auth_method),
            ),
        };
        // Configured parameters replace the kind's own of the same name.
        let mut extra: Vec<(String, String)> = dialect
            .fixed_authorize_params()
            .iter()
            .filter(|(k, _)| !client.extra_authorize_params.contains_key(*k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        extra.extend(client.extra_authorize_params);
        Self {
            key,
            display_name: client.display_name,
            client_id: client.client_id,
            client_secret: client.client_secret,
            scopes: client.scopes,
            allowed_scopes: client.allowed_scopes,
            extra_authorize_params: extra,
            pkce: client.pkce,
            issuer: client.issuer,
            refresh_budget: client.refresh_budget,
            require_identity_match: client.require_identity_match,
            revoke_replaced: client.revoke_replaced,
            api_base_urls: client.api_base_urls,
            endpoints,
            dialect,
        }
    }

    /// The provider's endpoints: configured, or from its issuer's discovery document.
    pub async fn endpoints(
        &self,
        http: &reqwest::Client,
    ) -> Result<Arc<Endpoints>, DiscoveryError> {
        match &self.endpoints {
            EndpointSource::Fixed(e) => Ok(e.clone()),
            EndpointSource::Discovered(d) => d.endpoints(http).await,
        }
    }

    /// The issuer's discovery, for OpenID Connect providers (their id_token keys).
    pub fn discovery(&self) -> Option<&Discovery> {
        match &self.endpoints {
            EndpointSource::Fixed(_) => None,
            EndpointSource::Discovered(d) => Some(d),
        }
    }

    /// How a login at this provider learns who logged in.
    pub fn identity_source(&self) -> IdentitySource {
        self.dialect.identity()
    }

    /// How the authorize URL joins the scopes (Zoho: commas; RFC 6749: spaces).
    pub fn scope_separator(&self) -> &'static str {
        self.dialect.scope_separator()
    }

    /// Whether a login callback or an exchange may name an accounts server for this provider.
    pub fn takes_accounts_server(&self) -> bool {
        self.dialect.accounts_server().is_some()
    }

    /// The `Authorization` header value that presents `access_token` to this provider's APIs.
    pub fn api_authorization(&self, access_token: &str) -> String {
        format!("{} {access_token}", self.dialect.api_auth_scheme())
    }

    /// Whether an API's 401 (its `WWW-Authenticate` and the start of its body) says the access
    /// token is invalid.
    pub fn says_token_invalid(&self, www_authenticate: Option<&str>, body: &[u8]) -> bool {
        self.dialect.says_token_invalid(www_authenticate, body)
    }

    pub(super) fn token_request(
        &self,
        request: RequestBuilder,
        creds: &ClientCredentials<'_>,
        form: Vec<(&'static str, String)>,
    ) -> RequestBuilder {
        self.dialect.token_request(request, creds, form)
    }

    pub(super) fn revoke_request(
        &self,
        http: &reqwest::Client,
        url: &Url,
        creds: &ClientCredentials<'_>,
        token: &Secret,
        hint: &str,
    ) -> RequestBuilder {
        self.dialect.revoke_request(http, url, creds, token, hint)
    }

    pub(super) fn lifetime<'a>(
        &self,
        expires_in: Option<&'a serde_json::Value>,
        expires_in_sec: Option<&'a serde_json::Value>,
    ) -> Option<&'a serde_json::Value> {
        self.dialect.lifetime(expires_in, expires_in_sec)
    }
}

/// Every provider the broker knows, by key. Built once at start.
#[derive(Debug, Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<Provider>>,
}

impl ProviderRegistry {
    /// The registry of `configs` (see `Settings::provider_configs`).
    pub fn new(configs: impl IntoIterator<Item = ProviderConfig>) -> Self {
        let providers = configs
            .into_iter()
            .map(|c| (c.key.to_string(), Arc::new(Provider::new(c))))
            .collect();
        Self { providers }
    }

    pub fn get(&self, key: &ProviderKey) -> Option<Arc<Provider>> {
        self.providers.get(key.as_str()).cloned()
    }

    /// The Zoho provider whose accounts server is `server` (the callback's `accounts-server`).
    /// Only known servers match, so a caller cannot send our client secret elsewhere.
    pub fn zoho_by_accounts_server(&self, server: &str) -> Option<Arc<Provider>> {
        let wanted = Url::parse(server).ok()?.origin();
        self.providers
            .values()
            .find(|p| {
                p.dialect
                    .accounts_server()
                    .is_some_and(|a| a.origin() == wanted)
            })
            .cloned()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The longest refresh-budget window of any provider (at least the window credentials
    /// without a budget are counted over): budgets older than that can be forgotten.
    pub fn longest_budget_window_ms(&self) -> i64 {
        self.providers
            .values()
            .filter_map(|p| p.refresh_budget.map(|b| b.window_ms))
            .fold(600_000, i64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderSettings, Settings};

    fn registry(tables: &[(&str, ProviderSettings)]) -> ProviderRegistry {
        let mut settings = Settings::defaults();
        for (key, table) in tables {
            settings.providers.insert((*key).to_owned(), table.clone());
        }
        ProviderRegistry::new(settings.provider_configs().unwrap())
    }

    fn get(r: &ProviderRegistry, key: &str) -> Arc<Provider> {
        r.get(&ProviderKey::parse(key).unwrap()).unwrap()
    }

    fn fixed(p: &Provider) -> &Endpoints {
        match &p.endpoints {
            EndpointSource::Fixed(e) => e,
            EndpointSource::Discovered(_) => panic!("{} is discovered", p.key),
        }
    }

    #[test]
    fn zoho_keeps_its_budget_and_says_who_logged_in() {
        let r = registry(&[]);
        let us = get(&r, "zoho-us");
        assert_eq!(us.display_name, "Zoho (US)");
        assert_eq!(
            us.refresh_budget,
            Some(RefreshBudget {
                max: 10,
                window_ms: 600_000
            })
        );
        assert!(us.revoke_replaced);
        assert_eq!(
            us.identity_source(),
            IdentitySource::UserInfo("Zoho-oauthtoken")
        );
    }

    #[test]
    fn an_oidc_provider_needs_only_its_issuer() {
        let r = registry(&[(
            "okta",
            ProviderSettings {
                kind: Some("oidc".into()),
                issuer: Some("https://example.okta.com".into()),
                client_id: Some("c".into()),
                refresh_budget: Some(30),
                ..Default::default()
            },
        )]);
        let okta = get(&r, "okta");
        assert!(okta.discovery().is_some());
        assert_eq!(okta.identity_source(), IdentitySource::IdToken);
        assert_eq!(okta.issuer.as_deref(), Some("https://example.okta.com"));
        assert_eq!(
            okta.scopes,
            ["openid", "email", "profile", "offline_access"]
        );
        assert!(okta
            .extra_authorize_params
            .contains(&("prompt".into(), "consent".into())));
        assert_eq!(okta.refresh_budget.map(|b| b.max), Some(30));
        assert_eq!(okta.display_name, "example.okta.com");
    }

    fn acme() -> ProviderSettings {
        ProviderSettings {
            kind: Some("oauth2".into()),
            authorize_url: Some("https://id.acme/auth".into()),
            token_url: Some("https://id.acme/token".into()),
            extra_authorize_params: BTreeMap::from([("prompt".into(), "consent".into())]),
            ..Default::default()
        }
    }

    #[test]
    fn every_zoho_data_center_is_built_in() {
        let r = registry(&[]);
        let eu = get(&r, "zoho-eu");
        let eu = fixed(&eu);
        assert_eq!(eu.token.as_str(), "https://accounts.zoho.eu/oauth/v2/token");
        assert_eq!(
            eu.revoke.as_ref().unwrap().as_str(),
            "https://accounts.zoho.eu/oauth/v2/token/revoke"
        );
        assert_eq!(
            eu.userinfo.as_ref().unwrap().as_str(),
            "https://accounts.zoho.eu/oauth/user/info"
        );
        let ca = r
            .zoho_by_accounts_server("https://accounts.zohocloud.ca")
            .unwrap();
        assert_eq!(ca.key.as_str(), "zoho-ca");
        assert!(r
            .zoho_by_accounts_server("https://evil.example.com")
            .is_none());
        assert_eq!(r.keys().count(), 8);
    }

    #[test]
    fn zoho_asks_for_offline_access_unless_told_otherwise() {
        let r = registry(&[(
            "zoho-us",
            ProviderSettings {
                extra_authorize_params: BTreeMap::from([
                    ("prompt".into(), "none".into()),
                    ("hd".into(), "example.com".into()),
                ]),
                ..Default::default()
            },
        )]);
        let us = get(&r, "zoho-us");
        let pairs: Vec<(&str, &str)> = us
            .extra_authorize_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("access_type", "offline"),
                ("hd", "example.com"),
                ("prompt", "none")
            ]
        );
        assert_eq!(us.scope_separator(), ",");
        assert!(us.takes_accounts_server());
    }

    #[test]
    fn a_generic_provider_is_no_zoho() {
        let r = registry(&[("acme", acme())]);
        let acme = get(&r, "acme");
        assert_eq!(fixed(&acme).authorize.as_str(), "https://id.acme/auth");
        assert!(fixed(&acme).revoke.is_none());
        assert_eq!(acme.identity_source(), IdentitySource::None);
        assert!(acme.refresh_budget.is_none(), "no budget unless configured");
        assert!(!acme.revoke_replaced);
        assert_eq!(acme.scope_separator(), " ");
        assert!(!acme.takes_accounts_server());
        assert!(acme.pkce);
        assert_eq!(
            acme.extra_authorize_params,
            [("prompt".to_owned(), "consent".to_owned())]
        );
    }

    #[test]
    fn zoho_reads_expires_in_sec_and_others_expires_in() {
        let r = registry(&[("acme", acme())]);
        let (ms, sec) = (serde_json::json!(3_600_000), serde_json::json!(3600));
        assert_eq!(
            get(&r, "zoho-us").lifetime(Some(&ms), Some(&sec)),
            Some(&sec)
        );
        assert_eq!(get(&r, "zoho-us").lifetime(Some(&sec), None), Some(&sec));
        assert_eq!(get(&r, "acme").lifetime(Some(&sec), Some(&ms)), Some(&sec));
        assert_eq!(get(&r, "acme").lifetime(None, Some(&sec)), None);
    }
}
