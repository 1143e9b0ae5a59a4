//! The browser login over HTTP: connect sessions (`/v1/connect/sessions`, for services), the
//! link a person opens (`/connect/{link}`, which sets the cookie binding the login to that
//! browser) and the provider's way back (`/v1/oauth/callback`). `GET /v1/oauth/authorize` is
//! kept for callers of the first version: it creates a session and sends them to its link.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiQuery};
use super::pages;
use super::state::AppState;
use crate::auth::{Caller, Scope};
use crate::domain::{InvalidField, ProviderKey, Secret, UserName};
use crate::error::{Error, Result};
use crate::oauth::{CallbackParams, ConnectRequest, LoginFailure, OpenResult};
use crate::tokens::{ConnectSession, SessionStatus};

/// The cookie that binds a session to the browser that opened its link.
fn cookie_name(session_id: &str) -> String {
    format!("tb_connect_{session_id}")
}

/// `POST /v1/connect/sessions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionBody {
    /// The provider to connect (a configured provider key).
    provider: String,
    /// The user the token is stored for; with the provider's `require_identity_match`, also the
    /// account the person must sign in as. Without it, the token is stored under the email (or
    /// subject) of whoever signs in.
    user_name: Option<String>,
    /// Where the browser goes when the login ends: `?status=connected&token_id=…` or
    /// `?status=failed&error=<code>`. Its origin must be the broker's or one of
    /// `oauth.return_to_origins`. Without it, the broker shows a page.
    return_to: Option<String>,
    /// The scopes to ask for (a subset of the provider's `allowed_scopes`); default: the
    /// provider's `scopes`.
    scopes: Option<Vec<String>>,
}

/// A connect session.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    id: String,
    provider: String,
    user_name: Option<String>,
    scopes: Vec<String>,
    return_to: Option<String>,
    status: SessionStatus,
    /// The connected token, once `status` is `connected`.
    token_id: Option<String>,
    /// Why the login failed, once `status` is `failed` (e.g. `access_denied`, `expired`,
    /// `other_browser`, `identity_mismatch`).
    error: Option<String>,
    /// ms since the Unix epoch: the link works until then.
    expires_at: i64,
    /// Only in the answer that created the session: the link to send the person to (opens
    /// once, in one browser).
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_url: Option<String>,
}

impl SessionView {
    fn new(s: &ConnectSession, connect_url: Option<&Url>) -> Self {
        Self {
            id: s.id.clone(),
            provider: s.provider.to_string(),
            user_name: s.user_name.as_ref().map(|u| u.as_str().to_owned()),
            scopes: s.scopes.clone(),
            return_to: s.return_to.clone(),
            status: s.status,
            token_id: s.token_id.as_ref().map(|t| t.to_string()),
            error: s.error.clone(),
            expires_at: s.expires_at,
            connect_url: connect_url.map(Url::to_string),
        }
    }
}

fn connect_request(body: SessionBody) -> Result<ConnectRequest> {
    Ok(ConnectRequest {
        provider: ProviderKey::parse(body.provider)?,
        user_name: body.user_name.map(UserName::parse).transpose()?,
        return_to: body.return_to,
        scopes: body.scopes,
    })
}

/// `POST /v1/connect/sessions`: a link for a person to connect their account (201).
#[utoipa::path(post, path = "/v1/connect/sessions", tag = "connect", request_body = SessionBody,
    responses((status = 201, description = "Created: send the person to `connect_url`", body = SessionView),
        (status = 422, description = "Unknown provider, a scope the provider does not allow, or a return_to that is malformed, too long or of an origin not allowed", body = ErrorBody),
        (status = 429, description = "rate_limited: this caller started more logins this minute than oauth.login_starts_per_minute (Retry-After)", body = ErrorBody)),
    security(("bearer" = ["tokens:write"])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SessionBody>,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    let (session, url) = state
        .oauth
        .create_session(&caller.tenancy, &caller.sub, connect_request(body)?)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/v1/connect/sessions/{}", session.id),
        )],
        Json(SessionView::new(&session, Some(&url))),
    )
        .into_response())
}

/// `GET /v1/connect/sessions/{id}`: where a login stands.
#[utoipa::path(get, path = "/v1/connect/sessions/{id}", tag = "connect", params(("id" = String, Path, description = "Session id")),
    responses((status = 200, description = "The session", body = SessionView),
        (status = 400, description = "Not a session id", body = ErrorBody),
        (status = 404, description = "No such session (or another tenant's)", body = ErrorBody)),
    security(("bearer" = ["tokens:read"])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>> {
    caller.require(Scope::Read)?;
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::bad_request(
            crate::error::ErrorCode::InvalidId,
            "id: not a connect session id",
        ));
    }
    let session = state.oauth.session(&caller.tenancy, &id).await?;
    Ok(Json(SessionView::new(&session, None)))
}

/// `GET /connect/{link}`: a person opens the link of a session.
#[utoipa::path(get, path = "/connect/{link}", tag = "connect", params(("link" = String, Path, description = "The secret part of a session's connect_url")),
    responses((status = 302, description = "To the provider; sets the cookie that binds the login to this browser"),
        (status = 400, description = "Unknown link: an HTML page", content_type = "text/html"),
        (status = 409, description = "The link was already opened: an HTML page", content_type = "text/html"),
        (status = 410, description = "The link expired: an HTML page", content_type = "text/html"),
        (status = 503, description = "The provider's discovery document could not be fetched: an HTML page", content_type = "text/html")))]
pub async fn open(State(state): State<AppState>, Path(link): Path<String>) -> Response {
    if link.is_empty() || link.len() > 128 {
        return pages::failed(&LoginFailure::UnknownLink, None);
    }
    let browser = Secret::new(crate::tokens::random_b64(32));
    match state.oauth.open(&Secret::new(link), &browser).await {
        Ok(OpenResult::Redirect(session, url)) => {
            let ttl = ((session.expires_at - state.tokens.now_ms()) / 1000).max(1);
            let secure = if state.oauth.settings().public_url.scheme() == "https" {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{}={}; Path=/v1/oauth/callback; Max-Age={ttl}; HttpOnly; SameSite=Lax{secure}",
                cookie_name(&session.id),
                browser.expose()
            );
            let mut response = found(url.as_str());
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Ok(OpenResult::Failed(provider, failure)) => {
            pages::failed(&failure, provider.as_ref().map(|p| p.display_name.as_str()))
        }
        Err(e) => pages::failed(&LoginFailure::from(e), None),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    #[serde(rename = "accounts-server")]
    accounts_server: Option<String>,
    /// RFC 9207: the issuer of the authorization response.
    iss: Option<String>,
}

#[utoipa::path(get, path = "/v1/oauth/callback", tag = "oauth", params(CallbackQuery),
    responses((status = 302, description = "To the session's return_to: ?status=connected&token_id=…, or ?status=failed&error=<code>"),
        (status = 200, description = "Connected: an HTML page naming the provider and the account", content_type = "text/html"),
        (status = 400, description = "Unknown link, or the provider refused: an HTML page, nothing stored", content_type = "text/html"),
        (status = 403, description = "Declined, finished in another browser, or another account than the session's: an HTML page, nothing stored", content_type = "text/html"),
        (status = 409, description = "Already used, or the user is connected to another account: an HTML page", content_type = "text/html"),
        (status = 410, description = "Expired: an HTML page", content_type = "text/html"),
        (status = 502, description = "The provider refused the exchange: an HTML page", content_type = "text/html"),
        (status = 503, description = "The provider is unavailable: an HTML page", content_type = "text/html")))]
/// `GET /v1/oauth/callback`: where the provider sends the browser back. No JWT: the state names
/// the session, and only the browser that opened the session's link (its cookie) may finish it.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: std::result::Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return pages::failed(&LoginFailure::UnknownLink, None);
    };
    let params = CallbackParams {
        code: q.code.filter(|c| !c.is_empty()).map(Secret::new),
        state: q.state.filter(|s| !s.is_empty()).map(Secret::new),
        error: q.error,
        accounts_server: q.accounts_server,
        iss: q.iss,
    };
    let result = state
        .oauth
        .callback(params, |id| cookie(&headers, &cookie_name(id)))
        .await;
    let provider = result.provider.as_ref().map(|p| p.display_name.clone());
    let return_to = result
        .session
        .as_ref()
        .and_then(|s| s.return_to.as_deref())
        .and_then(|r| state.oauth.check_return_to(r).ok());
    let mut response = match (&result.outcome, return_to) {
        (Ok(token), Some(mut to)) => {
            to.query_pairs_mut()
                .append_pair("status", "connected")
                .append_pair("token_id", token.id.as_str())
                .append_pair(
                    "refreshable",
                    if token.refresh_token.is_some() {
                        "true"
                    } else {
                        "false"
                    },
                );
            found(to.as_str())
        }
        (Ok(token), None) => pages::connected(token, provider.as_deref().unwrap_or("the provider")),
        (Err(failure), Some(mut to)) => {
            to.query_pairs_mut()
                .append_pair("status", "failed")
                .append_pair("error", failure.code());
            let mut r = found(to.as_str());
            r.extensions_mut()
                .insert(crate::error::ErrorCode::LoginFailed);
            r
        }
        (Err(failure), None) => pages::failed(failure, provider.as_deref()),
    };
    // The binding cookie has done its job.
    if let Some(session) = &result.session {
        let clear = format!(
            "{}=; Path=/v1/oauth/callback; Max-Age=0; HttpOnly; SameSite=Lax",
            cookie_name(&session.id)
        );
        if let Ok(v) = HeaderValue::from_str(&clear) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeParams {
    provider: String,
    user_name: Option<String>,
    return_to: Option<String>,
    /// Space-separated scopes (a subset of the provider's `allowed_scopes`).
    scope: Option<String>,
}

#[utoipa::path(get, path = "/v1/oauth/authorize", tag = "oauth", params(AuthorizeParams),
    responses((status = 302, description = "To a new connect session's link on the broker (which binds the login to the browser that opens it, then goes on to the provider)"),
        (status = 200, description = "With Accept: application/json: {\"authorize_url\", \"connect_url\", \"session_id\", \"expires_at\"}"),
        (status = 422, description = "Unknown provider, a scope not allowed, or a bad return_to", body = ErrorBody),
        (status = 429, description = "rate_limited: too many login starts by this caller this minute (Retry-After)", body = ErrorBody)),
    security(("bearer" = ["tokens:write"])))]
/// `GET /v1/oauth/authorize`: the first version's way to start a login, kept for its callers. It
/// creates a connect session and answers with its link (302, or JSON for `Accept:
/// application/json`); the login binds to the browser that opens the link, as with
/// `POST /v1/connect/sessions`. Opened by a person without a JWT, it explains itself in HTML.
pub async fn authorize(
    State(state): State<AppState>,
    caller: std::result::Result<Caller, Error>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<AuthorizeParams>,
) -> Result<Response> {
    let accepts = |what: &str| {
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(what))
    };
    let caller = match caller {
        Ok(c) => c,
        Err(Error::Unauthenticated(_)) if accepts("text/html") => {
            return Ok(pages::for_applications())
        }
        Err(e) => return Err(e),
    };
    caller.require(Scope::Write)?;
    let scopes = params
        .scope
        .map(|s| {
            if s.len() > 2048 {
                return Err(InvalidField::new(
                    "scope",
                    "must be at most 2048 characters",
                ));
            }
            Ok(s.split_whitespace().map(str::to_owned).collect())
        })
        .transpose()?;
    let req = ConnectRequest {
        provider: ProviderKey::parse(params.provider)?,
        user_name: params.user_name.map(UserName::parse).transpose()?,
        return_to: params.return_to,
        scopes,
    };
    let (session, url) = state
        .oauth
        .create_session(&caller.tenancy, &caller.sub, req)
        .await?;
    Ok(if accepts("application/json") {
        Json(serde_json::json!({
            "authorize_url": url.as_str(),
            "connect_url": url.as_str(),
            "session_id": session.id,
            "expires_at": session.expires_at,
        }))
        .into_response()
    } else {
        found(url.as_str())
    })
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| Secret::new(v.trim()))
        .filter(|s| !s.expose().is_empty())
}

/// A 302 Found to `location` (the contract's status for both login redirects).
fn found(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}
