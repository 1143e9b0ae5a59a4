//! The HTTP face of [`Error`]: status code plus `{ "error", "message", "field"? }`.
//! Internal causes are logged here and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::Error;
use crate::store::StoreError;

/// The error code of an error answer, left in the response's extensions for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// snake_case code, e.g. `not_found`, `invalid_field`, `needs_reauth`.
    #[schema(value_type = String)]
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer with an arbitrary status; used for errors raised outside handlers too.
pub fn error_response(
    status: StatusCode,
    error: &'static str,
    message: impl Into<String>,
) -> Response {
    let body = ErrorBody {
        error,
        message: message.into(),
        field: None,
    };
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(ErrorCode(error));
    response
}

impl Error {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Error::InvalidField(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            Error::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::NeedsReauth(_) => (StatusCode::CONFLICT, "needs_reauth"),
            Error::ProviderUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable")
            }
            Error::RefreshBudgetExhausted { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "refresh_budget_exhausted")
            }
            Error::ProviderRateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "provider_rate_limited")
            }
            Error::Provider(_) => (StatusCode::BAD_GATEWAY, "provider_error"),
            Error::Store(StoreError::Conflict) => (StatusCode::CONFLICT, "conflict"),
            Error::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            Error::Store(StoreError::Other(_)) | Error::Crypto(_) | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }

    /// The sentence a caller sees: the error's own text when it is meant for callers,
    /// a generic one when it is an internal cause.
    fn public_message(&self) -> String {
        match self {
            Error::Store(StoreError::Unavailable(_)) => {
                "the database is unavailable; try again shortly".into()
            }
            Error::Store(StoreError::Conflict) => "the write conflicts with a stored token".into(),
            Error::Store(StoreError::Other(_)) | Error::Crypto(_) | Error::Internal(_) => {
                "internal error; see the broker's log for details".into()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry_after = match &self {
            Error::ProviderUnavailable { retry_after_secs }
            | Error::RefreshBudgetExhausted { retry_after_secs }
            | Error::ProviderRateLimited { retry_after_secs } => Some(*retry_after_secs),
            Error::Store(StoreError::Unavailable(_)) => Some(5),
            _ => None,
        };
        if status.is_server_error() {
            // Causes are sqlx/crypto errors: no bound values or plaintext in their text.
            tracing::error!(error = %self, "request failed");
        }
        let body = ErrorBody {
            error: code,
            message: self.public_message(),
            field: match &self {
                Error::InvalidField(f) => Some(f.field.to_string()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}
