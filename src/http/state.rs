//! What every handler can reach: the services behind one shared [`AppState`].

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::auth::Verifier;
use crate::oauth::OAuthService;
use crate::proxy::Proxy;
use crate::tokens::TokenService;

/// What every handler can reach. One `Arc`: axum clones the state for every request.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The services behind [`AppState`].
pub struct Services {
    pub tokens: TokenService,
    pub oauth: OAuthService,
    /// Calls to providers' APIs with stored tokens (`/v1/proxy`).
    pub proxy: Proxy,
    /// The webhook outbox's deliverer, to wake (`None` without endpoints).
    pub webhooks: Option<crate::webhooks::Events>,
    pub verifier: Arc<Verifier>,
    pub audit: AuditLog,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
