//! The HTTP face of [`Error`] and [`ErrorCode`]: the code's status plus
//! `{ "error", "message", "field"? }`, the code left in the response's extensions for the audit
//! trail. Internal causes are logged here and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::{Error, ErrorCode};
use crate::store::StoreError;

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

/// An error answer of `code` with a status of the caller's choice: the framework's own answers
/// keep their status when they are given a body (see `json_errors`).
pub fn error_response(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: code.as_str(),
        message: message.into(),
        field: None,
    };
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(code);
    response
}

/// The answer of `code` with its own status and `message`; used for errors raised outside
/// handlers (fallback, panics, readiness).
pub fn code_response(code: ErrorCode, message: impl Into<String>) -> Response {
    error_response(code.status(), code, message)
}

/// The sentence a caller sees: the error's own text when it is meant for callers, the code's
/// default text when the error is an internal cause.
fn public_message(e: &Error) -> String {
    match e {
        Error::Store(_) | Error::Crypto(_) | Error::Internal(_) => e.code().text().into(),
        other => other.to_string(),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = code.status();
        let retry_after = match &self {
            Error::ProviderUnavailable { retry_after_secs }
            | Error::RefreshBudgetExhausted { retry_after_secs }
            | Error::ProviderRateLimited { retry_after_secs }
            | Error::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Error::Store(StoreError::Unavailable(_)) => Some(5),
            _ => None,
        };
        if status.is_server_error() {
            // Causes are sqlx/crypto errors: no bound values or plaintext in their text.
            tracing::error!(error = %self, "request failed");
        }
        let body = ErrorBody {
            error: code.as_str(),
            message: public_message(&self),
            field: match &self {
                Error::InvalidField(f) => Some(f.field.to_string()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(code);
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

/// The answer of a code with its own status and default text.
impl IntoResponse for ErrorCode {
    fn into_response(self) -> Response {
        code_response(self, self.text())
    }
}
