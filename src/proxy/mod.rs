//! `/v1/proxy/{id}/{path}`: the broker calls the provider's API with a stored token and hands
//! back only the answer, so the calling service never holds even the access token.
//!
//! The upstream is the token's `api_domain` only when its provider lists it (`upstream.rs`); the
//! caller picks the method, path, query, headers and body. The provider's status, headers and
//! body come back unchanged (less hop-by-hop headers), streamed. When the API answers 401 and
//! says the access token is invalid, the token is refreshed once (single flight, like every
//! refresh) and the call sent again, if its body was small enough to hold.

mod body;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::{stream, StreamExt, TryStreamExt};

use crate::config::ProxySettings;
use crate::domain::{Token, TokenId};
use crate::error::{Error, ErrorCode, Result};
use crate::oauth::OAuthService;
use crate::tokens::Tenancy;
use body::{BodyError, RequestBody};

/// How much of a 401's body is read to see whether it says the access token is invalid.
const PEEK_401_BYTES: usize = 64 * 1024;

/// A caller's request, as it is to be sent on.
pub struct Outgoing {
    pub method: Method,
    /// The path and query after `/v1/proxy/{id}`.
    pub rest: String,
    pub headers: HeaderMap,
    pub body: Body,
}

/// Calls providers' APIs with stored tokens.
#[derive(Clone)]
pub struct Proxy {
    oauth: OAuthService,
    http: reqwest::Client,
    settings: Arc<ProxySettings>,
}

impl Proxy {
    pub fn new(oauth: OAuthService, settings: ProxySettings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .read_timeout(Duration::from_secs(settings.timeout_secs))
            // A redirect goes back to the caller as it came: following it would send the
            // token wherever the API pointed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("token-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is available");
        Self {
            oauth,
            http,
            settings: Arc::new(settings),
        }
    }

    /// Sends `call` to token `id`'s API and returns the API's answer.
    pub async fn forward(
        &self,
        tenancy: &Tenancy,
        id: &TokenId,
        call: Outgoing,
    ) -> Result<Response> {
        let started = Instant::now();
        let min_validity = self.oauth.settings().default_min_validity_ms;
        let token = self.oauth.access_token(tenancy, id, min_validity).await?;
        let provider = self.oauth.providers().get(&token.provider).ok_or_else(|| {
            upstream_error(
                ErrorCode::UpstreamNotAllowed,
                "the token's provider is not configured",
            )
        })?;
        let url = upstream::target(
            &provider.api_base_urls,
            token.api_domain.as_deref(),
            &call.rest,
        )?;
        if let Some(length) = content_length(&call.headers) {
            if length > self.settings.max_request_bytes {
                return Err(too_large(self.settings.max_request_bytes));
            }
        }
        let mut body = RequestBody::read(
            call.body,
            self.settings.replay_buffer_bytes,
            self.settings.max_request_bytes,
        )
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(self.settings.max_request_bytes),
            BodyError::Unreadable => {
                Error::bad_request(ErrorCode::UnreadableBody, ErrorCode::UnreadableBody.text())
            }
        })?;
        let headers = body::forwarded(&call.headers);
        let send = |token: &Token, body: reqwest::Body| {
            let access = token
                .access_token
                .as_ref()
                .map(|a| a.expose())
                .unwrap_or("");
            let mut auth = HeaderValue::from_str(&provider.api_authorization(access))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            auth.set_sensitive(true);
            self.http
                .request(call.method.clone(), url.clone())
                .headers(headers.clone())
                .header(header::AUTHORIZATION, auth)
                .body(body)
        };

        let answer = self.send(send(&token, body.send()), &body).await?;
        let mut replayed = false;
        let answer = if answer.status() == StatusCode::UNAUTHORIZED && body.can_replay() {
            let (answer, says_invalid) = peek_401(answer, &provider).await;
            if !says_invalid {
                answer
            } else {
                match self.oauth.refresh(tenancy, id, min_validity, true).await {
                    Ok(fresh) if fresh.access_token != token.access_token => {
                        replayed = true;
                        self.send(send(&fresh, body.send()), &body).await?
                    }
                    // Not refreshed (needs re-authorization, the provider is down, the budget
                    // is spent): the API's own answer says what happened.
                    _ => answer,
                }
            }
        } else {
            answer
        };
        let status = answer.status().as_u16();
        let elapsed = started.elapsed();
        record(
            &token.provider.to_string(),
            &call.method,
            status,
            elapsed,
            replayed,
        );
        Ok(self.pass_back(answer))
    }

    async fn send(&self, request: reqwest::RequestBuilder, body: &RequestBody) -> Result<Upstream> {
        let timeout = Duration::from_secs(self.settings.timeout_secs);
        match tokio::time::timeout(timeout, request.send()).await {
            Ok(Ok(response)) => Ok(Upstream::Live(response)),
            Ok(Err(_)) if body.was_too_large() => Err(too_large(self.settings.max_request_bytes)),
            Ok(Err(e)) if e.is_timeout() => Err(upstream_error(
                ErrorCode::UpstreamTimeout,
                ErrorCode::UpstreamTimeout.text(),
            )),
            Ok(Err(e)) => {
                tracing::info!(error = %without_url(e), "the provider's API could not be reached");
                Err(upstream_error(
                    ErrorCode::UpstreamUnavailable,
                    ErrorCode::UpstreamUnavailable.text(),
                ))
            }
            Err(_) => Err(upstream_error(
                ErrorCode::UpstreamTimeout,
                ErrorCode::UpstreamTimeout.text(),
            )),
        }
    }

    /// The API's answer as the caller gets it: status and headers as sent (less hop-by-hop),
    /// the body streamed and cut off past `max_response_bytes`.
    fn pass_back(&self, answer: Upstream) -> Response {
        let max = self.settings.max_response_bytes;
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (status, headers, chunks) = match answer {
            Upstream::Live(r) => {
                let (status, headers) = (r.status(), r.headers().clone());
                let chunks = r.bytes_stream().map_err(std::io::Error::other).boxed();
                (status, headers, chunks)
            }
            Upstream::Peeked {
                status,
                headers,
                head,
                rest,
            } => (
                status,
                headers,
                stream::iter([Ok(head)]).chain(rest).boxed(),
            ),
        };
        let mut response = Response::new(Body::from_stream(body::bounded(chunks, max, cut)));
        *response.status_mut() = status;
        *response.headers_mut() = body::forwarded(&headers);
        response
    }
}

/// An answer from the API: as received, or with the start of its body read already.
enum Upstream {
    Live(reqwest::Response),
    Peeked {
        status: StatusCode,
        headers: HeaderMap,
        head: Bytes,
        rest: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

impl Upstream {
    fn status(&self) -> StatusCode {
        match self {
            Self::Live(r) => r.status(),
            Self::Peeked { status, .. } => *status,
        }
    }
}

/// Reads the start of a 401's body: whether the provider says the access token is invalid.
async fn peek_401(
    answer: Upstream,
    provider: &crate::oauth::providers::Provider,
) -> (Upstream, bool) {
    let Upstream::Live(response) = answer else {
        return (answer, false);
    };
    let (status, headers) = (response.status(), response.headers().clone());
    let mut chunks = response
        .bytes_stream()
        .map_err(std::io::Error::other)
        .boxed();
    let mut head = Vec::new();
    let mut failed = None;
    while head.len() < PEEK_401_BYTES {
        match chunks.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => break,
        }
    }
    let www = headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok());
    let says_invalid = failed.is_none() && provider.says_token_invalid(www, &head);
    let rest = match failed {
        Some(e) => stream::iter([Err(e)]).boxed(),
        None => chunks,
    };
    (
        Upstream::Peeked {
            status,
            headers,
            head: head.into(),
            rest,
        },
        says_invalid,
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(max: u64) -> Error {
    Error::PayloadTooLarge(format!(
        "the request body is larger than proxy.max_request_bytes ({max})"
    ))
}

fn upstream_error(code: ErrorCode, message: &str) -> Error {
    Error::Upstream {
        code,
        message: message.into(),
    }
}

/// A reqwest error without its URL (whose query string may carry anything the caller sent).
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

/// Metrics of one proxied call: by provider, method and status; its latency by provider.
fn record(provider: &str, method: &Method, status: u16, elapsed: Duration, replayed: bool) {
    let method = crate::metrics::method_label(method);
    metrics::counter!("proxy_requests_total", "provider" => provider.to_owned(),
        "method" => method, "status" => status.to_string())
    .increment(1);
    metrics::histogram!("proxy_request_duration_seconds", "provider" => provider.to_owned())
        .record(elapsed.as_secs_f64());
    if replayed {
        metrics::counter!("proxy_replays_total", "provider" => provider.to_owned()).increment(1);
    }
    // The latency is in the histogram; the audit row says what answered, so calls alike fold.
    crate::audit::note_text(format!(
        "{method} answered {status}{}",
        if replayed { " after a refresh" } else { "" }
    ));
}
