//! Calls to providers' token and revocation endpoints: form encoding, client authentication,
//! timeouts, bounded retries with backoff and jitter, and reading answers (errors in HTTP 200
//! bodies included). How a kind of provider authenticates, revokes and states a lifetime is its
//! provider's business (`providers/`). Nothing here logs a request or response body.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{header, StatusCode};
use serde::Deserialize;

pub use super::providers::ClientCredentials;
use super::providers::Provider;
use crate::domain::Secret;

/// How a provider call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The grant (code or refresh token) is dead: a person must log in again. Never retried.
    #[error("the provider rejected the grant ({0})")]
    InvalidGrant(String),
    /// Down, slow, 5xx, 429, connection reset or a garbled answer. Retried, then reported.
    #[error("the provider is unavailable ({0})")]
    Unavailable(String),
    /// Any other refusal (bad client credentials, bad request): retrying will not help.
    #[error("the provider refused the request ({0})")]
    Rejected(String),
    /// The provider says "too many requests" (HTTP 429, or Zoho's HTTP 400 "Access Denied …
    /// too many requests"). Never retried at once: that is what gets a client locked out.
    #[error("the provider is rate limiting this client")]
    RateLimited { retry_after_secs: Option<u64> },
}

impl ProviderError {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What a token endpoint answered.
#[derive(Debug)]
pub struct TokenGrant {
    pub access_token: Secret,
    /// `None` when the provider did not rotate (Zoho never does on refresh).
    pub refresh_token: Option<Secret>,
    /// Lifetime of the access token in milliseconds, when the provider said.
    pub expires_in_ms: Option<i64>,
    pub api_domain: Option<String>,
    pub token_type: Option<String>,
    /// OpenID Connect: who logged in, signed by the provider (verified by `identity.rs`).
    pub id_token: Option<Secret>,
    /// The scopes granted, when the provider said (RFC 6749 §5.1), space-separated.
    pub scope: Option<String>,
}

/// Retry and timeout policy for provider calls.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

/// The outbound HTTP client for providers.
#[derive(Clone)]
pub struct OAuthClient {
    pub(super) http: reqwest::Client,
    retry: RetryPolicy,
}

#[derive(Deserialize)]
struct RawTokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    expires_in_sec: Option<serde_json::Value>,
    api_domain: Option<String>,
    token_type: Option<String>,
    id_token: Option<String>,
    scope: Option<String>,
    error: Option<serde_json::Value>,
    error_description: Option<serde_json::Value>,
}

fn number(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Zoho's lock-out answer: HTTP 400 `{"error": "Access Denied", "error_description": "You have
/// made too many requests continuously. Please try again after some time."}`.
fn is_rate_limit(code: &str, description: Option<&str>) -> bool {
    code.eq_ignore_ascii_case("access denied")
        || description.is_some_and(|d| d.to_ascii_lowercase().contains("too many requests"))
}

/// The `Retry-After` of a response, when it is a number of seconds (capped at an hour).
fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| s.min(3600))
}

/// Zoho and RFC 6749 codes that mean "this grant is dead".
fn is_dead_grant(code: &str) -> bool {
    matches!(
        code,
        "invalid_grant" | "invalid_code" | "invalid_token" | "invalid_refresh_token"
    )
}

impl OAuthClient {
    pub fn new(timeout: Duration, retry: RetryPolicy) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Never follow a redirect with client credentials in the request.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("token-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is available");
        Self { http, retry }
    }

    /// `provider`'s endpoints; an issuer whose discovery fails is unavailable.
    pub async fn endpoints(
        &self,
        provider: &Provider,
    ) -> Result<std::sync::Arc<super::providers::Endpoints>, ProviderError> {
        provider
            .endpoints(&self.http)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_retries)
            .with_jitter()
    }

    /// `grant_type=authorization_code`.
    pub async fn exchange_code(
        &self,
        provider: &Provider,
        creds: &ClientCredentials<'_>,
        code: &Secret,
        redirect_uri: Option<&str>,
        code_verifier: Option<&Secret>,
    ) -> Result<TokenGrant, ProviderError> {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.expose().to_owned()),
        ];
        if let Some(r) = redirect_uri {
            form.push(("redirect_uri", r.to_owned()));
        }
        if let Some(v) = code_verifier {
            form.push(("code_verifier", v.expose().to_owned()));
        }
        // A code is single-use: a retry after an ambiguous failure could only burn it, so the
        // exchange is tried once.
        self.token_call(provider, creds, &form).await
    }

    /// `grant_type=refresh_token`, retried while the provider is unavailable.
    pub async fn refresh(
        &self,
        provider: &Provider,
        creds: &ClientCredentials<'_>,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, ProviderError> {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose().to_owned()),
        ];
        (|| self.token_call(provider, creds, &form))
            .retry(self.backoff())
            .when(ProviderError::is_retryable)
            .notify(|e, after| {
                tracing::warn!(provider = %provider.key, error = %e, retry_in_ms = after.as_millis() as u64, "refresh attempt failed; retrying");
            })
            .await
    }

    /// Revokes `token` at the provider, as its kind does (RFC 7009, or Zoho's way).
    pub async fn revoke(
        &self,
        provider: &Provider,
        creds: &ClientCredentials<'_>,
        token: &Secret,
        hint: &str,
    ) -> Result<(), ProviderError> {
        let Some(url) = self.endpoints(provider).await?.revoke.clone() else {
            return Ok(());
        };
        let attempt = || async {
            let request = provider.revoke_request(&self.http, &url, creds, token, hint);
            let response = request.send().await.map_err(transport_error)?;
            let status = response.status();
            let wait = retry_after(&response);
            let body = response.bytes().await.map_err(transport_error)?;
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(ProviderError::RateLimited {
                    retry_after_secs: wait,
                });
            }
            if status.is_server_error() {
                return Err(ProviderError::Unavailable(format!(
                    "HTTP {}",
                    status.as_u16()
                )));
            }
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
            match error {
                // Already dead at the provider: revoking it is done.
                Some(code) if is_dead_grant(&code) => Ok(()),
                Some(code) => Err(ProviderError::Rejected(code)),
                None if status.is_success() => Ok(()),
                None => Err(ProviderError::Rejected(format!("HTTP {}", status.as_u16()))),
            }
        };
        attempt
            .retry(self.backoff())
            .when(ProviderError::is_retryable)
            .await
    }

    async fn token_call(
        &self,
        provider: &Provider,
        creds: &ClientCredentials<'_>,
        form: &[(&'static str, String)],
    ) -> Result<TokenGrant, ProviderError> {
        let token_url = self.endpoints(provider).await?.token.clone();
        let request = provider.token_request(
            self.http
                .post(token_url)
                .header(header::ACCEPT, "application/json"),
            creds,
            form.to_vec(),
        );
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let wait = retry_after(&response);
        let body = response.bytes().await.map_err(transport_error)?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::RateLimited {
                retry_after_secs: wait,
            });
        }
        if status.is_server_error() {
            return Err(ProviderError::Unavailable(format!(
                "HTTP {}",
                status.as_u16()
            )));
        }
        let parsed: Result<RawTokenAnswer, _> = serde_json::from_slice(&body);
        let answer = match parsed {
            Ok(a) => a,
            Err(_) if status.is_success() => {
                return Err(ProviderError::Unavailable(
                    "unreadable token response".into(),
                ))
            }
            Err(_) => return Err(ProviderError::Rejected(format!("HTTP {}", status.as_u16()))),
        };
        // Zoho answers errors with HTTP 200 and {"error": "..."}.
        if let Some(error) = answer.error {
            let code = error.as_str().unwrap_or("error").to_owned();
            let description = answer.error_description.as_ref().and_then(|d| d.as_str());
            if is_rate_limit(&code, description) {
                return Err(ProviderError::RateLimited {
                    retry_after_secs: wait,
                });
            }
            return Err(if is_dead_grant(&code) {
                ProviderError::InvalidGrant(code)
            } else {
                ProviderError::Rejected(code)
            });
        }
        if !status.is_success() {
            return Err(ProviderError::Rejected(format!("HTTP {}", status.as_u16())));
        }
        let access_token = answer
            .access_token
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ProviderError::Unavailable("no access_token in the answer".into()))?;
        let expires_in_ms = provider
            .lifetime(answer.expires_in.as_ref(), answer.expires_in_sec.as_ref())
            .and_then(number)
            .map(|s| s * 1000);
        Ok(TokenGrant {
            access_token: Secret::new(access_token),
            refresh_token: answer
                .refresh_token
                .filter(|r| !r.is_empty())
                .map(Secret::new),
            expires_in_ms,
            api_domain: answer.api_domain,
            token_type: answer.token_type,
            id_token: answer.id_token.filter(|t| !t.is_empty()).map(Secret::new),
            scope: answer.scope,
        })
    }
}

/// Transport failures, worded without the URL (it can carry a token in Zoho's revoke call).
fn transport_error(e: reqwest::Error) -> ProviderError {
    let why = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    ProviderError::Unavailable(why.into())
}
