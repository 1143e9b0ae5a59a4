//! The one error type of the service and the one list of error codes it answers with. Each
//! [`ErrorCode`] carries its HTTP status, its wire code and a default text; each [`Error`]
//! variant names its code ([`Error::code`]); `http::error` turns both into answers. Messages are
//! safe to show a caller and never carry a secret.

use axum::http::StatusCode;

use crate::crypto::CryptoError;
use crate::domain::InvalidField;
use crate::store::StoreError;

/// Every code an error answer (or the audit trail's `outcome`) can carry. The wire codes and
/// their statuses are part of the HTTP contract: change none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // The caller.
    Unauthorized,
    Forbidden,
    // The resource and its state.
    NotFound,
    Conflict,
    NeedsReauth,
    // The request's shape, as the framework or the extractors see it.
    BadRequest,
    MethodNotAllowed,
    Timeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnreadableBody,
    MalformedJson,
    InvalidQuery,
    InvalidField,
    InvalidId,
    InvalidCursor,
    ConfirmationRequired,
    // The exchange and the browser login.
    InvalidGrant,
    InvalidState,
    InvalidAccountsServer,
    InvalidIssuer,
    LoginRefused,
    InvalidCode,
    /// An OpenID Connect id_token that is not valid for this login.
    InvalidIdToken,
    /// The outcome of a failed browser login in the audit trail; the page itself answers with
    /// the status of the cause (400, 502, 503 or 500).
    LoginFailed,
    // The provider.
    ProviderError,
    ProviderUnavailable,
    ProviderRateLimited,
    RefreshBudgetExhausted,
    // The provider's API, through the proxy.
    UpstreamNotAllowed,
    UpstreamUnavailable,
    UpstreamTimeout,
    // The broker itself.
    /// Too many requests of one kind from one caller (login starts).
    RateLimited,
    /// The caller keys of `auth.jwks_url` could not be fetched.
    CallerKeysUnavailable,
    DatabaseUnavailable,
    Internal,
}

impl ErrorCode {
    /// Status, wire code and default text: the one table of the error contract.
    #[rustfmt::skip]
    const fn parts(self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Unauthorized => (S::UNAUTHORIZED, "unauthorized", "missing or invalid caller JWT"),
            Self::Forbidden => (S::FORBIDDEN, "forbidden", "the caller may not do this"),
            Self::NotFound => (S::NOT_FOUND, "not_found", "token not found"),
            Self::Conflict => (S::CONFLICT, "conflict", "the write conflicts with a stored token"),
            Self::NeedsReauth => (S::CONFLICT, "needs_reauth", "the user must log in again"),
            Self::BadRequest => (S::BAD_REQUEST, "bad_request", "the request could not be handled"),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method"),
            Self::Timeout => (S::REQUEST_TIMEOUT, "timeout", "the request took too long"),
            Self::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is larger than the broker accepts"),
            Self::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the body as Content-Type: application/json"),
            Self::UnreadableBody => (S::BAD_REQUEST, "unreadable_body", "the request body could not be read"),
            Self::MalformedJson => (S::BAD_REQUEST, "malformed_json", "the body is not valid JSON"),
            Self::InvalidQuery => (S::BAD_REQUEST, "invalid_query", "the query string could not be read"),
            Self::InvalidField => (S::UNPROCESSABLE_ENTITY, "invalid_field", "a field of the request was refused"),
            Self::InvalidId => (S::BAD_REQUEST, "invalid_id", "id: not a token id"),
            Self::InvalidCursor => (S::BAD_REQUEST, "invalid_cursor", "cursor: not a cursor this service issued"),
            Self::ConfirmationRequired => (S::BAD_REQUEST, "confirmation_required", "deleting every token needs ?confirm=all"),
            Self::InvalidGrant => (S::BAD_REQUEST, "invalid_grant", "the provider rejected the grant token; it may be used up or expired"),
            Self::InvalidState => (S::BAD_REQUEST, "invalid_state", "this login link is unknown, expired or already used; start the login again"),
            Self::InvalidAccountsServer => (S::BAD_REQUEST, "invalid_accounts_server", "not a known Zoho accounts server"),
            Self::InvalidIssuer => (S::BAD_REQUEST, "invalid_issuer", "the provider's answer names another issuer (iss) than the one the login went to"),
            Self::LoginRefused => (S::BAD_REQUEST, "login_refused", "the provider refused the login"),
            Self::InvalidCode => (S::BAD_REQUEST, "invalid_code", "the provider sent no code"),
            Self::InvalidIdToken => (S::BAD_REQUEST, "invalid_id_token", "the provider's id_token is not valid for this login"),
            Self::LoginFailed => (S::BAD_REQUEST, "login_failed", "the browser login failed"),
            Self::ProviderError => (S::BAD_GATEWAY, "provider_error", "the OAuth provider refused the request"),
            Self::ProviderUnavailable => (S::SERVICE_UNAVAILABLE, "provider_unavailable", "the OAuth provider is unavailable and no stored access token is valid long enough"),
            Self::ProviderRateLimited => (S::TOO_MANY_REQUESTS, "provider_rate_limited", "the OAuth provider is rate limiting this client; the broker backs off until Retry-After"),
            Self::RefreshBudgetExhausted => (S::TOO_MANY_REQUESTS, "refresh_budget_exhausted", "this token was refreshed too often recently; the provider would lock the client out"),
            Self::UpstreamNotAllowed => (S::FORBIDDEN, "upstream_not_allowed", "the token's api_domain is not an API its provider allows"),
            Self::UpstreamUnavailable => (S::BAD_GATEWAY, "upstream_unavailable", "the provider's API could not be reached"),
            Self::UpstreamTimeout => (S::GATEWAY_TIMEOUT, "upstream_timeout", "the provider's API did not answer in time"),
            Self::RateLimited => (S::TOO_MANY_REQUESTS, "rate_limited", "too many requests of this kind from this caller; try again after Retry-After"),
            Self::CallerKeysUnavailable => (S::SERVICE_UNAVAILABLE, "caller_keys_unavailable", "the keys caller JWTs are checked with could not be fetched; try again shortly"),
            Self::DatabaseUnavailable => (S::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable; try again shortly"),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal", "internal error; see the broker's log for details"),
        }
    }

    pub const fn status(self) -> StatusCode {
        self.parts().0
    }

    /// The snake_case code callers match on (`"error"` of the body, `outcome` of the audit).
    pub const fn as_str(self) -> &'static str {
        self.parts().1
    }

    /// The sentence sent when nothing more specific is known.
    pub const fn text(self) -> &'static str {
        self.parts().2
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable caller credentials (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such token — or one of another tenant, which is answered the same way (404).
    #[error("{}", ErrorCode::NotFound.text())]
    NotFound,
    /// A field of the request was refused (422).
    #[error(transparent)]
    InvalidField(#[from] InvalidField),
    /// The request as a whole is refused, with the code that says why (a 400 for every code
    /// used so far: the status is the code's).
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
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
    #[error("{}", ErrorCode::ProviderUnavailable.text())]
    ProviderUnavailable { retry_after_secs: u64 },
    /// The token's refresh budget for the current window is used up (429 + Retry-After).
    #[error("{}", ErrorCode::RefreshBudgetExhausted.text())]
    RefreshBudgetExhausted { retry_after_secs: u64 },
    /// The provider says this client sent too many requests; the broker backs off (429 +
    /// Retry-After). Never `needs_reauth`: the grant is fine, it is only asked to wait.
    #[error("{}", ErrorCode::ProviderRateLimited.text())]
    ProviderRateLimited { retry_after_secs: u64 },
    /// This caller sent too many requests of one kind (429 + Retry-After).
    #[error("{}", ErrorCode::RateLimited.text())]
    RateLimited { retry_after_secs: u64 },
    /// The caller keys (`auth.jwks_url`) could not be fetched (503).
    #[error("{}", ErrorCode::CallerKeysUnavailable.text())]
    CallerKeysUnavailable,
    /// The provider's API could not be called through the proxy (403, 502, 504: the code's).
    #[error("{message}")]
    Upstream { code: ErrorCode, message: String },
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
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The code this error answers with; its status is the answer's.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Unauthenticated(_) => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound => ErrorCode::NotFound,
            Error::InvalidField(_) => ErrorCode::InvalidField,
            Error::BadRequest { code, .. } | Error::Upstream { code, .. } => *code,
            Error::Conflict(_) | Error::Store(StoreError::Conflict) => ErrorCode::Conflict,
            Error::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Error::NeedsReauth(_) => ErrorCode::NeedsReauth,
            Error::ProviderUnavailable { .. } => ErrorCode::ProviderUnavailable,
            Error::RefreshBudgetExhausted { .. } => ErrorCode::RefreshBudgetExhausted,
            Error::ProviderRateLimited { .. } => ErrorCode::ProviderRateLimited,
            Error::Provider(_) => ErrorCode::ProviderError,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::CallerKeysUnavailable => ErrorCode::CallerKeysUnavailable,
            Error::Store(StoreError::Unavailable(_)) => ErrorCode::DatabaseUnavailable,
            Error::Store(StoreError::Other(_)) | Error::Crypto(_) | Error::Internal(_) => {
                ErrorCode::Internal
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::ErrorCode::{self, *};

    const ALL: [ErrorCode; 35] = [
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        NeedsReauth,
        BadRequest,
        MethodNotAllowed,
        Timeout,
        PayloadTooLarge,
        UnsupportedMediaType,
        UnreadableBody,
        MalformedJson,
        InvalidQuery,
        InvalidField,
        InvalidId,
        InvalidCursor,
        ConfirmationRequired,
        InvalidGrant,
        InvalidState,
        InvalidAccountsServer,
        InvalidIssuer,
        LoginRefused,
        InvalidCode,
        LoginFailed,
        ProviderError,
        ProviderUnavailable,
        ProviderRateLimited,
        RefreshBudgetExhausted,
        UpstreamNotAllowed,
        UpstreamUnavailable,
        UpstreamTimeout,
        RateLimited,
        CallerKeysUnavailable,
        DatabaseUnavailable,
        Internal,
    ];

    #[test]
    fn every_code_is_distinct_snake_case_and_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for code in ALL {
            let wire = code.as_str();
            assert!(seen.insert(wire), "{wire} is listed twice");
            assert!(
                wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{wire}"
            );
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{wire}"
            );
            assert!(!code.text().is_empty(), "{wire}");
        }
    }
}
