//! The one error type of the service. Each variant knows its HTTP face (see `http::error`);
//! messages are safe to show a caller and never carry a secret.

use crate::crypto::CryptoError;
use crate::domain::InvalidField;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable caller credentials (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such token — or one of another tenant, which is answered the same way (404).
    #[error("token not found")]
    NotFound,
    /// A field of the request was refused (422).
    #[error(transparent)]
    InvalidField(#[from] InvalidField),
    /// The request as a whole is malformed (400).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The request conflicts with what is stored (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The provider no longer accepts the token's grant; a person must log in again (409).
    #[error("{0}")]
    NeedsReauth(String),
    /// The provider is down or slow and no stored token is good enough (503 + Retry-After).
    #[error("the OAuth provider is unavailable and no stored access token is valid long enough")]
    ProviderUnavailable { retry_after_secs: u64 },
    /// The token's refresh budget for the current window is used up (429 + Retry-After).
    #[error("this token was refreshed too often recently; the provider would lock the client out")]
    RefreshBudgetExhausted { retry_after_secs: u64 },
    /// The provider says this client sent too many requests; the broker backs off (429 +
    /// Retry-After). Never `needs_reauth`: the grant is fine, it is only asked to wait.
    #[error(
        "the OAuth provider is rate limiting this client; the broker backs off until Retry-After"
    )]
    ProviderRateLimited { retry_after_secs: u64 },
    /// The provider refused a request for a reason retrying will not fix (502).
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
