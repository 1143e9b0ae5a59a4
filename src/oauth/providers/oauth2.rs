//! Plain OAuth 2.0 (`kind = "oauth2"`): RFC 6749 client authentication at the token endpoint —
//! HTTP Basic (`client_secret_basic`, the default) or the form (`client_secret_post`) — and
//! RFC 7009 revocation with the same authentication. PKCE is on by default for this kind
//! (`config/providers.rs`); the challenge is made by the login flow.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::{header, RequestBuilder};
use url::form_urlencoded::byte_serialize;
use url::Url;

use super::dialect::{ClientCredentials, Dialect, Endpoints, IdentitySource};
use crate::config::AuthMethod;
use crate::domain::Secret;

#[derive(Debug)]
pub(super) struct OAuth2 {
    pub auth_method: AuthMethod,
    /// OpenID Connect: logins carry an id_token that says who logged in.
    pub id_tokens: bool,
}

/// The dialect of a provider at `endpoints` that authenticates clients with `auth_method`.
pub(super) fn build(
    endpoints: Endpoints,
    auth_method: AuthMethod,
) -> (Endpoints, Box<dyn Dialect>) {
    (
        endpoints,
        Box::new(OAuth2 {
            auth_method,
            id_tokens: false,
        }),
    )
}

/// `request` with `form` as its body and the client authenticated by `method`.
pub(super) fn authenticate(
    method: AuthMethod,
    request: RequestBuilder,
    creds: &ClientCredentials<'_>,
    mut form: Vec<(&'static str, String)>,
) -> RequestBuilder {
    match method {
        AuthMethod::Basic => {
            // RFC 6749 §2.3.1: form-urlencode id and secret, then Basic-encode.
            let id: String = byte_serialize(creds.client_id.as_bytes()).collect();
            let secret: String = creds
                .client_secret
                .map(|s| byte_serialize(s.expose().as_bytes()).collect())
                .unwrap_or_default();
            let basic = B64.encode(format!("{id}:{secret}"));
            // Without a secret Basic authenticates nobody, so the client names itself in the
            // body as well (RFC 6749 §4.1.3).
            if creds.client_secret.is_none() {
                form.push(("client_id", creds.client_id.to_owned()));
            }
            request
                .header(header::AUTHORIZATION, format!("Basic {basic}"))
                .form(&form)
        }
        AuthMethod::Post => {
            form.push(("client_id", creds.client_id.to_owned()));
            if let Some(s) = creds.client_secret {
                form.push(("client_secret", s.expose().to_owned()));
            }
            request.form(&form)
        }
    }
}

impl Dialect for OAuth2 {
    fn identity(&self) -> IdentitySource {
        if self.id_tokens {
            IdentitySource::IdToken
        } else {
            IdentitySource::None
        }
    }

    fn token_request(
        &self,
        request: RequestBuilder,
        creds: &ClientCredentials<'_>,
        form: Vec<(&'static str, String)>,
    ) -> RequestBuilder {
        authenticate(self.auth_method, request, creds, form)
    }

    fn revoke_request(
        &self,
        http: &reqwest::Client,
        url: &Url,
        creds: &ClientCredentials<'_>,
        token: &Secret,
        hint: &str,
    ) -> RequestBuilder {
        let form = vec![
            ("token", token.expose().to_owned()),
            ("token_type_hint", hint.to_owned()),
        ];
        authenticate(self.auth_method, http.post(url.clone()), creds, form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: AuthMethod, secret: Option<&Secret>) -> reqwest::Request {
        let http = reqwest::Client::new();
        authenticate(
            method,
            http.post("https://id.acme/token"),
            &ClientCredentials {
                client_id: "my client",
                client_secret: secret,
            },
            vec![("grant_type", "refresh_token".to_owned())],
        )
        .build()
        .unwrap()
    }

    fn body(r: &reqwest::Request) -> &str {
        std::str::from_utf8(r.body().and_then(|b| b.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn basic_encodes_id_and_secret_per_rfc_6749() {
        let secret = Secret::new("s:cr t");
        let r = request(AuthMethod::Basic, Some(&secret));
        let basic = B64.encode("my+client:s%3Acr+t");
        assert_eq!(
            r.headers()[header::AUTHORIZATION],
            format!("Basic {basic}").as_str()
        );
        assert_eq!(body(&r), "grant_type=refresh_token");
    }

    #[test]
    fn post_puts_the_credentials_in_the_form() {
        let secret = Secret::new("s");
        let r = request(AuthMethod::Post, Some(&secret));
        assert!(r.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(
            body(&r),
            "grant_type=refresh_token&client_id=my+client&client_secret=s"
        );
    }
}
