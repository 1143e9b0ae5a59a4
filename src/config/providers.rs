//! The `[providers.<key>]` settings: the file form operators write ([`ProviderSettings`], one flat
//! table whatever the kind), its typed form ([`ProviderConfig`]: a variant per `kind`, URLs parsed
//! as URLs, defaults applied) and the one conversion between them, whose errors name the key.
//!
//! Zoho's data centers are built-in presets here because they are configuration: they decide
//! which keys exist without a table and what a table without `kind` means. How each kind speaks
//! OAuth lives in `oauth/providers/`, which builds its providers from [`ProviderConfig`].

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::ConfigError;
use crate::domain::{ProviderKey, Secret};

/// Zoho's data centers, built in as providers: key and accounts server.
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

/// The API domains of each Zoho data center (its `api_domain`s: production, sandbox, developer
/// edition), the upstreams `/v1/proxy` may send a Zoho token to.
pub const ZOHO_API_DOMAINS: [(&str, &str); 8] = [
    ("zoho-us", "zohoapis.com"),
    ("zoho-eu", "zohoapis.eu"),
    ("zoho-in", "zohoapis.in"),
    ("zoho-au", "zohoapis.com.au"),
    ("zoho-cn", "zohoapis.com.cn"),
    ("zoho-jp", "zohoapis.jp"),
    ("zoho-ca", "zohoapis.ca"),
    ("zoho-sa", "zohoapis.sa"),
];

/// One `[providers.<key>]` table as written: a Zoho data center (built in, credentials
/// optional, `kind` may be left out) or a generic OAuth 2.0 provider (`kind = "oauth2"`).
/// `Settings::provider_configs` turns it into a [`ProviderConfig`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub kind: Option<String>,
    /// Zoho only: replaces the data center's accounts server (e.g. a test double).
    pub accounts_url: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub auth_method: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    pub pkce: Option<bool>,
    /// The provider's issuer identifier (RFC 9207). When set, the login callback requires an
    /// `iss` parameter equal to it, which stops mix-up attacks between providers; set it for
    /// providers that send `iss` (their metadata says
    /// `authorization_response_iss_parameter_supported`).
    pub issuer: Option<String>,
    /// What the login pages call the provider (default: the key, or "Zoho (US)" for a preset).
    pub display_name: Option<String>,
    /// Refreshes allowed per refresh credential per window, across replicas (0: no budget).
    /// Zoho presets default to 10 per 600 s (Zoho's own limit); other kinds to none.
    pub refresh_budget: Option<u32>,
    pub refresh_budget_window_secs: Option<u64>,
    /// Refuse to store a browser login whose verified identity is not the connect session's
    /// `user_name` (its subject, or its email ignoring case). Default false.
    pub require_identity_match: Option<bool>,
    /// Revoke the refresh token a new login for the same user replaces. Default true for Zoho
    /// (each Zoho refresh token is its own grant), false otherwise: most providers keep one grant
    /// per user and client, so revoking the old token would kill the new one too.
    pub revoke_replaced: Option<bool>,
    /// Scopes a connect session may ask for (default: `scopes`, plus `openid`, `email`,
    /// `profile` and `offline_access` for `oidc`).
    #[serde(default)]
    pub allowed_scopes: Vec<String>,
    /// The API base URLs `/v1/proxy` may send this provider's tokens to (scheme, host, port and
    /// an optional path). A token's `api_domain` picks one of them by origin; a token with none
    /// uses the first. Zoho presets: their data center's API domains; others: none (no proxy).
    #[serde(default)]
    pub api_base_urls: Vec<String>,
}

/// How the client authenticates at the token and revocation endpoints (`auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// What every kind of provider is configured with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub extra_authorize_params: BTreeMap<String, String>,
    /// Whether the browser login sends a PKCE challenge (default: on for `oauth2`, off for Zoho).
    pub pkce: bool,
    /// RFC 9207 issuer. Checked to be a URL but kept as written: the callback's `iss` must equal
    /// it character for character (RFC 9207 §2.4), and parsing would normalise it.
    pub issuer: Option<String>,
    /// What the login pages call the provider.
    pub display_name: String,
    /// The refresh budget per refresh credential, if any.
    pub refresh_budget: Option<RefreshBudget>,
    pub require_identity_match: bool,
    pub revoke_replaced: bool,
    /// The scopes a login may ask for.
    pub allowed_scopes: Vec<String>,
    /// Where `/v1/proxy` may send this provider's tokens.
    pub api_base_urls: Vec<Url>,
}

/// At most `max` refreshes per refresh credential per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBudget {
    pub max: i64,
    pub window_ms: i64,
}

/// Zoho's limit: 10 access tokens per refresh token per 10 minutes.
const ZOHO_BUDGET: RefreshBudget = RefreshBudget {
    max: 10,
    window_ms: 600_000,
};

/// One provider's settings, typed.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub key: ProviderKey,
    pub client: ClientConfig,
    pub kind: KindConfig,
}

/// What a provider's `kind` configures beyond [`ClientConfig`]. A new kind is one more variant
/// here (and its arm in `parse`) plus its file under `oauth/providers/`.
#[derive(Debug, Clone)]
pub enum KindConfig {
    /// `kind = "zoho"`, or a built-in data center's key with no `kind`.
    Zoho { accounts_url: Url },
    /// `kind = "oauth2"`: RFC 6749 / RFC 7009.
    OAuth2 {
        authorize_url: Url,
        token_url: Url,
        revoke_url: Option<Url>,
        auth_method: AuthMethod,
    },
    /// `kind = "oidc"`: OpenID Connect, configured from its issuer alone. The endpoints and keys
    /// come from the issuer's discovery document; the RFC 9207 issuer check is always on and the
    /// id_token of every login is verified.
    Oidc {
        issuer: Url,
        auth_method: AuthMethod,
    },
}

/// Every provider the settings describe, typed: the built-in Zoho data centers (each
/// overridable by a table of its key) and every other `[providers.<key>]` table.
pub(super) fn provider_configs(
    settings: &BTreeMap<String, ProviderSettings>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let empty = ProviderSettings::default();
    let mut configs = Vec::with_capacity(ZOHO_DATA_CENTERS.len() + settings.len());
    for (key, accounts) in ZOHO_DATA_CENTERS {
        let s = settings.get(key).unwrap_or(&empty);
        if s.kind.as_deref().is_some_and(|k| k != "zoho") {
            return Err(ConfigError(format!(
                "providers.{key}.kind: `{key}` is a built-in Zoho data center"
            )));
        }
        configs.push(zoho(key, Some(accounts), s)?);
    }
    for (key, s) in settings {
        if ZOHO_DATA_CENTERS.iter().any(|(k, _)| k == key) {
            continue;
        }
        configs.push(match s.kind.as_deref() {
            Some("oauth2") => oauth2(key, s)?,
            Some("oidc") => oidc(key, s)?,
            Some("zoho") => zoho(key, None, s)?,
            Some(other) => {
                return Err(ConfigError(format!(
                    "providers.{key}.kind: `{other}` is not \"oauth2\", \"oidc\" or \"zoho\""
                )))
            }
            None => {
                return Err(ConfigError(format!(
                    "providers.{key}.kind: required (\"oauth2\", \"oidc\" or \"zoho\")"
                )))
            }
        });
    }
    Ok(configs)
}

/// A Zoho provider; `preset` is the data center's accounts server for a built-in key.
fn zoho(
    key: &str,
    preset: Option<&str>,
    s: &ProviderSettings,
) -> Result<ProviderConfig, ConfigError> {
    let name = format!("providers.{key}");
    let accounts =
        s.accounts_url.as_deref().or(preset).ok_or_else(|| {
            ConfigError(format!("{name}.accounts_url: required for kind = \"zoho\""))
        })?;
    let accounts_url = parse_url(&format!("{name}.accounts_url"), accounts)?;
    let display = ZOHO_DATA_CENTERS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(k, _)| format!("Zoho ({})", k.trim_start_matches("zoho-").to_uppercase()))
        .unwrap_or_else(|| format!("Zoho ({key})"));
    Ok(ProviderConfig {
        key: provider_key(&name, key)?,
        client: client(
            &name,
            s,
            Defaults {
                pkce: false,
                display_name: display,
                budget: Some(ZOHO_BUDGET),
                revoke_replaced: true,
                scopes: &[],
                api_base_urls: zoho_api_bases(key),
            },
        )?,
        kind: KindConfig::Zoho { accounts_url },
    })
}

/// A Zoho data center's API domains, for a built-in key (none for another `kind = "zoho"`).
fn zoho_api_bases(key: &str) -> Vec<Url> {
    ZOHO_API_DOMAINS
        .iter()
        .filter(|(k, _)| *k == key)
        .flat_map(|(_, domain)| {
            ["www", "sandbox", "developer"]
                .map(|host| Url::parse(&format!("https://{host}.{domain}")).expect("a preset URL"))
        })
        .collect()
}

/// `kind = "oidc"`: the issuer is all it needs.
fn oidc(key: &str, s: &ProviderSettings) -> Result<ProviderConfig, ConfigError> {
    let name = format!("providers.{key}");
    for (field, set) in [
        ("authorize_url", s.authorize_url.is_some()),
        ("token_url", s.token_url.is_some()),
        ("revoke_url", s.revoke_url.is_some()),
        ("accounts_url", s.accounts_url.is_some()),
    ] {
        if set {
            return Err(ConfigError(format!(
                "{name}.{field}: not for kind = \"oidc\" (the issuer's discovery document names the endpoints)"
            )));
        }
    }
    let key = provider_key(&name, key)?;
    let issuer = s
        .issuer
        .as_deref()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ConfigError(format!("{name}.issuer: required for kind = \"oidc\"")))?;
    let issuer = parse_url(&format!("{name}.issuer"), issuer)?;
    let auth_method = auth_method(&name, s)?;
    let mut client = client(
        &name,
        s,
        Defaults {
            pkce: true,
            display_name: issuer.host_str().unwrap_or(key.as_str()).to_owned(),
            budget: None,
            revoke_replaced: false,
            scopes: &["openid", "email", "profile", "offline_access"],
            api_base_urls: Vec::new(),
        },
    )?;
    for scope in ["openid", "email", "profile", "offline_access"] {
        if !client.allowed_scopes.iter().any(|s| s == scope) {
            client.allowed_scopes.push(scope.to_owned());
        }
    }
    // Without prompt=consent, providers drop offline_access (OpenID Connect Core §11).
    if client.scopes.iter().any(|s| s == "offline_access") {
        client
            .extra_authorize_params
            .entry("prompt".into())
            .or_insert_with(|| "consent".into());
    }
    // RFC 9207 is always on for OpenID Connect providers: the issuer is known.
    client.issuer = Some(s.issuer.clone().unwrap_or_default());
    Ok(ProviderConfig {
        key,
        client,
        kind: KindConfig::Oidc {
            issuer,
            auth_method,
        },
    })
}

fn auth_method(name: &str, s: &ProviderSettings) -> Result<AuthMethod, ConfigError> {
    match s.auth_method.as_deref() {
        None | Some("client_secret_basic") => Ok(AuthMethod::Basic),
        Some("client_secret_post") => Ok(AuthMethod::Post),
        Some(other) => Err(ConfigError(format!(
            "{name}.auth_method: `{other}` is not client_secret_basic or client_secret_post"
        ))),
    }
}

fn oauth2(key: &str, s: &ProviderSettings) -> Result<ProviderConfig, ConfigError> {
    let name = format!("providers.{key}");
    let required = |field: &str, v: &Option<String>| {
        v.as_deref()
            .ok_or_else(|| ConfigError(format!("{name}.{field}: required for kind = \"oauth2\"")))
            .and_then(|v| parse_url(&format!("{name}.{field}"), v))
    };
    let auth_method = auth_method(&name, s)?;
    // Checked in the order the old registry did, so the first error named stays the same.
    let key = provider_key(&name, key)?;
    let authorize_url = required("authorize_url", &s.authorize_url)?;
    let token_url = required("token_url", &s.token_url)?;
    let revoke_url = s
        .revoke_url
        .as_deref()
        .map(|u| parse_url(&format!("{name}.revoke_url"), u))
        .transpose()?;
    let display_name = authorize_url.host_str().unwrap_or(key.as_str()).to_owned();
    Ok(ProviderConfig {
        key,
        client: client(
            &name,
            s,
            Defaults {
                pkce: true,
                display_name,
                budget: None,
                revoke_replaced: false,
                scopes: &[],
                api_base_urls: Vec::new(),
            },
        )?,
        kind: KindConfig::OAuth2 {
            authorize_url,
            token_url,
            revoke_url,
            auth_method,
        },
    })
}

fn provider_key(name: &str, key: &str) -> Result<ProviderKey, ConfigError> {
    ProviderKey::parse(key).map_err(|e| ConfigError(format!("{name}: {}", e.reason)))
}

/// What a kind of provider defaults to where its table is silent.
struct Defaults {
    pkce: bool,
    display_name: String,
    budget: Option<RefreshBudget>,
    revoke_replaced: bool,
    scopes: &'static [&'static str],
    api_base_urls: Vec<Url>,
}

/// The settings every kind shares; an empty string counts as not set (an unset env variable
/// in a compose file arrives as one).
fn client(name: &str, s: &ProviderSettings, d: Defaults) -> Result<ClientConfig, ConfigError> {
    let issuer = match s.issuer.as_deref().filter(|i| !i.is_empty()) {
        None => None,
        Some(i) => {
            parse_url(&format!("{name}.issuer"), i)?;
            Some(i.to_owned())
        }
    };
    let refresh_budget = match (s.refresh_budget, s.refresh_budget_window_secs) {
        (Some(0), _) => None,
        (None, None) => d.budget,
        (max, window) => {
            let window_ms = window
                .map(|w| w as i64 * 1000)
                .or(d.budget.map(|b| b.window_ms))
                .unwrap_or(600_000);
            if window_ms <= 0 {
                return Err(ConfigError(format!(
                    "{name}.refresh_budget_window_secs: must be at least 1"
                )));
            }
            let max = max
                .map(i64::from)
                .or(d.budget.map(|b| b.max))
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{name}.refresh_budget: required with refresh_budget_window_secs"
                    ))
                })?;
            Some(RefreshBudget { max, window_ms })
        }
    };
    let scopes = if s.scopes.is_empty() {
        d.scopes.iter().map(|s| (*s).to_owned()).collect()
    } else {
        s.scopes.clone()
    };
    let mut allowed_scopes = s.allowed_scopes.clone();
    for scope in &scopes {
        if !allowed_scopes.contains(scope) {
            allowed_scopes.push(scope.clone());
        }
    }
    if let Some(bad) = scopes
        .iter()
        .chain(&allowed_scopes)
        .find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ConfigError(format!(
            "{name}.scopes: `{bad}` is not a scope (no spaces)"
        )));
    }
    let api_base_urls = if s.api_base_urls.is_empty() {
        d.api_base_urls
    } else {
        let field = format!("{name}.api_base_urls");
        s.api_base_urls
            .iter()
            .map(|u| {
                let url = parse_url(&field, u)?;
                if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                    return Err(ConfigError(format!(
                        "{field}: `{u}` must be a scheme, host, port and path only"
                    )));
                }
                Ok(url)
            })
            .collect::<Result<_, _>>()?
    };
    Ok(ClientConfig {
        api_base_urls,
        display_name: s
            .display_name
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or(d.display_name),
        refresh_budget,
        require_identity_match: s.require_identity_match.unwrap_or(false),
        revoke_replaced: s.revoke_replaced.unwrap_or(d.revoke_replaced),
        allowed_scopes,
        client_id: s.client_id.clone().filter(|c| !c.is_empty()),
        client_secret: s
            .client_secret
            .as_ref()
            .map(|c| c.expose_secret().to_owned())
            .filter(|c| !c.is_empty())
            .map(Secret::new),
        scopes,
        extra_authorize_params: s.extra_authorize_params.clone(),
        pkce: s.pkce.unwrap_or(d.pkce),
        issuer,
    })
}

fn parse_url(name: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError(format!("{name}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError(format!("{name}: must be an http(s) URL")));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(tables: &[(&str, ProviderSettings)]) -> Result<Vec<ProviderConfig>, ConfigError> {
        provider_configs(
            &tables
                .iter()
                .map(|(k, s)| ((*k).to_owned(), s.clone()))
                .collect(),
        )
    }

    fn find<'a>(configs: &'a [ProviderConfig], key: &str) -> &'a ProviderConfig {
        configs.iter().find(|c| c.key.as_str() == key).unwrap()
    }

    #[test]
    fn every_zoho_data_center_is_built_in() {
        let all = configs(&[]).unwrap();
        assert_eq!(all.len(), ZOHO_DATA_CENTERS.len());
        let KindConfig::Zoho { accounts_url } = &find(&all, "zoho-ca").kind else {
            panic!("zoho-ca is a Zoho provider");
        };
        assert_eq!(accounts_url.as_str(), "https://accounts.zohocloud.ca/");
        assert!(!find(&all, "zoho-ca").client.pkce);
    }

    #[test]
    fn a_data_center_takes_kind_zoho_or_none_and_nothing_else() {
        let preset = |kind: Option<&str>| {
            configs(&[(
                "zoho-eu",
                ProviderSettings {
                    kind: kind.map(str::to_owned),
                    client_id: Some("1000.ABC".into()),
                    accounts_url: Some("http://127.0.0.1:9".into()),
                    ..Default::default()
                },
            )])
        };
        for kind in [None, Some("zoho")] {
            let all = preset(kind).unwrap();
            let eu = find(&all, "zoho-eu");
            assert_eq!(eu.client.client_id.as_deref(), Some("1000.ABC"));
            assert!(
                matches!(&eu.kind, KindConfig::Zoho { accounts_url } if accounts_url.as_str() == "http://127.0.0.1:9/")
            );
        }
        let err = preset(Some("oauth2")).unwrap_err();
        assert!(err.0.contains("providers.zoho-eu.kind"), "{err}");
    }

    #[test]
    fn another_zoho_provider_needs_its_accounts_server() {
        let zoho = |accounts_url: Option<&str>| {
            configs(&[(
                "zoho-proxy",
                ProviderSettings {
                    kind: Some("zoho".into()),
                    accounts_url: accounts_url.map(str::to_owned),
                    ..Default::default()
                },
            )])
        };
        let err = zoho(None).unwrap_err();
        assert!(err.0.contains("providers.zoho-proxy.accounts_url"), "{err}");
        assert!(zoho(Some("https://accounts-proxy.example")).is_ok());
    }

    #[test]
    fn generic_providers_need_their_urls() {
        let err = configs(&[(
            "acme",
            ProviderSettings {
                kind: Some("oauth2".into()),
                authorize_url: Some("https://id.acme/auth".into()),
                ..Default::default()
            },
        )])
        .unwrap_err();
        assert!(err.0.contains("providers.acme.token_url"), "{err}");
    }

    #[test]
    fn a_generic_provider_is_typed() {
        let all = configs(&[(
            "acme",
            ProviderSettings {
                kind: Some("oauth2".into()),
                authorize_url: Some("https://id.acme/auth".into()),
                token_url: Some("https://id.acme/token".into()),
                auth_method: Some("client_secret_post".into()),
                client_secret: Some(SecretString::from("")),
                issuer: Some("https://id.acme".into()),
                ..Default::default()
            },
        )])
        .unwrap();
        let acme = find(&all, "acme");
        assert!(acme.client.pkce, "PKCE is on by default for oauth2");
        assert!(
            acme.client.client_secret.is_none(),
            "an empty secret is none"
        );
        assert_eq!(acme.client.issuer.as_deref(), Some("https://id.acme"));
        assert!(matches!(
            &acme.kind,
            KindConfig::OAuth2 {
                auth_method: AuthMethod::Post,
                revoke_url: None,
                ..
            }
        ));
    }

    #[test]
    fn bad_values_are_named() {
        for (s, named) in [
            (
                ProviderSettings {
                    kind: Some("saml".into()),
                    ..Default::default()
                },
                "providers.acme.kind",
            ),
            (ProviderSettings::default(), "providers.acme.kind"),
            (
                ProviderSettings {
                    kind: Some("oauth2".into()),
                    authorize_url: Some("ftp://id.acme/auth".into()),
                    token_url: Some("https://id.acme/token".into()),
                    ..Default::default()
                },
                "providers.acme.authorize_url",
            ),
            (
                ProviderSettings {
                    kind: Some("oauth2".into()),
                    authorize_url: Some("https://id.acme/auth".into()),
                    token_url: Some("https://id.acme/token".into()),
                    auth_method: Some("private_key_jwt".into()),
                    ..Default::default()
                },
                "providers.acme.auth_method",
            ),
            (
                ProviderSettings {
                    kind: Some("oauth2".into()),
                    authorize_url: Some("https://id.acme/auth".into()),
                    token_url: Some("https://id.acme/token".into()),
                    issuer: Some("acme".into()),
                    ..Default::default()
                },
                "providers.acme.issuer",
            ),
        ] {
            let err = configs(&[("acme", s)]).unwrap_err();
            assert!(err.0.contains(named), "{named}: {err}");
        }
    }
}
