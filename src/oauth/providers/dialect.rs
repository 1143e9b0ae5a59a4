//! What a kind of provider may do its own way (the `Dialect` each kind's file implements) and
//! the small types those files share with the registry.

use reqwest::RequestBuilder;
use url::Url;

use crate::domain::Secret;

/// The client credentials a call uses.
pub struct ClientCredentials<'a> {
    pub client_id: &'a str,
    pub client_secret: Option<&'a Secret>,
}

/// Where a provider's endpoints are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorize: Url,
    pub token: Url,
    pub revoke: Option<Url>,
    /// Where the account behind an access token can be asked for (Zoho's user info, OIDC's
    /// userinfo).
    pub userinfo: Option<Url>,
    /// The keys id_tokens are signed with (OpenID Connect).
    pub jwks: Option<Url>,
}

/// How a kind of provider says who logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// It does not: the login's identity is unknown.
    None,
    /// A signed id_token in the token answer (OpenID Connect), verified against the JWKS.
    IdToken,
    /// Its user-info endpoint, called with the new access token under this authorization scheme.
    UserInfo(&'static str),
}

/// What one kind of provider does its own way. The defaults are RFC 6749's; a kind overrides
/// what it does differently.
pub(super) trait Dialect: std::fmt::Debug + Send + Sync {
    /// Authorize-URL parameters the kind always sends unless configured otherwise.
    fn fixed_authorize_params(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// How the authorize URL joins the scopes.
    fn scope_separator(&self) -> &'static str {
        " "
    }

    /// A token-endpoint request: `request` with the client authenticated and `form` as body.
    fn token_request(
        &self,
        request: RequestBuilder,
        creds: &ClientCredentials<'_>,
        form: Vec<(&'static str, String)>,
    ) -> RequestBuilder;

    /// The request that revokes `token` at `url`; `hint` is RFC 7009's `token_type_hint`.
    fn revoke_request(
        &self,
        http: &reqwest::Client,
        url: &Url,
        creds: &ClientCredentials<'_>,
        token: &Secret,
        hint: &str,
    ) -> RequestBuilder;

    /// The field of a token answer that holds the access token's lifetime in seconds.
    fn lifetime<'a>(
        &self,
        expires_in: Option<&'a serde_json::Value>,
        _expires_in_sec: Option<&'a serde_json::Value>,
    ) -> Option<&'a serde_json::Value> {
        expires_in
    }

    /// The accounts server a login callback may name to pick this provider (Zoho's
    /// `accounts-server`); `None` for kinds without one.
    fn accounts_server(&self) -> Option<&Url> {
        None
    }

    /// How a login learns who logged in.
    fn identity(&self) -> IdentitySource {
        IdentitySource::None
    }

    /// The `Authorization` scheme API calls carry the access token in (RFC 6750: `Bearer`).
    fn api_auth_scheme(&self) -> &'static str {
        "Bearer"
    }

    /// Whether an API's 401 says the access token is no longer valid (so a refresh may fix
    /// it). RFC 6750 §3.1: `WWW-Authenticate: Bearer error="invalid_token"`.
    fn says_token_invalid(&self, www_authenticate: Option<&str>, _body: &[u8]) -> bool {
        www_authenticate.is_some_and(|h| h.contains("invalid_token"))
    }
}
