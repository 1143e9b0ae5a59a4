//! Request extractors whose failures are JSON errors naming the field: the caller, JSON bodies
//! and query strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{header, request::Parts, StatusCode};
use serde::de::DeserializeOwned;

use super::state::AppState;
use crate::auth::Caller;
use crate::domain::{InvalidField, TokenId};
use crate::error::{Error, ErrorCode};

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let caller = authenticate(parts, state).await.inspect_err(|e| {
            if let Error::Unauthenticated(reason) = e {
                crate::audit::note_refusal(reason);
            }
        })?;
        tracing::Span::current().record("caller", caller.sub.as_str());
        let tenant = caller.tenancy.own_tenant().map(|t| t.as_str());
        crate::audit::note_caller(&caller.sub, tenant);
        Ok(caller)
    }
}

/// The caller of a request: its bearer JWT, verified.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, Error> {
    {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Error::Unauthenticated("missing Authorization: Bearer <JWT>".into()))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| Error::Unauthenticated("Authorization must be `Bearer <JWT>`".into()))?;
        state.verifier.verify(token).await
    }
}

/// A JSON body. Wrong content type → 415, too large → 413, not JSON → 400, wrong shape → 422
/// naming the field. Messages never echo the submitted values.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !is_json {
            return Err(Error::UnsupportedMediaType(
                ErrorCode::UnsupportedMediaType.text().into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge(ErrorCode::PayloadTooLarge.text().into())
            } else {
                Error::bad_request(ErrorCode::UnreadableBody, ErrorCode::UnreadableBody.text())
            }
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(de).map_err(|e| {
            // serde_json reports a wrong type for an enum field (a number where a status name
            // belongs) as a syntax error; the body is valid JSON, so it is that field's fault.
            let valid_json = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
            if valid_json && !matches!(e.inner().classify(), serde_json::error::Category::Data) {
                InvalidField::new(field_name(&e.path().to_string()), "wrong type or value").into()
            } else {
                json_error(e)
            }
        })?;
        Ok(ApiJson(value))
    }
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = e.path().to_string();
    let inner = e.inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = describe(inner);
            // serde reports a missing field at the enclosing object; name the field itself.
            let field = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
                .unwrap_or_else(|| field_name(&path));
            InvalidField::new(field, message).into()
        }
        _ => Error::bad_request(
            ErrorCode::MalformedJson,
            format!(
                "{} (line {}, column {})",
                ErrorCode::MalformedJson.text(),
                inner.line(),
                inner.column()
            ),
        ),
    }
}

/// The field a data error is about; "body" when it is about the whole document.
fn field_name(path: &str) -> String {
    if path.is_empty() || path == "." {
        "body".into()
    } else {
        path.to_owned()
    }
}

/// serde's message without the offending value (it could be a secret sent in the wrong field).
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
    let echoes_value = [
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
    ]
    .iter()
    .any(|p| text.starts_with(p));
    if echoes_value {
        match text.split_once(", expected ") {
            Some((_, expected)) => format!("wrong type or value, expected {expected}"),
            None => "wrong type or value".into(),
        }
    } else {
        text
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json_media_type(value: &str) -> bool {
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// A query string; a malformed one is a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| {
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Error::bad_request(ErrorCode::InvalidQuery, format!("query string: {detail}"))
            })
    }
}

/// The `{id}` of a `/v1/tokens/{id}…` route: checked, and noted in the audit trail.
pub struct TokenIdPath(pub TokenId);

impl<S: Send + Sync> FromRequestParts<S> for TokenIdPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::bad_request(ErrorCode::InvalidId, "id: missing from the path"))?;
        let id = TokenId::parse(raw)
            .map_err(|e| Error::bad_request(ErrorCode::InvalidId, e.to_string()))?;
        crate::audit::note_token(id.as_str());
        Ok(Self(id))
    }
}
