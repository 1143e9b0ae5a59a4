//! `/v1/tokens…`: the six TokenStore operations. Handlers only extract, call the token service
//! and shape the answer.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiQuery, TokenIdPath};
use super::state::AppState;
use crate::audit;
use crate::auth::{Caller, Scope};
use crate::clock::rfc3339;
use crate::domain::{
    parse_text, InvalidField, PartialToken, ProviderKey, Secret, TenantName, Token, TokenId,
    TokenStatus, UserName,
};
use crate::error::{Error, ErrorCode, Result};
use crate::tokens::{ListQuery, Saved};

/// A token as callers see it. Without `tokens:secrets`, client_secret, refresh_token and
/// grant_token are `null`; without `tokens:access` (or `tokens:secrets`), access_token is too.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub access_token: Option<String>,
    pub grant_token: Option<String>,
    pub expiry_time: Option<i64>,
    pub redirect_url: Option<String>,
    pub api_domain: Option<String>,
    pub provider: String,
    pub tenant: Option<String>,
    pub status: TokenStatus,
    /// Who logged in, when the broker made the grant (a browser login or an exchange) and the
    /// provider said: a verified OpenID Connect id_token, or Zoho's user-info answer.
    pub identity: Option<IdentityView>,
    /// The scopes the provider granted, when the broker made the grant.
    pub scopes: Option<Vec<String>>,
    /// Whether a refresh token is stored: `false` means the broker can hand out the access token
    /// only until `expiry_time`, after which a person must connect again.
    pub refreshable: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// The account that logged in at the provider.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    /// The provider's stable id of the account (OpenID Connect `sub`, Zoho's ZUID).
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Which credentials a caller may see in a token: its scopes decide.
#[derive(Debug, Clone, Copy)]
pub struct Reveal {
    /// client_secret, refresh_token, grant_token (`tokens:secrets`).
    pub secrets: bool,
    /// access_token (`tokens:access`; `tokens:secrets` can get one anyway).
    pub access_token: bool,
}

impl Reveal {
    pub fn for_caller(caller: &Caller) -> Self {
        let secrets = caller.has(Scope::Secrets);
        Self {
            secrets,
            access_token: secrets || caller.has(Scope::Access),
        }
    }

    /// Notes in the audit trail what was shown (nothing to note for an empty answer).
    fn note(self) {
        if self.secrets {
            audit::note_detail("secrets revealed");
        } else if self.access_token {
            audit::note_detail("access token revealed");
        }
    }
}

impl TokenView {
    pub fn new(t: &Token, reveal: Reveal) -> Self {
        let secret = |s: &Option<Secret>| {
            if reveal.secrets {
                s.as_ref().map(|s| s.expose().to_owned())
            } else {
                None
            }
        };
        Self {
            id: t.id.to_string(),
            user_name: t.user_name.as_ref().map(|u| u.as_str().to_owned()),
            client_id: t.client_id.clone(),
            client_secret: secret(&t.client_secret),
            refresh_token: secret(&t.refresh_token),
            access_token: t
                .access_token
                .as_ref()
                .filter(|_| reveal.access_token)
                .map(|s| s.expose().to_owned()),
            grant_token: secret(&t.grant_token),
            expiry_time: t.expiry_time,
            redirect_url: t.redirect_url.clone(),
            api_domain: t.api_domain.clone(),
            provider: t.provider.to_string(),
            tenant: t.tenant.as_ref().map(|t| t.to_string()),
            status: t.status,
            identity: t.identity.as_ref().map(|i| IdentityView {
                subject: i.subject.clone(),
                email: i.email.clone(),
                name: i.name.clone(),
            }),
            scopes: t.scopes.clone(),
            refreshable: t.refresh_token.is_some(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// A (partial) token as sent to find and save. Every field is optional; unknown fields are refused.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub id: Option<String>,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub access_token: Option<String>,
    pub grant_token: Option<String>,
    /// Milliseconds since the Unix epoch: a number, or a string of digits as the Zoho SDKs keep
    /// it (`"1795371021953"`). Answers always carry a number.
    #[serde(default, deserialize_with = "epoch_millis")]
    #[schema(value_type = Option<i64>)]
    pub expiry_time: Option<i64>,
    pub redirect_url: Option<String>,
    pub api_domain: Option<String>,
    pub provider: Option<String>,
    pub tenant: Option<String>,
    pub status: Option<TokenStatus>,
    /// Accepted and ignored: the broker keeps its own timestamps.
    #[schema(value_type = Option<String>)]
    pub created_at: Option<serde_json::Value>,
    /// Accepted and ignored, like `created_at`.
    #[schema(value_type = Option<String>)]
    pub updated_at: Option<serde_json::Value>,
}

/// `expiry_time` as a JSON number or a string of digits; anything else is refused naming the field.
fn epoch_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Millis {
        Number(i64),
        Digits(String),
    }
    const EXPECTED: &str = "milliseconds since the Unix epoch: a number or a string of digits";
    match Option::<Millis>::deserialize(d) {
        Ok(None) => Ok(None),
        Ok(Some(Millis::Number(ms))) => Ok(Some(ms)),
        Ok(Some(Millis::Digits(text))) => {
            let text = text.trim();
            if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(serde::de::Error::custom(format!("expected {EXPECTED}")));
            }
            text.parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("expected {EXPECTED}")))
        }
        Err(_) => Err(serde::de::Error::custom(format!("expected {EXPECTED}"))),
    }
}

impl TryFrom<TokenBody> for PartialToken {
    type Error = InvalidField;

    fn try_from(b: TokenBody) -> Result<Self, InvalidField> {
        let secret =
            |field: &'static str, v: Option<String>| v.map(|v| Secret::parse(field, v)).transpose();
        let text = |field: &'static str, v: Option<String>, max: usize| {
            v.map(|v| parse_text(field, v, max)).transpose()
        };
        if let Some(ms) = b.expiry_time {
            if ms < 0 {
                return Err(InvalidField::new(
                    "expiry_time",
                    "must be milliseconds since the Unix epoch (not negative)",
                ));
            }
        }
        Ok(PartialToken {
            id: b.id.map(TokenId::parse).transpose()?,
            tenant: b.tenant.map(TenantName::parse).transpose()?,
            provider: b.provider.map(ProviderKey::parse).transpose()?,
            user_name: b.user_name.map(UserName::parse).transpose()?,
            client_id: text("client_id", b.client_id, 255)?,
            client_secret: secret("client_secret", b.client_secret)?,
            refresh_token: secret("refresh_token", b.refresh_token)?,
            access_token: secret("access_token", b.access_token)?,
            grant_token: secret("grant_token", b.grant_token)?,
            expiry_time: b.expiry_time,
            granted_lifetime_ms: None,
            redirect_url: text("redirect_url", b.redirect_url, 2048)?,
            api_domain: text("api_domain", b.api_domain, 255)?,
            status: b.status,
            identity: None,
            scopes: None,
        })
    }
}

/// The view of `token` for `caller`, noting in the audit trail when secrets were shown.
pub fn view(token: &Token, caller: &Caller) -> TokenView {
    audit::note_token_tenant(token.tenant.as_ref().map(TenantName::as_str));
    let reveal = Reveal::for_caller(caller);
    reveal.note();
    TokenView::new(token, reveal)
}

/// `POST /v1/tokens/find`: find_token. By `id` first (an unknown id falls through to the other
/// rules), then `user_name`, `access_token`, `grant_token`, `refresh_token`.
#[utoipa::path(post, path = "/v1/tokens/find", tag = "tokens", request_body = TokenBody,
    responses((status = 200, description = "The matching token", body = TokenView),
        (status = 404, description = "No token matches", body = ErrorBody),
        (status = 422, description = "Nothing to match on, or a bad field", body = ErrorBody)),
    security(("bearer" = ["tokens:read"])))]
pub async fn find(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Json<TokenView>> {
    caller.require(Scope::Read)?;
    let partial = PartialToken::try_from(body)?;
    let token = state
        .tokens
        .find(&caller.tenancy, &partial)
        .await?
        .ok_or(Error::NotFound)?;
    audit::note_token(token.id.as_str());
    Ok(Json(view(&token, &caller)))
}

/// `PUT /v1/tokens`: save_token. 201 with Location when created, 200 when updated.
#[utoipa::path(put, path = "/v1/tokens", tag = "tokens", request_body = TokenBody,
    responses((status = 201, description = "Created", body = TokenView),
        (status = 200, description = "Updated the token find would match", body = TokenView),
        (status = 409, description = "Conflicts with another stored token", body = ErrorBody),
        (status = 422, description = "A bad field", body = ErrorBody)),
    security(("bearer" = ["tokens:write"])))]
pub async fn save(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    let partial = PartialToken::try_from(body)?;
    let (token, saved) = state.tokens.save(&caller.tenancy, partial).await?;
    audit::note_token(token.id.as_str());
    let body = Json(view(&token, &caller));
    Ok(match saved {
        Saved::Created => (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/v1/tokens/{}", token.id))],
            body,
        )
            .into_response(),
        Saved::Updated => body.into_response(),
    })
}

/// `GET /v1/tokens/{id}`: find_token_by_id.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "The token", body = TokenView),
        (status = 404, description = "No such token (or another tenant's)", body = ErrorBody)),
    security(("bearer" = ["tokens:read"])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    TokenIdPath(id): TokenIdPath,
) -> Result<Json<TokenView>> {
    caller.require(Scope::Read)?;
    let token = state.tokens.get(&caller.tenancy, &id).await?;
    Ok(Json(view(&token, &caller)))
}

/// `DELETE /v1/tokens/{id}`: delete_token.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such token", body = ErrorBody)),
    security(("bearer" = ["tokens:write"])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    TokenIdPath(id): TokenIdPath,
) -> Result<StatusCode> {
    caller.require(Scope::Write)?;
    state.tokens.delete(&caller.tenancy, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
    user_name: Option<String>,
    provider: Option<String>,
    status: Option<TokenStatus>,
    tenant: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPage {
    tokens: Vec<TokenView>,
    next_cursor: Option<String>,
    /// Stored rows of this page the broker could not read (a key no longer configured, a
    /// damaged ciphertext): left out of `tokens` and named here. Usually empty.
    unreadable: Vec<UnreadableView>,
}

/// A stored token the broker cannot read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnreadableView {
    pub id: String,
    /// Why, e.g. "cannot be decrypted with the configured keys".
    pub error: String,
}

/// `GET /v1/tokens`: get_tokens, a page at a time.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", params(ListParams),
    responses((status = 200, description = "A page of tokens", body = TokenPage),
        (status = 400, description = "Bad cursor or query", body = ErrorBody)),
    security(("bearer" = ["tokens:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<TokenPage>> {
    caller.require(Scope::Read)?;
    let query = ListQuery {
        limit: params.limit,
        cursor: params.cursor,
        user_name: params
            .user_name
            .map(UserName::parse)
            .transpose()?
            .map(|u| u.as_str().to_owned()),
        provider: params
            .provider
            .map(ProviderKey::parse)
            .transpose()?
            .map(|p| p.to_string()),
        status: params.status,
        tenant: params.tenant.map(TenantName::parse).transpose()?,
    };
    let page = state.tokens.list(&caller.tenancy, query).await?;
    let reveal = Reveal::for_caller(&caller);
    if !page.tokens.is_empty() {
        reveal.note();
    }
    Ok(Json(TokenPage {
        tokens: page
            .tokens
            .iter()
            .map(|t| TokenView::new(t, reveal))
            .collect(),
        next_cursor: page.next_cursor,
        unreadable: page
            .unreadable
            .into_iter()
            .map(|u| UnreadableView {
                id: u.id,
                error: u.reason,
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteAllParams {
    /// Must be `all`.
    confirm: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted {
    deleted: u64,
}

/// `DELETE /v1/tokens?confirm=all`: delete_tokens (every token the caller can see).
#[utoipa::path(delete, path = "/v1/tokens", tag = "tokens", params(DeleteAllParams),
    responses((status = 200, description = "How many were deleted", body = Deleted),
        (status = 400, description = "confirm=all missing", body = ErrorBody)),
    security(("bearer" = ["tokens:admin"])))]
pub async fn delete_all(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<DeleteAllParams>,
) -> Result<Json<Deleted>> {
    caller.require(Scope::Admin)?;
    if params.confirm.as_deref() != Some("all") {
        return Err(Error::bad_request(
            ErrorCode::ConfirmationRequired,
            ErrorCode::ConfirmationRequired.text(),
        ));
    }
    let deleted = state.tokens.delete_all(&caller.tenancy).await?;
    tracing::warn!(deleted, caller = %caller.sub, "deleted all tokens");
    Ok(Json(Deleted { deleted }))
}
