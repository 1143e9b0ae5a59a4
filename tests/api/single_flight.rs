//! Single flight: any number of concurrent requests for one expired token make exactly one call to
//! the provider — inside one broker and across broker processes sharing a database.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::fake_provider::{grant, with_fake, FakeProvider, CLIENT_SECRET};
use crate::helpers::{now_ms, spawn_app_with, Backend, BackendExt, TestDatabase};
use crate::processes::BrokerCli;

crate::on_every_backend!(concurrent_callers_in_one_broker_cause_one_refresh);

async fn concurrent_callers_in_one_broker_cause_one_refresh(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-fresh", Some("rt-2"), 3600), 300)
        .await;
    let app = spawn_app_with(backend, |s| with_fake(s, &fake, "client_secret_basic")).await;
    let id = app
        .seed(json!({ "user_name": "storm@example.com", "provider": "fake", "refresh_token": "rt-1", "access_token": "at-old", "expiry_time": now_ms() - 1000 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = app.jwt("tokens:access");
    let answers = storm(&[&app.api], &jwt, &id, 100).await;
    assert!(
        answers
            .iter()
            .all(|(s, t)| *s == StatusCode::OK && t == "at-fresh"),
        "{answers:?}"
    );
    assert_eq!(fake.calls("refresh_token").await, 1);
}

/// `n` concurrent access-token requests for token `id`, spread over the `brokers`; returns each
/// answer's status and access token.
async fn storm(brokers: &[&ApiClient], jwt: &str, id: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let calls = (0..n).map(|i| {
        let call = brokers[i % brokers.len()].access_token(jwt, id, "");
        async move {
            let r = call.await;
            (
                r.status(),
                r.json::<Value>().await.unwrap()["access_token"].clone(),
            )
        }
    });
    join_all(calls).await
}

async fn two_processes_on_one_database(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-fresh", Some("rt-2"), 3600), 500)
        .await;
    let db = TestDatabase::new(backend).await;
    let secret = "two-process-test-hs256-secret-0123456789";
    let config = format!(
        r#"
[database]
url = "{db}"
[crypto]
active_key_id = "k1"
lookup_key = "{lookup}"
[crypto.keys]
k1 = "{key}"
[auth]
hs256_secret = "{secret}"
[oauth]
retry_min_delay_ms = 10
retry_max_delay_ms = 40
[oauth.background]
enabled = false
[providers.fake]
kind = "oauth2"
authorize_url = "{uri}/authorize"
token_url = "{uri}/token"
client_id = "fake-client"
client_secret = "{client_secret}"
"#,
        db = db.url,
        lookup = secrecy::ExposeSecret::expose_secret(&token_broker::crypto::generate_key()),
        key = secrecy::ExposeSecret::expose_secret(&token_broker::crypto::generate_key()),
        uri = fake.uri(),
        client_secret = CLIENT_SECRET,
    );
    let cli = BrokerCli::with_config(&config);
    let a = cli.serve(&[]).await;
    let b = cli.serve(&[]).await;

    let jwt = token_broker::auth::mint(
        &secrecy::SecretString::from(secret),
        &token_broker::auth::MintRequest {
            sub: "test".into(),
            scope: "tokens:write tokens:access".into(),
            tenant: token_broker::auth::ALL_TENANTS.into(),
            ttl_secs: 600,
            issuer: None,
            audience: None,
        },
    )
    .unwrap();
    let saved: Value = a
        .save(&jwt, &json!({ "user_name": "replicas@example.com", "provider": "fake", "refresh_token": "rt-1", "access_token": "at-old", "expiry_time": now_ms() - 1000 }))
        .await
        .json()
        .await
        .unwrap();
    let id = saved["id"].as_str().unwrap().to_owned();

    let answers = storm(&[&a.api, &b.api], &jwt, &id, 100).await;
    assert!(
        answers
            .iter()
            .all(|(s, t)| *s == StatusCode::OK && t == "at-fresh"),
        "{answers:?}"
    );
    assert_eq!(
        fake.calls("refresh_token").await,
        1,
        "exactly one provider call for 100 callers on two brokers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_broker_processes_on_one_postgres_refresh_once() {
    if Backend::Postgres.enabled() {
        two_processes_on_one_database(Backend::Postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_broker_processes_on_one_mysql_refresh_once() {
    if Backend::MySql.enabled() {
        two_processes_on_one_database(Backend::MySql).await;
    }
}
