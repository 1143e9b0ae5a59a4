//! Zoho's dialect of OAuth 2.0. Each data center has its own accounts server (the built-in keys
//! `zoho-us`, `zoho-eu`, … are presets in `config/providers.rs`) and every endpoint hangs off it;
//! a login callback names the server that issued the code (`accounts-server`). The refresh token
//! is only handed out with `access_type=offline&prompt=consent`; scopes are comma-separated;
//! revocation takes the token in the query string; a token answer's lifetime is
//! `expires_in_sec` (older answers put milliseconds in `expires_in`).

use reqwest::RequestBuilder;
use url::Url;

use super::dialect::{ClientCredentials, Dialect, Endpoints, IdentitySource};
use super::oauth2;
use crate::config::AuthMethod;
use crate::domain::Secret;

#[derive(Debug)]
struct Zoho {
    /// The data center's accounts server.
    accounts: Url,
}

/// The endpoints and dialect of the Zoho data center at `accounts`.
pub(super) fn build(accounts: Url) -> (Endpoints, Box<dyn Dialect>) {
    let at = |path: &str| {
        let mut url = accounts.clone();
        url.set_path(path);
        url.set_query(None);
        url.set_fragment(None);
        url
    };
    let endpoints = Endpoints {
        authorize: at("/oauth/v2/auth"),
        token: at("/oauth/v2/token"),
        revoke: Some(at("/oauth/v2/token/revoke")),
        userinfo: Some(at("/oauth/user/info")),
        jwks: None,
    };
    (endpoints, Box::new(Zoho { accounts }))
}

impl Dialect for Zoho {
    fn api_auth_scheme(&self) -> &'static str {
        "Zoho-oauthtoken"
    }

    fn says_token_invalid(&self, www_authenticate: Option<&str>, body: &[u8]) -> bool {
        // Zoho's APIs answer `{"code":"INVALID_TOKEN","message":"invalid oauth token",…}`.
        let says = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        says(b"INVALID_TOKEN") || www_authenticate.is_some_and(|h| h.contains("invalid_token"))
    }

    fn identity(&self) -> IdentitySource {
        // `GET /oauth/user/info` answers {ZUID, Email, Display_Name, …} for the access token
        // (with the AaaServer.profile.Read scope).
        IdentitySource::UserInfo("Zoho-oauthtoken")
    }

    fn fixed_authorize_params(&self) -> &'static [(&'static str, &'static str)] {
        // Without both, Zoho grants no refresh token (or only on the first consent).
        &[("access_type", "offline"), ("prompt", "consent")]
    }

    fn scope_separator(&self) -> &'static str {
        ","
    }

    fn token_request(
        &self,
        request: RequestBuilder,
        creds: &ClientCredentials<'_>,
        form: Vec<(&'static str, String)>,
    ) -> RequestBuilder {
        // Zoho takes the client credentials in the form only.
        oauth2::authenticate(AuthMethod::Post, request, creds, form)
    }

    fn revoke_request(
        &self,
        http: &reqwest::Client,
        url: &Url,
        _creds: &ClientCredentials<'_>,
        token: &Secret,
        _hint: &str,
    ) -> RequestBuilder {
        // `POST /oauth/v2/token/revoke?token=…`, no client authentication. The URL now holds a
        // token: transport errors are worded without it (`client::transport_error`).
        let mut url = url.clone();
        url.query_pairs_mut().append_pair("token", token.expose());
        http.post(url)
    }

    fn lifetime<'a>(
        &self,
        expires_in: Option<&'a serde_json::Value>,
        expires_in_sec: Option<&'a serde_json::Value>,
    ) -> Option<&'a serde_json::Value> {
        expires_in_sec.or(expires_in)
    }

    fn accounts_server(&self) -> Option<&Url> {
        Some(&self.accounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hang_off_the_accounts_server() {
        let accounts = Url::parse("http://127.0.0.1:9/prefix?x=1").unwrap();
        let (endpoints, dialect) = build(accounts);
        assert_eq!(
            endpoints.authorize.as_str(),
            "http://127.0.0.1:9/oauth/v2/auth"
        );
        assert_eq!(
            endpoints.token.as_str(),
            "http://127.0.0.1:9/oauth/v2/token"
        );
        assert_eq!(
            endpoints.revoke.unwrap().as_str(),
            "http://127.0.0.1:9/oauth/v2/token/revoke"
        );
        assert_eq!(
            dialect.accounts_server().map(Url::as_str),
            Some("http://127.0.0.1:9/prefix?x=1")
        );
    }

    #[test]
    fn revocation_puts_the_token_in_the_query() {
        let (endpoints, dialect) = build(Url::parse("https://accounts.zoho.eu").unwrap());
        let http = reqwest::Client::new();
        let request = dialect
            .revoke_request(
                &http,
                endpoints.revoke.as_ref().unwrap(),
                &ClientCredentials {
                    client_id: "1000.ABC",
                    client_secret: None,
                },
                &Secret::new("1000.r&t"),
                "refresh_token",
            )
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "https://accounts.zoho.eu/oauth/v2/token/revoke?token=1000.r%26t"
        );
        assert!(request.body().is_none());
    }
}
