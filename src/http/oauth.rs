//! The broker's own job over HTTP: access tokens, refresh, revoke and exchange (the browser
//! login is `connect.rs`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiQuery, TokenIdPath};
use super::state::AppState;
use super::tokens::{view, TokenView};
use crate::audit;
use crate::auth::{Caller, Scope};
use crate::domain::{parse_text, InvalidField, ProviderKey, Secret, Token, UserName};
use crate::error::{Error, Result};
use crate::oauth::ExchangeRequest;

/// What a caller gets from the access-token and refresh endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessTokenView {
    pub access_token: String,
    pub token_type: &'static str,
    pub expiry_time: Option<i64>,
    pub expires_in: Option<i64>,
    pub api_domain: Option<String>,
}

impl AccessTokenView {
    fn new(token: &Token, now_ms: i64) -> Result<Self> {
        let access = token.access_token.as_ref().ok_or_else(|| {
            Error::NeedsReauth("no access token is stored; the user must log in again".into())
        })?;
        Ok(Self {
            access_token: access.expose().to_owned(),
            token_type: "Bearer",
            expiry_time: token.expiry_time,
            expires_in: token.expiry_time.map(|e| ((e - now_ms) / 1000).max(0)),
            api_domain: token.api_domain.clone(),
        })
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessParams {
    /// Seconds the returned token must stay valid (default 60).
    min_validity: Option<u32>,
}

/// Longest `min_validity` accepted (a day).
const MAX_MIN_VALIDITY_SECS: u32 = 86_400;

/// `GET /v1/tokens/{id}/access-token?min_validity=SECONDS`.
#[utoipa::path(get, path = "/v1/tokens/{id}/access-token", tag = "access", params(("id" = String, Path, description = "Token id"), AccessParams),
    responses((status = 200, description = "A valid access token", body = AccessTokenView),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "needs_reauth: the user must log in again", body = ErrorBody),
        (status = 429, description = "refresh_budget_exhausted, or provider_rate_limited: the provider said too many requests (Retry-After)", body = ErrorBody),
        (status = 503, description = "provider_unavailable (Retry-After)", body = ErrorBody)),
    security(("bearer" = ["tokens:access"])))]
pub async fn access_token(
    State(state): State<AppState>,
    caller: Caller,
    TokenIdPath(id): TokenIdPath,
    ApiQuery(params): ApiQuery<AccessParams>,
) -> Result<Json<AccessTokenView>> {
    caller.require(Scope::Access)?;
    let min_validity_ms = match params.min_validity {
        Some(s) if s > MAX_MIN_VALIDITY_SECS => {
            return Err(InvalidField::new(
                "min_validity",
                format!("must be at most {MAX_MIN_VALIDITY_SECS} seconds"),
            )
            .into())
        }
        Some(s) => i64::from(s) * 1000,
        None => state.oauth.settings().default_min_validity_ms,
    };
    let token = state
        .oauth
        .access_token(&caller.tenancy, &id, min_validity_ms)
        .await?;
    Ok(Json(AccessTokenView::new(&token, state.tokens.now_ms())?))
}

/// `POST /v1/tokens/{id}/refresh`: refresh now, whatever the stored token's validity.
#[utoipa::path(post, path = "/v1/tokens/{id}/refresh", tag = "access", params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "The refreshed access token", body = AccessTokenView),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "needs_reauth", body = ErrorBody),
        (status = 429, description = "The refresh did not happen: refresh_budget_exhausted or provider_rate_limited (Retry-After)", body = ErrorBody),
        (status = 503, description = "provider_unavailable", body = ErrorBody)),
    security(("bearer" = ["tokens:write"])))]
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    TokenIdPath(id): TokenIdPath,
) -> Result<Json<AccessTokenView>> {
    caller.require(Scope::Write)?;
    let min = state.oauth.settings().default_min_validity_ms;
    let token = state.oauth.refresh(&caller.tenancy, &id, min, true).await?;
    Ok(Json(AccessTokenView::new(&token, state.tokens.now_ms())?))
}

/// `POST /v1/tokens/{id}/revoke`: revoke at the provider, then delete.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "access", params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked and deleted"),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 503, description = "provider_unavailable: the token is kept", body = ErrorBody)),
    security(("bearer" = ["tokens:write"])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    TokenIdPath(id): TokenIdPath,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    state.oauth.revoke(&caller.tenancy, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    provider: Option<String>,
    grant_token: String,
    user_name: Option<String>,
    redirect_url: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    accounts_server: Option<String>,
}

/// `POST /v1/oauth/exchange`: exchange a grant token and store the result (201). Without a
/// `provider` (or `accounts_server`), the exchange goes to `tokens.default_provider`.
#[utoipa::path(post, path = "/v1/oauth/exchange", tag = "oauth", request_body = ExchangeBody,
    responses((status = 201, description = "Exchanged and stored", body = TokenView),
        (status = 400, description = "invalid_grant: the code is used up or expired", body = ErrorBody),
        (status = 422, description = "A bad field", body = ErrorBody),
        (status = 429, description = "provider_rate_limited: the provider said too many requests (Retry-After)", body = ErrorBody),
        (status = 502, description = "provider_error", body = ErrorBody),
        (status = 503, description = "provider_unavailable", body = ErrorBody)),
    security(("bearer" = ["tokens:write"])))]
pub async fn exchange(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ExchangeBody>,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    let req = ExchangeRequest {
        provider: body.provider.map(ProviderKey::parse).transpose()?,
        grant_token: Secret::parse("grant_token", body.grant_token)?,
        user_name: body.user_name.map(UserName::parse).transpose()?,
        redirect_url: body
            .redirect_url
            .map(|u| parse_text("redirect_url", u, 2048))
            .transpose()?,
        code_verifier: body
            .code_verifier
            .map(|v| Secret::parse("code_verifier", v))
            .transpose()?,
        client_id: body
            .client_id
            .map(|c| parse_text("client_id", c, 255))
            .transpose()?,
        client_secret: body
            .client_secret
            .map(|s| Secret::parse("client_secret", s))
            .transpose()?,
        accounts_server: body.accounts_server,
    };
    let token = state.oauth.exchange(&caller.tenancy, req).await?;
    audit::note_token(token.id.as_str());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/tokens/{}", token.id))],
        Json(view(&token, &caller)),
    )
        .into_response())
}
