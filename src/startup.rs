//! Building the running service from settings: keys, database, router, listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::audit::AuditLog;
use crate::auth::Verifier;
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Settings};
use crate::crypto::{display_path, KeyRing, LocalKeyFile};
use crate::domain::ProviderKey;
use crate::http::{self, AppState, HttpLimits, Services};
use crate::oauth::{
    background, EngineSettings, OAuthClient, OAuthService, ProviderRegistry, RetryPolicy,
};
use crate::store::{ConnectOptions, Store};
use crate::tokens::TokenService;

/// The keys the service runs with, from config or the local key file.
pub struct Keys {
    pub ring: KeyRing,
    /// The HS256 secret for caller JWTs, if one is configured (or in the key file).
    pub hs256_secret: Option<SecretString>,
}

/// Resolves keys: configured `crypto.keys` win; otherwise the local key file is read or
/// created (mode 0600) and its path logged.
pub fn load_keys(settings: &Settings) -> Result<Keys, ConfigError> {
    let configured_hs =
        Some(settings.auth.hs256_secret.clone()).filter(|s| !s.expose_secret().is_empty());
    if !settings.crypto.keys.is_empty() {
        let ring = KeyRing::new(
            &settings.crypto.active_key_id,
            &settings.crypto.keys,
            &settings.crypto.lookup_key,
        )
        .map_err(|e| ConfigError(e.to_string()))?;
        return Ok(Keys {
            ring,
            hs256_secret: configured_hs,
        });
    }
    let path = &settings.crypto.key_file;
    let (file, created) =
        LocalKeyFile::load_or_create(path).map_err(|e| ConfigError(e.to_string()))?;
    if created {
        tracing::warn!(
            path = %display_path(path).display(),
            "created a local key file (mode 0600) holding the encryption key and the caller-JWT secret; \
             back it up: without it the stored tokens cannot be decrypted"
        );
    } else {
        tracing::info!(path = %display_path(path).display(), "using the local key file");
    }
    let keys = file
        .keys
        .iter()
        .map(|(k, v)| (k.clone(), SecretString::from(v.clone())))
        .collect();
    let ring = KeyRing::new(
        &file.active_key_id,
        &keys,
        &SecretString::from(file.lookup_key.clone()),
    )
    .map_err(|e| ConfigError(e.to_string()))?;
    Ok(Keys {
        ring,
        hs256_secret: configured_hs
            .or_else(|| Some(SecretString::from(file.jwt_hs256_secret.clone()))),
    })
}

/// Opens the database pool named by the settings.
pub fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(
        settings.database.url.expose_secret(),
        &ConnectOptions {
            max_connections: settings.database.max_connections,
            acquire_timeout: Duration::from_secs(settings.database.acquire_timeout_secs),
        },
    )
    .context("database.url: cannot open the database")
}

/// The token store alone (for the ops CLI): keys, database (migrated), no HTTP.
pub async fn open_token_service(settings: &Settings) -> anyhow::Result<TokenService> {
    let keys = load_keys(settings)?;
    let store = connect(settings)?;
    store
        .migrate()
        .await
        .context("database: migrations failed (is the database reachable?)")?;
    // The ops CLI calls no provider: it needs their keys, not a registry.
    let providers = settings.provider_configs()?;
    Ok(TokenService::new(
        store,
        Arc::new(keys.ring),
        Arc::new(SystemClock),
        ProviderKey::parse(settings.tokens.default_provider.clone())?,
        settings.tokens.default_page_size,
        settings.tokens.max_page_size,
    )
    .with_known_providers(providers.iter().map(|p| p.key.as_str())))
}

/// A bound, ready-to-run service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    limits: crate::server::ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    audit_retention: Option<tokio::task::JoinHandle<()>>,
    change_feed: Option<tokio::task::JoinHandle<()>>,
    webhook_delivery: Option<tokio::task::JoinHandle<()>>,
    store: Store,
    background: Option<tokio::task::JoinHandle<()>>,
    use_marks: tokio::task::JoinHandle<()>,
    audit_writer: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Builds the service with the wall clock.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds the service with the given clock (tests move time instead of sleeping).
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let keys = load_keys(settings)?;
        let verifier = Verifier::new(&settings.auth, keys.hs256_secret.as_ref())?;
        let store = connect(settings)?;
        if settings.database.migrate_on_start {
            store
                .migrate()
                .await
                .context("database: migrations failed (is the database reachable?)")?;
        }
        // Webhooks: the outbox rows each change carries, and the deliverer it wakes.
        let outbox = Arc::new(
            crate::webhooks::Outbox::from_config(&settings.webhooks.endpoints)
                .map_err(ConfigError)?,
        );
        let deliverer = crate::webhooks::delivery::Deliverer::new(
            store.clone(),
            outbox.clone(),
            clock.clone(),
            settings.webhooks.clone(),
        );
        let webhook_events = crate::webhooks::Events::new(outbox, deliverer.waker());
        let webhooks = webhook_events.clone();
        // The one place the registry is built; everything else asks the OAuth engine for it.
        let providers = ProviderRegistry::new(settings.provider_configs()?);
        let tokens = TokenService::new(
            store.clone(),
            Arc::new(keys.ring),
            clock,
            ProviderKey::parse(settings.tokens.default_provider.clone())?,
            settings.tokens.default_page_size,
            settings.tokens.max_page_size,
        )
        .with_known_providers(providers.keys())
        .with_webhooks(webhook_events)
        .with_access_cache(
            Duration::from_millis(settings.tokens.access_cache_ttl_ms),
            settings.tokens.access_cache_capacity,
        );
        let oauth_settings = &settings.oauth;
        let client = OAuthClient::new(
            Duration::from_secs(oauth_settings.http_timeout_secs),
            RetryPolicy {
                max_retries: oauth_settings.max_retries,
                min_delay: Duration::from_millis(oauth_settings.retry_min_delay_ms),
                max_delay: Duration::from_millis(oauth_settings.retry_max_delay_ms),
            },
        );
        let oauth = OAuthService::new(
            tokens.clone(),
            providers,
            client,
            EngineSettings {
                refresh_failures_before_event: settings.webhooks.refresh_failures_before_event,
                ..EngineSettings::from_config(oauth_settings)?
            },
        );
        let background = background::spawn(oauth.clone(), &oauth_settings.background);
        let webhook_delivery = deliverer.spawn();
        let change_feed = (settings.tokens.change_poll_ms > 0)
            .then(|| {
                tokens.spawn_change_feed(Duration::from_millis(settings.tokens.change_poll_ms))
            })
            .flatten();
        let use_marks = background::spawn_use_marks(oauth.clone());
        let (audit, audit_writer) = AuditLog::start(
            store.clone(),
            Duration::from_millis(settings.audit.read_window_ms),
            Duration::from_secs(settings.audit.refused_window_secs),
        );
        let audit_retention = (settings.audit.retention_days > 0).then(|| {
            let clock = tokens.clone();
            crate::audit::spawn_retention(
                store.clone(),
                move || clock.now_ms(),
                Duration::from_secs(settings.audit.retention_days * 86_400),
                Duration::from_secs(settings.audit.purge_interval_secs),
            )
        });
        crate::metrics::handle();
        let proxy = crate::proxy::Proxy::new(oauth.clone(), settings.proxy.clone());
        let state = AppState::new(Services {
            proxy,
            webhooks,
            tokens,
            oauth,
            verifier: Arc::new(verifier),
            audit,
        });
        let router = http::router(
            state,
            &HttpLimits {
                body_limit_bytes: settings.server.body_limit_bytes,
                request_timeout: Duration::from_secs(settings.server.request_timeout_secs),
            },
        );
        let tls = crate::server::tls_acceptor(
            &settings.server.tls.cert_file,
            &settings.server.tls.key_file,
        )
        .map_err(|e| ConfigError(format!("{e:#}")))?;
        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("server.host/server.port: cannot listen on {addr}"))?;
        Ok(Self {
            listener,
            router,
            limits: crate::server::ConnectionLimits::from_settings(&settings.server),
            tls,
            audit_retention,
            change_feed,
            webhook_delivery,
            store,
            background,
            use_marks,
            audit_writer,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(
            addr = %self.listener.local_addr()?,
            tls = self.tls.is_some(),
            backend = self.store.backend().name(),
            "token-broker listening"
        );
        let result = crate::server::serve(
            self.listener,
            self.router,
            self.limits,
            self.tls,
            shutdown,
            Duration::from_secs(30),
        )
        .await;
        if let Some(task) = self.background {
            task.abort();
        }
        if let Some(task) = self.audit_retention {
            task.abort();
        }
        if let Some(task) = self.change_feed {
            task.abort();
        }
        // An event being sent stays leased until the lease runs out, then is sent again.
        if let Some(task) = self.webhook_delivery {
            task.abort();
        }
        self.use_marks.abort();
        // The router (and with it every audit handle) is gone: the writer drains and ends.
        if tokio::time::timeout(Duration::from_secs(10), self.audit_writer)
            .await
            .is_err()
        {
            tracing::warn!("audit writer did not finish in time");
        }
        // Waits for connections still checked out; a task that never returns one must not keep
        // the process from ending.
        if tokio::time::timeout(Duration::from_secs(5), self.store.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections did not close in time");
        }
        result
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
