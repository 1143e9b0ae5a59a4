//! `/v1/proxy/{id}/{path}`: a call to the token's API, made by the broker (see `proxy`).

use axum::extract::{Request, State};
use axum::response::Response;

use super::error::ErrorBody;
use super::state::AppState;
use crate::auth::{Caller, Scope};
use crate::domain::TokenId;
use crate::error::{Error, ErrorCode, Result};
use crate::proxy::Outgoing;

/// `{METHOD} /v1/proxy/{id}/{path}?{query}`: sent on as `{METHOD} {api_base}/{path}?{query}` with
/// the token's access token, and the API's answer passed back.
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/proxy/{id}/{*path}", tag = "proxy",
    description = "Calls the token's provider API and passes its answer back unchanged: status, headers (less hop-by-hop ones) and body, streamed. \
        The upstream is `{api_base}/{path}?{query}`, where `api_base` is the one of the provider's `api_base_urls` whose origin is the token's `api_domain` \
        (Zoho presets: the data center's `www.`, `sandbox.` and `developer.` API domains), or the first for a token without one. \
        The request's method, query, headers (less hop-by-hop ones, `Authorization` and `Cookie`) and body (any content type, up to `proxy.max_request_bytes`) are sent on, \
        with the access token in `Authorization` (Zoho: `Zoho-oauthtoken …`; others: `Bearer …`). \
        When the API answers 401 saying the access token is invalid (Zoho: `INVALID_TOKEN`; others: `WWW-Authenticate: Bearer error=\"invalid_token\"`), \
        the token is refreshed once and the call sent again, if its body was at most `proxy.replay_buffer_bytes`; otherwise the 401 is passed back. \
        Errors of the broker itself are JSON with an `error` code; answers of the API are whatever it sent.",
    params(("id" = String, Path, description = "Token id"),
        ("path" = String, Path, description = "The API path below the API base, e.g. `crm/v8/Leads`")),
    responses((status = "default", description = "The provider API's answer, as it sent it"),
        (status = 400, description = "invalid_id, or a path with `.`/`..` segments", body = ErrorBody),
        (status = 403, description = "forbidden (no tokens:proxy), or upstream_not_allowed: the token's api_domain is not one of its provider's API base URLs", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "needs_reauth", body = ErrorBody),
        (status = 413, description = "The request body is larger than proxy.max_request_bytes", body = ErrorBody),
        (status = 502, description = "upstream_unavailable: the API could not be reached", body = ErrorBody),
        (status = 503, description = "provider_unavailable: no valid access token and the provider is down", body = ErrorBody),
        (status = 504, description = "upstream_timeout: the API did not answer within proxy.timeout_secs", body = ErrorBody)),
    security(("bearer" = ["tokens:proxy"])))]
pub async fn forward(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response> {
    caller.require(Scope::Proxy)?;
    let (parts, body) = request.into_parts();
    let (id, rest) = split(&parts.uri)?;
    crate::audit::note_token(id.as_str());
    let call = Outgoing {
        method: parts.method,
        rest,
        headers: parts.headers,
        body,
    };
    state.proxy.forward(&caller.tenancy, &id, call).await
}

/// The token id and the rest (path and query, as sent) of `/v1/proxy/{id}/{rest}`.
fn split(uri: &axum::http::Uri) -> Result<(TokenId, String)> {
    let invalid = |m: &str| Error::bad_request(ErrorCode::InvalidId, m.to_owned());
    let after = uri
        .path()
        .strip_prefix("/v1/proxy/")
        .ok_or_else(|| invalid("not a proxy path"))?;
    let (id, path) = after.split_once('/').unwrap_or((after, ""));
    let id = TokenId::parse(id).map_err(|e| invalid(&format!("id: {e}")))?;
    let rest = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    Ok((id, rest))
}
