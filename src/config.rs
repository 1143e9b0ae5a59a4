//! Settings: `config/default.toml` (built in), then `config/{TOKEN_BROKER_ENV}.toml`, then
//! `TOKEN_BROKER__SECTION__KEY` environment variables; parsed once into typed structs. Unknown keys
//! and wrong types fail at start with the key named. The provider tables and their typed form
//! are in `config/providers.rs`.

mod providers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

pub use crate::webhooks::{EndpointSettings, WebhookSettings};
use serde::Deserialize;

pub use providers::{
    AuthMethod, ClientConfig, KindConfig, ProviderConfig, ProviderSettings, RefreshBudget,
    ZOHO_DATA_CENTERS,
};

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub crypto: CryptoSettings,
    pub auth: AuthSettings,
    pub tokens: TokenSettings,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub oauth: OAuthSettings,
    pub proxy: ProxySettings,
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    pub public_url: String,
    pub http_timeout_secs: u64,
    pub max_retries: usize,
    pub retry_min_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    pub state_ttl_secs: u64,
    /// Connect sessions (login starts) one caller may create per minute; 0: no limit.
    pub login_starts_per_minute: u32,
    pub refresh_lease_secs: u64,
    /// Origins (`https://app.example.com`) a connect session's `return_to` may point at; the
    /// broker's own origin is always allowed.
    #[serde(default)]
    pub return_to_origins: Vec<String>,
    pub default_min_validity_secs: u64,
    pub background: BackgroundRefreshSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackgroundRefreshSettings {
    pub enabled: bool,
    pub interval_secs: u64,
    pub ahead_secs: u64,
    pub used_within_secs: u64,
    pub concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    /// A client must send a request's headers within this long of starting it.
    pub header_read_timeout_secs: u64,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    pub tls: TlsSettings,
}

/// HTTPS served by the broker itself: both files, or neither (plain HTTP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; empty: no TLS.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May carry a password, so it is kept secret and never logged whole.
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoSettings {
    pub key_file: PathBuf,
    pub active_key_id: String,
    pub lookup_key: SecretString,
    #[serde(default)]
    pub keys: BTreeMap<String, SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub hs256_secret: SecretString,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
    /// The claim naming the caller's tenant (`"*"`: every tenant). Required in every JWT.
    pub tenant_claim: String,
    /// Refuse caller JWTs that live longer than this (`exp` − `iat`); 0: no limit.
    pub max_token_lifetime_secs: u64,
    /// A JWKS URL whose keys also verify caller JWTs (an identity provider's, Kubernetes'); empty:
    /// none.
    pub jwks_url: String,
    /// How long the JWKS is kept before it is fetched again (earlier for an unknown key id).
    pub jwks_cache_secs: u64,
    #[serde(default)]
    pub public_keys: Vec<PublicKeySettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeySettings {
    pub alg: String,
    #[serde(default)]
    pub pem: Option<String>,
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
    #[serde(default)]
    pub kid: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub default_provider: String,
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub access_cache_ttl_ms: u64,
    /// Tokens the access cache holds at most (the least used go first); size it to the tokens in
    /// use, or the hot path reads the database for the rest.
    pub access_cache_capacity: usize,
    /// How often each broker reads the change feed to drop cached copies of tokens another
    /// replica wrote (0: never; then only the time to live bounds their staleness).
    pub change_poll_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

/// `/v1/proxy`: calls to a provider's API made with a stored token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// How long the provider's API may take to answer (its status and headers), and the
    /// longest pause while its body streams.
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Largest request body sent on (413 beyond).
    pub max_request_bytes: u64,
    /// Largest answer body passed back (the answer is cut off beyond).
    pub max_response_bytes: u64,
    /// A request body up to this size is held, so the call can be sent again after a refresh
    /// when the API says the access token is invalid; a larger one streams through unheld.
    pub replay_buffer_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Successful access-token reads are folded into one row per caller and token over at most
    /// this long.
    pub read_window_ms: u64,
    /// Refused unauthenticated calls are counted into one row per route, reason and source
    /// address over at most this long.
    pub refused_window_secs: u64,
    /// Audit rows older than this are deleted (by a job running every `purge_interval_secs`);
    /// 0: kept forever.
    pub retention_days: u64,
    pub purge_interval_secs: u64,
}

/// `TOKEN_BROKER__PROVIDERS__ZOHO_US__CLIENT_ID` names provider `zoho-us` when `zoho_us` is not a
/// provider of its own and `zoho-us` is (built in or in a config file); every other name is kept.
fn provider_env_name(name: &str, known: &[String]) -> String {
    const PREFIX: &str = "TOKEN_BROKER__PROVIDERS__";
    let Some(rest) = name
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &name[PREFIX.len()..])
    else {
        return name.to_owned();
    };
    let (key, field) = rest.split_once("__").unwrap_or((rest, ""));
    let lower = key.to_ascii_lowercase();
    let hyphenated = lower.replace('_', "-");
    if lower == hyphenated || known.contains(&lower) || !known.contains(&hyphenated) {
        return name.to_owned();
    }
    if field.is_empty() {
        format!("{PREFIX}{hyphenated}")
    } else {
        format!("{PREFIX}{hyphenated}__{field}")
    }
}

/// A configuration problem, worded for the operator (it names the key).
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Loads the layered settings. `config_dir` holds `{environment}.toml` overrides.
    pub fn load(config_dir: &Path, environment: Option<&str>) -> Result<Self, ConfigError> {
        Self::load_with_env(config_dir, environment, None)
    }

    /// Like [`load`](Self::load), with `TOKEN_BROKER__…` variables taken from `vars` instead of
    /// the process environment (used to check deployment files).
    pub fn load_with_env(
        config_dir: &Path,
        environment: Option<&str>,
        vars: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(env) = environment.filter(|e| !e.is_empty()) {
            builder = builder.add_source(
                config::File::from(config_dir.join(format!("{env}.toml"))).required(true),
            );
        }
        // Provider keys named in the files (and the built-in presets) let an environment variable
        // spell a hyphenated key with underscores: a shell cannot export `…__ZOHO-US__…`.
        let mut known: Vec<String> = ZOHO_DATA_CENTERS
            .iter()
            .map(|(key, _)| (*key).to_owned())
            .collect();
        if let Ok(files) = builder.build_cloned() {
            if let Ok(table) = files.get_table("providers") {
                known.extend(table.into_keys());
            }
        }
        let vars = vars.unwrap_or_else(|| std::env::vars().collect());
        let vars = vars
            .into_iter()
            .map(|(name, value)| (provider_env_name(&name, &known), value))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("TOKEN_BROKER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars)),
        );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// Settings for tests and tools: the built-in defaults only.
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the built-in defaults parse")
    }

    /// The configured providers, typed (the built-in Zoho data centers included). Settings are
    /// plain data that tests and tools may change after loading, so this parses them anew; the
    /// service does so once, when it builds its provider registry.
    pub fn provider_configs(&self) -> Result<Vec<ProviderConfig>, ConfigError> {
        providers::provider_configs(&self.providers)
    }

    fn check(&self) -> Result<(), ConfigError> {
        crate::webhooks::Outbox::from_config(&self.webhooks.endpoints).map_err(ConfigError)?;
        let url = self.database.url.expose_secret();
        if crate::store::Backend::from_url(url).is_none() {
            return Err(ConfigError(
                "database.url: must start with sqlite:, postgres://, postgresql://, mysql:// or mariadb://"
                    .into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError(
                "database.max_connections: must be at least 1".into(),
            ));
        }
        if self.tokens.max_page_size == 0
            || self.tokens.default_page_size > self.tokens.max_page_size
        {
            return Err(ConfigError(
                "tokens.default_page_size: must be between 1 and tokens.max_page_size".into(),
            ));
        }
        crate::domain::ProviderKey::parse(self.tokens.default_provider.clone())
            .map_err(|e| ConfigError(format!("tokens.default_provider: {}", e.reason)))?;
        if !self.crypto.keys.is_empty() && self.crypto.lookup_key.expose_secret().is_empty() {
            return Err(ConfigError(
                "crypto.lookup_key: required when crypto.keys are configured".into(),
            ));
        }
        if !(250..=3_600_000).contains(&self.audit.read_window_ms) {
            return Err(ConfigError(
                "audit.read_window_ms: must be between 250 (a quarter second) and 3600000 (an hour)"
                    .into(),
            ));
        }
        if self.server.max_connections == 0
            || self.server.header_read_timeout_secs == 0
            || self.server.idle_timeout_secs == 0
        {
            return Err(ConfigError(
                "server.max_connections, server.header_read_timeout_secs and server.idle_timeout_secs: must be at least 1"
                    .into(),
            ));
        }
        if self.server.tls.cert_file.is_empty() != self.server.tls.key_file.is_empty() {
            return Err(ConfigError(
                "server.tls: give both cert_file and key_file, or neither".into(),
            ));
        }
        if self.audit.refused_window_secs == 0 || self.audit.purge_interval_secs == 0 {
            return Err(ConfigError(
                "audit.refused_window_secs and audit.purge_interval_secs: must be at least 1"
                    .into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|e| ConfigError(format!("log.filter: {e}")))?;
        if self.oauth.http_timeout_secs == 0 {
            return Err(ConfigError(
                "oauth.http_timeout_secs: must be at least 1".into(),
            ));
        }
        if self.oauth.background.concurrency == 0 {
            return Err(ConfigError(
                "oauth.background.concurrency: must be at least 1".into(),
            ));
        }
        url::Url::parse(&self.oauth.public_url)
            .map_err(|e| ConfigError(format!("oauth.public_url: {e}")))?;
        for origin in &self.oauth.return_to_origins {
            match url::Url::parse(origin) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" && u.query().is_none() && u.username().is_empty() => {}
                _ => {
                    return Err(ConfigError(format!(
                        "oauth.return_to_origins: `{origin}` is not an origin like https://app.example.com"
                    )))
                }
            }
        }
        let providers = self.provider_configs()?;
        if !providers
            .iter()
            .any(|p| p.key.as_str() == self.tokens.default_provider)
        {
            return Err(ConfigError(format!(
                "tokens.default_provider: `{}` is not a configured provider",
                self.tokens.default_provider
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hyphenated_provider_key_can_be_set_with_underscores() {
        let known = vec![
            "zoho-us".to_owned(),
            "my_idp".to_owned(),
            "acme-id".to_owned(),
        ];
        let name = |n: &str| provider_env_name(n, &known);
        assert_eq!(
            name("TOKEN_BROKER__PROVIDERS__ZOHO_US__CLIENT_ID"),
            "TOKEN_BROKER__PROVIDERS__zoho-us__CLIENT_ID"
        );
        assert_eq!(
            name("TOKEN_BROKER__PROVIDERS__ACME_ID__CLIENT_SECRET"),
            "TOKEN_BROKER__PROVIDERS__acme-id__CLIENT_SECRET"
        );
        // A provider whose own key has an underscore, one nobody configured, other sections.
        for kept in [
            "TOKEN_BROKER__PROVIDERS__MY_IDP__CLIENT_ID",
            "TOKEN_BROKER__PROVIDERS__NEW_ONE__KIND",
            "TOKEN_BROKER__DATABASE__URL",
            "PATH",
        ] {
            assert_eq!(name(kept), kept);
        }
    }

    #[test]
    fn provider_settings_from_a_shell_export() {
        let vars = [
            ("TOKEN_BROKER__PROVIDERS__ZOHO_US__CLIENT_ID", "1000.ABC"),
            (
                "TOKEN_BROKER__PROVIDERS__ZOHO_EU__ACCOUNTS_URL",
                "http://127.0.0.1:9/",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let s = Settings::load_with_env(Path::new("config"), None, Some(vars)).unwrap();
        assert_eq!(
            s.providers["zoho-us"].client_id.as_deref(),
            Some("1000.ABC")
        );
        assert_eq!(
            s.providers["zoho-eu"].accounts_url.as_deref(),
            Some("http://127.0.0.1:9/")
        );
        assert!(!s.providers.contains_key("zoho_us"));
    }

    #[test]
    fn defaults_parse() {
        let s = Settings::defaults();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.server.host, "127.0.0.1");
        assert!(s.database.url.expose_secret().starts_with("sqlite:"));
        s.check().unwrap();
    }
}
