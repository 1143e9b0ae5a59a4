//! OAuth providers: the built-in Zoho data centers and generic OAuth 2.0 providers from config.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::ExposeSecret;
use url::Url;

use crate::config::{ConfigError, ProviderSettings};
use crate::domain::{ProviderKey, Secret};

/// Zoho's data centers: provider key and accounts server.
pub const ZOHO_DATA_CENTERS: [(&str, &str); 8] = [
    ("zoho-us", "https://accounts.zoho.com"),
    ("zoho-eu", "https://accounts.zoho.eu"),
    ("zoho-in", "https://accounts.zoho.in"),
    ("zoho-au", "https://accounts.zoho.com.au"),
    ("zoho-cn", "https://accounts.zoho.com.cn"),
    ("zoho-jp", "https://accounts.zoho.jp"),
    ("zoho-ca", "https://accounts.zohocloud.ca"),
    ("zoho-sa", "https://accounts.zoho.sa"),
];

/// Which dialect of OAuth 2.0 a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Errors as HTTP 200 `{"error": …}`, no rotated refresh token, `api_domain`, data centers.
    Zoho,
    /// RFC 6749 / 7009.
    OAuth2,
}

/// How the client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// A provider the broker can talk to.
#[derive(Debug)]
pub struct Provider {
    pub key: ProviderKey,
    pub kind: ProviderKind,
    pub authorize_url: Url,
    pub token_url: Url,
    pub revoke_url: Option<Url>,
    /// Zoho: the accounts server (origin) of this data center.
    pub accounts_url: Option<Url>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub auth_method: AuthMethod,
    pub scopes: Vec<String>,
    pub extra_authorize_params: Vec<(String, String)>,
    pub pkce: bool,
    /// RFC 9207 issuer identifier the login callback's `iss` must equal, when configured.
    pub issuer: Option<String>,
}

fn parse_url(name: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError(format!("{name}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError(format!("{name}: must be an http(s) URL")));
    }
    Ok(url)
}

fn zoho(key: &str, accounts: &str, s: &ProviderSettings) -> Result<Provider, ConfigError> {
    let name = format!("providers.{key}");
    let accounts = parse_url(
        &format!("{name}.accounts_url"),
        s.accounts_url.as_deref().unwrap_or(accounts),
    )?;
    let at = |path: &str| accounts.join(path).expect("static path");
    let mut extra = vec![
        ("access_type".to_owned(), "offline".to_owned()),
        ("prompt".to_owned(), "consent".to_owned()),
    ];
    for (k, v) in &s.extra_authorize_params {
        extra.retain(|(ek, _)| ek != k);
        extra.push((k.clone(), v.clone()));
    }
    Ok(Provider {
        key: ProviderKey::parse(key).map_err(|e| ConfigError(format!("{name}: {}", e.reason)))?,
        kind: ProviderKind::Zoho,
        authorize_url: at("/oauth/v2/auth"),
        token_url: at("/oauth/v2/token"),
        revoke_url: Some(at("/oauth/v2/token/revoke")),
        accounts_url: Some(accounts.clone()),
        client_id: s.client_id.clone().filter(|c| !c.is_empty()),
        client_secret: secret(s),
        auth_method: AuthMethod::Post,
        scopes: s.scopes.clone(),
        extra_authorize_params: extra,
        pkce: s.pkce.unwrap_or(false),
        issuer: issuer(&name, s)?,
    })
}

fn issuer(name: &str, s: &ProviderSettings) -> Result<Option<String>, ConfigError> {
    match s.issuer.as_deref().filter(|i| !i.is_empty()) {
        None => Ok(None),
        Some(i) => parse_url(&format!("{name}.issuer"), i).map(|_| Some(i.to_owned())),
    }
}

fn secret(s: &ProviderSettings) -> Option<Secret> {
    s.client_secret
        .as_ref()
        .map(|c| c.expose_secret().to_owned())
        .filter(|c| !c.is_empty())
        .map(Secret::new)
}

fn oauth2(key: &str, s: &ProviderSettings) -> Result<Provider, ConfigError> {
    let name = format!("providers.{key}");
    let required = |field: &str, v: &Option<String>| {
        v.as_deref()
            .ok_or_else(|| ConfigError(format!("{name}.{field}: required for kind = \"oauth2\"")))
            .and_then(|v| parse_url(&format!("{name}.{field}"), v))
    };
    let auth_method = match s.auth_method.as_deref() {
        None | Some("client_secret_basic") => AuthMethod::Basic,
        Some("client_secret_post") => AuthMethod::Post,
        Some(other) => {
            return Err(ConfigError(format!(
                "{name}.auth_method: `{other}` is not client_secret_basic or client_secret_post"
            )))
        }
    };
    Ok(Provider {
        key: ProviderKey::parse(key).map_err(|e| ConfigError(format!("{name}: {}", e.reason)))?,
        kind: ProviderKind::OAuth2,
        authorize_url: required("authorize_url", &s.authorize_url)?,
        token_url: required("token_url", &s.token_url)?,
        revoke_url: s
            .revoke_url
            .as_deref()
            .map(|u| parse_url(&format!("{name}.revoke_url"), u))
            .transpose()?,
        accounts_url: None,
        client_id: s.client_id.clone().filter(|c| !c.is_empty()),
        client_secret: secret(s),
        auth_method,
        scopes: s.scopes.clone(),
        extra_authorize_params: s
            .extra_authorize_params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        pkce: s.pkce.unwrap_or(true),
        issuer: issuer(&name, s)?,
    })
}

/// Every provider the broker knows, by key.
#[derive(Debug, Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<Provider>>,
}

impl ProviderRegistry {
    /// The Zoho presets, each overridable, plus the configured generic providers.
    pub fn from_settings(
        settings: &BTreeMap<String, ProviderSettings>,
    ) -> Result<Self, ConfigError> {
        let mut providers = BTreeMap::new();
        let empty = ProviderSettings::default();
        for (key, accounts) in ZOHO_DATA_CENTERS {
            let s = settings.get(key).unwrap_or(&empty);
            providers.insert(key.to_owned(), Arc::new(zoho(key, accounts, s)?));
        }
        for (key, s) in settings {
            if ZOHO_DATA_CENTERS.iter().any(|(k, _)| k == key) {
                if s.kind.as_deref().is_some_and(|k| k != "zoho") {
                    return Err(ConfigError(format!(
                        "providers.{key}.kind: `{key}` is a built-in Zoho data center"
                    )));
                }
                continue;
            }
            let provider = match s.kind.as_deref() {
                Some("oauth2") => oauth2(key, s)?,
                Some("zoho") => {
                    let accounts = s.accounts_url.as_deref().ok_or_else(|| {
                        ConfigError(format!(
                            "providers.{key}.accounts_url: required for kind = \"zoho\""
                        ))
                    })?;
                    zoho(key, accounts, s)?
                }
                Some(other) => {
                    return Err(ConfigError(format!(
                        "providers.{key}.kind: `{other}` is not \"oauth2\" or \"zoho\""
                    )))
                }
                None => {
                    return Err(ConfigError(format!(
                        "providers.{key}.kind: required (\"oauth2\" or \"zoho\")"
                    )))
                }
            };
            providers.insert(key.clone(), Arc::new(provider));
        }
        Ok(Self { providers })
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
                p.kind == ProviderKind::Zoho
                    && p.accounts_url
                        .as_ref()
                        .is_some_and(|a| a.origin() == wanted)
            })
            .cloned()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zoho_data_center_is_built_in() {
        let r = ProviderRegistry::from_settings(&BTreeMap::new()).unwrap();
        let eu = r.get(&ProviderKey::parse("zoho-eu").unwrap()).unwrap();
        assert_eq!(
            eu.token_url.as_str(),
            "https://accounts.zoho.eu/oauth/v2/token"
        );
        assert_eq!(
            eu.revoke_url.as_ref().unwrap().as_str(),
            "https://accounts.zoho.eu/oauth/v2/token/revoke"
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
    fn generic_providers_need_their_urls() {
        let s = BTreeMap::from([(
            "acme".to_string(),
            ProviderSettings {
                kind: Some("oauth2".into()),
                authorize_url: Some("https://id.acme/auth".into()),
                ..Default::default()
            },
        )]);
        let err = ProviderRegistry::from_settings(&s).unwrap_err();
        assert!(err.0.contains("providers.acme.token_url"), "{err}");
    }
}
