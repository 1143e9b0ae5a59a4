//! The broker's HTTP API as a caller sees it: one typed helper per endpoint, so a test says
//! `app.refresh(&jwt, &id).await` instead of spelling out the request. Shared by the in-process
//! [`TestApp`](crate::helpers::TestApp) and the `serve` process
//! [`BrokerProcess`](crate::processes::BrokerProcess); both deref to an [`ApiClient`].
//!
//! Each helper returns a [`Call`]: awaiting it sends the request and yields the
//! `reqwest::Response` (a transport error panics, naming the URL). The few tests that expect the
//! connection itself to fail, or need an extra header, use [`Call::try_send`] / [`Call::header`].

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

/// A client for one broker at `base` (`http://127.0.0.1:<port>`). Redirects are not followed:
/// the login endpoints answer 302s that tests look at. It keeps cookies like a browser, so the
/// cookie a connect link sets comes back with the callback; [`ApiClient::other_browser`] has none.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    pub http: Client,
}

/// A request to the broker, sent when awaited.
#[must_use = "a Call does nothing until it is awaited"]
pub struct Call(RequestBuilder);

impl Call {
    /// Sends the request; `Err` when the broker could not be reached or hung up.
    pub async fn try_send(self) -> reqwest::Result<Response> {
        self.0.send().await
    }

    /// Adds a header (e.g. `accept: application/json` on authorize).
    pub fn header(self, name: &str, value: &str) -> Self {
        Self(self.0.header(name, value))
    }

    /// Sets the body (raw bytes, or a stream).
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Self(self.0.body(body))
    }
}

impl IntoFuture for Call {
    type Output = Response;
    type IntoFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.0
                .send()
                .await
                .unwrap_or_else(|e| panic!("the broker did not answer: {e}"))
        })
    }
}

/// `?k=v&…` with each value form-encoded, for the endpoints whose query carries URLs or states.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("?{encoded}")
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .expect("a reqwest client with the default TLS setup"),
        }
    }

    /// A client for the same broker with a cookie jar of its own: another browser.
    pub fn other_browser(&self) -> Self {
        Self::new(self.base.clone())
    }

    /// `POST /v1/connect/sessions`: a link for a person to connect an account.
    pub fn create_session(&self, jwt: &str, body: &Value) -> Call {
        Call(
            self.http
                .post(self.url("/v1/connect/sessions"))
                .bearer_auth(jwt)
                .json(body),
        )
    }

    /// `GET /v1/connect/sessions/{id}`.
    pub fn session(&self, jwt: &str, id: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/connect/sessions/{id}")))
                .bearer_auth(jwt),
        )
    }

    /// A person opens a connect link (`/connect/…`, whatever host the link names: the broker's
    /// `public_url` need not be this client's base). 302 to the provider, with the cookie.
    pub fn open_link(&self, connect_url: &str) -> Call {
        let path = url::Url::parse(connect_url)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| connect_url.to_owned());
        Call(self.http.get(self.url(&path)))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `PUT /v1/tokens`: save (create or update) a token.
    pub fn save(&self, jwt: &str, body: &Value) -> Call {
        Call(
            self.http
                .put(self.url("/v1/tokens"))
                .bearer_auth(jwt)
                .json(body),
        )
    }

    /// `POST /v1/tokens/find`: the token matching `body`'s fields.
    pub fn find(&self, jwt: &str, body: &Value) -> Call {
        Call(
            self.http
                .post(self.url("/v1/tokens/find"))
                .bearer_auth(jwt)
                .json(body),
        )
    }

    /// `GET /v1/tokens/{id}`.
    pub fn get_token(&self, jwt: &str, id: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/tokens/{id}")))
                .bearer_auth(jwt),
        )
    }

    /// `GET /v1/tokens{query}` (`query` empty or `?…`).
    pub fn list(&self, jwt: &str, query: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/tokens{query}")))
                .bearer_auth(jwt),
        )
    }

    /// `DELETE /v1/tokens/{id}`.
    pub fn delete_token(&self, jwt: &str, id: &str) -> Call {
        Call(
            self.http
                .delete(self.url(&format!("/v1/tokens/{id}")))
                .bearer_auth(jwt),
        )
    }

    /// `DELETE /v1/tokens{query}` (`?confirm=all` or filters).
    pub fn delete_all(&self, jwt: &str, query: &str) -> Call {
        Call(
            self.http
                .delete(self.url(&format!("/v1/tokens{query}")))
                .bearer_auth(jwt),
        )
    }

    /// The hot path: `GET /v1/tokens/{id}/access-token{query}` (`query` empty or `?…`).
    pub fn access_token(&self, jwt: &str, id: &str, query: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/tokens/{id}/access-token{query}")))
                .bearer_auth(jwt),
        )
    }

    /// A call to the token's API through the broker: `{method} /v1/proxy/{id}/{rest}`.
    pub fn proxy(&self, jwt: &str, method: reqwest::Method, id: &str, rest: &str) -> Call {
        Call(
            self.http
                .request(method, self.url(&format!("/v1/proxy/{id}/{rest}")))
                .bearer_auth(jwt),
        )
    }

    /// The webhook outbox: `GET /v1/webhooks/events{query}`.
    pub fn webhook_events(&self, jwt: &str, query: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/webhooks/events{query}")))
                .bearer_auth(jwt),
        )
    }

    /// Sends an event again: `POST /v1/webhooks/events/{seq}/retry`.
    pub fn retry_webhook_event(&self, jwt: &str, seq: &str) -> Call {
        Call(
            self.http
                .post(self.url(&format!("/v1/webhooks/events/{seq}/retry")))
                .bearer_auth(jwt),
        )
    }

    /// Forces a refresh: `POST /v1/tokens/{id}/refresh`.
    pub fn refresh(&self, jwt: &str, id: &str) -> Call {
        Call(
            self.http
                .post(self.url(&format!("/v1/tokens/{id}/refresh")))
                .bearer_auth(jwt),
        )
    }

    /// Revokes at the provider, then deletes: `POST /v1/tokens/{id}/revoke`.
    pub fn revoke(&self, jwt: &str, id: &str) -> Call {
        Call(
            self.http
                .post(self.url(&format!("/v1/tokens/{id}/revoke")))
                .bearer_auth(jwt),
        )
    }

    /// Exchanges a grant token / authorization code: `POST /v1/oauth/exchange`.
    pub fn exchange(&self, jwt: &str, body: &Value) -> Call {
        Call(
            self.http
                .post(self.url("/v1/oauth/exchange"))
                .bearer_auth(jwt)
                .json(body),
        )
    }

    /// Starts a browser login: `GET /v1/oauth/authorize{query}` (302 to the provider, or JSON
    /// with `accept: application/json`).
    pub fn authorize(&self, jwt: &str, query: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/oauth/authorize{query}")))
                .bearer_auth(jwt),
        )
    }

    /// Where the provider sends the browser back: `GET /v1/oauth/callback{query}`, with no
    /// caller JWT (the state identifies the login).
    pub fn callback(&self, query: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/oauth/callback{query}"))),
        )
    }

    /// The audit trail: `GET /v1/audit{query}`.
    pub fn audit(&self, jwt: &str, query: &str) -> Call {
        Call(
            self.http
                .get(self.url(&format!("/v1/audit{query}")))
                .bearer_auth(jwt),
        )
    }

    /// Liveness: `GET /healthz`.
    pub fn healthz(&self) -> Call {
        self.get_public("/healthz")
    }

    /// Readiness (the database answers): `GET /readyz`.
    pub fn readyz(&self) -> Call {
        self.get_public("/readyz")
    }

    /// Prometheus metrics: `GET /metrics`.
    pub fn metrics(&self) -> Call {
        self.get_public("/metrics")
    }

    /// `GET {path}` without a caller JWT (`/healthz`, `/readyz`, `/metrics`, `/docs`, …).
    pub fn get_public(&self, path: &str) -> Call {
        Call(self.http.get(self.url(path)))
    }
}
