//! A fake OAuth provider (wiremock) on loopback, speaking RFC 6749 or Zoho's dialect.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde_json::{json, Value};
use token_broker::config::{ProviderSettings, Settings};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{now_ms, spawn_app_with, Backend, TestApp};

/// Client credentials the fake provider expects; the secret has every character that needs
/// form-encoding.
pub const CLIENT_ID: &str = "fake-client";
pub const CLIENT_SECRET: &str = "s3cr3t +/=&%?é";

pub struct FakeProvider {
    pub server: MockServer,
}

impl FakeProvider {
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// A generic OAuth 2.0 provider at this server (key `fake`).
    pub fn oauth2(&self, auth_method: &str) -> ProviderSettings {
        ProviderSettings {
            kind: Some("oauth2".into()),
            authorize_url: Some(format!("{}/authorize", self.uri())),
            token_url: Some(format!("{}/token", self.uri())),
            revoke_url: Some(format!("{}/revoke", self.uri())),
            client_id: Some(CLIENT_ID.into()),
            client_secret: Some(SecretString::from(CLIENT_SECRET)),
            auth_method: Some(auth_method.into()),
            scopes: vec!["openid".into(), "offline_access".into()],
            extra_authorize_params: BTreeMap::from([("prompt".into(), "consent".into())]),
            ..Default::default()
        }
    }

    /// Points a built-in Zoho data center at this server.
    pub fn zoho(&self) -> ProviderSettings {
        ProviderSettings {
            accounts_url: Some(self.uri()),
            client_id: Some(CLIENT_ID.into()),
            client_secret: Some(SecretString::from(CLIENT_SECRET)),
            scopes: vec!["ZohoCRM.modules.ALL".into()],
            ..Default::default()
        }
    }

    /// Answers refreshes with `body` (status 200), after `delay_ms`.
    pub async fn on_refresh(&self, status: u16, body: Value, delay_ms: u64) {
        Mock::given(method("POST"))
            .and(path_any(&["/token", "/oauth/v2/token"]))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(body)
                    .set_delay(std::time::Duration::from_millis(delay_ms)),
            )
            .mount(&self.server)
            .await;
    }

    /// Answers refreshes with a raw body.
    pub async fn on_refresh_raw(&self, status: u16, body: &str) {
        Mock::given(method("POST"))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(ResponseTemplate::new(status).set_body_string(body))
            .mount(&self.server)
            .await;
    }

    /// How many token-endpoint calls of this grant type the provider received.
    pub async fn calls(&self, grant_type: &str) -> usize {
        let needle = format!("grant_type={grant_type}");
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains(&needle))
            .count()
    }

    pub async fn requests_to(&self, p: &str) -> Vec<wiremock::Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == p)
            .collect()
    }
}

fn path_any(paths: &'static [&'static str]) -> impl wiremock::Match {
    struct AnyPath(&'static [&'static str]);
    impl wiremock::Match for AnyPath {
        fn matches(&self, request: &wiremock::Request) -> bool {
            self.0.contains(&request.url.path())
        }
    }
    AnyPath(paths)
}

/// A successful token answer.
pub fn grant(access: &str, refresh: Option<&str>, expires_in: i64) -> Value {
    let mut v = json!({ "access_token": access, "token_type": "Bearer", "expires_in": expires_in });
    if let Some(r) = refresh {
        v["refresh_token"] = json!(r);
    }
    v
}

/// Settings for an app that talks to `fake`: quick retries, no background refresh.
pub fn with_fake(s: &mut Settings, fake: &FakeProvider, auth_method: &str) {
    s.providers.insert("fake".into(), fake.oauth2(auth_method));
    s.providers.insert("zoho-eu".into(), fake.zoho());
    s.oauth.retry_min_delay_ms = 10;
    s.oauth.retry_max_delay_ms = 40;
    s.oauth.http_timeout_secs = 2;
    s.oauth.background.enabled = false;
}

/// A broker that talks to `fake` (as providers `fake` and `zoho-eu`) with client_secret_basic.
pub async fn app_with(backend: Backend, fake: &FakeProvider) -> TestApp {
    spawn_app_with(backend, |s| with_fake(s, fake, "client_secret_basic")).await
}

/// Stores a token of the fake provider whose access token expires `expires_in_ms` from now;
/// returns its id.
pub async fn seed(app: &TestApp, expires_in_ms: i64) -> String {
    let t = app
        .seed(json!({
            "user_name": "alice@example.com",
            "provider": "fake",
            "refresh_token": "rt-1",
            "access_token": "at-1",
            "expiry_time": now_ms() + expires_in_ms,
        }))
        .await;
    t["id"].as_str().unwrap().to_owned()
}
