//! The OAuth engine: valid access tokens on demand (refreshing with single flight across
//! replicas), code exchange, the browser login flow, revocation and background refresh.

mod access;
pub mod background;
pub mod client;
mod connect;
mod identity;
mod login;
pub mod providers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use client::{OAuthClient, ProviderError, RetryPolicy, TokenGrant};
pub use connect::{
    CallbackParams, ConnectRequest, LoginFailure, LoginResult, OpenResult, RETURN_TO_MAX,
};
pub use login::ExchangeRequest;
pub use providers::{Provider, ProviderRegistry};

use crate::config::OAuthSettings;
use crate::domain::{Secret, Token};
use crate::error::{Error, Result};
use crate::tokens::TokenService;

/// The engine's tunables, in the units the code uses.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub public_url: url::Url,
    pub state_ttl_ms: i64,
    pub lease_ms: i64,
    pub default_min_validity_ms: i64,
    /// Where a connect session's `return_to` may point: these origins and `public_url`'s own.
    pub return_to_origins: Vec<url::Origin>,
    /// Connect sessions one caller may create per minute (`None`: no limit).
    pub login_starts_per_minute: Option<std::num::NonZeroU32>,
    /// Failed refreshes of a token in a row that make a `token.refresh_failing` event (0: never).
    pub refresh_failures_before_event: u32,
}

impl EngineSettings {
    pub fn from_config(s: &OAuthSettings) -> anyhow::Result<Self> {
        let public_url = url::Url::parse(&s.public_url)?;
        let mut return_to_origins = vec![public_url.origin()];
        for origin in &s.return_to_origins {
            return_to_origins.push(url::Url::parse(origin)?.origin());
        }
        Ok(Self {
            public_url,
            state_ttl_ms: (s.state_ttl_secs * 1000) as i64,
            lease_ms: (s.refresh_lease_secs * 1000) as i64,
            default_min_validity_ms: (s.default_min_validity_secs * 1000) as i64,
            return_to_origins,
            login_starts_per_minute: std::num::NonZeroU32::new(s.login_starts_per_minute),
            refresh_failures_before_event: 3,
        })
    }
}

/// The OAuth engine (cheap to clone).
#[derive(Clone)]
pub struct OAuthService {
    inner: Arc<Inner>,
}

struct Inner {
    tokens: TokenService,
    providers: ProviderRegistry,
    client: OAuthClient,
    settings: EngineSettings,
    /// One async mutex per token being refreshed in this process: concurrent callers queue here
    /// and find the fresh token when their turn comes; the database lease covers other processes.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Connect sessions created, per caller (tenant and `sub`), against the per-minute limit.
    login_starts: Option<governor::DefaultKeyedRateLimiter<String>>,
    /// Failed refreshes in a row, per token (see [`OAuthService::count_refresh_outcome`]).
    failing: Mutex<HashMap<String, u32>>,
}

impl OAuthService {
    pub fn new(
        tokens: TokenService,
        providers: ProviderRegistry,
        client: OAuthClient,
        settings: EngineSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                tokens,
                providers,
                client,
                login_starts: settings
                    .login_starts_per_minute
                    .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
                settings,
                locks: Mutex::new(HashMap::new()),
                failing: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Counts a login start of `caller`; `RateLimited` when it has started too many this minute.
    pub(crate) fn check_login_start(&self, caller: String) -> Result<()> {
        let Some(limiter) = &self.inner.login_starts else {
            return Ok(());
        };
        // Callers that stopped starting logins are forgotten now and then, so the map stays as
        // small as the set of active callers.
        if limiter.len() > 1_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&caller).map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::RateLimited {
                retry_after_secs: wait.as_secs() + 1,
            }
        })
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    pub fn providers(&self) -> &ProviderRegistry {
        &self.inner.providers
    }

    pub(crate) fn tokens(&self) -> &TokenService {
        &self.inner.tokens
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.tokens.now_ms()
    }

    fn provider_for(&self, token: &Token) -> Result<Arc<Provider>> {
        self.inner.providers.get(&token.provider).ok_or_else(|| {
            Error::Provider(format!(
                "provider `{}` is not configured on this broker",
                token.provider
            ))
        })
    }
}

/// The client credentials for calls about `token`: its own (Zoho self-clients store them per
/// token), else the provider's configured ones.
fn credentials<'a>(
    token: &'a Token,
    provider: &'a Provider,
) -> Result<(String, Option<&'a Secret>)> {
    match (&token.client_id, &token.client_secret) {
        (Some(id), Some(secret)) => Ok((id.clone(), Some(secret))),
        (Some(id), None) => {
            let secret = provider
                .client_secret
                .as_ref()
                .filter(|_| provider.client_id.as_deref() == Some(id.as_str()));
            Ok((id.clone(), secret))
        }
        (None, _) => provider
            .client_id
            .clone()
            .map(|id| (id, provider.client_secret.as_ref()))
            .ok_or_else(|| {
                Error::Provider(format!(
                    "no client_id: the token has none and providers.{}.client_id is not configured",
                    provider.key
                ))
            }),
    }
}

/// How long to tell callers to wait when a provider is down.
const PROVIDER_RETRY_AFTER_SECS: u64 = 5;

/// How long the broker stays away from a provider that said "too many requests" without saying
/// for how long (Zoho never does).
const RATE_LIMIT_BACKOFF_SECS: u64 = 60;

/// Keep waiting for another process's refresh at most this long past its lease.
const WAIT_SLACK: Duration = Duration::from_secs(5);
