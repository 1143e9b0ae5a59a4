//! Webhooks: an application is told at once when a connection changes, by signed events it can
//! verify with any Standard Webhooks library — here the reference one from PyPI, in
//! `webhook_receiver`. Every event is in the outbox with its change, so none is lost to a
//! receiver that is down or a broker killed mid-way.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use token_broker::config::{EndpointSettings, Settings};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_provider::{with_fake, FakeProvider};
use crate::helpers::{now_ms, spawn_app, spawn_app_with, Backend, TestApp};
use crate::processes::BrokerCli;
use crate::webhook_receiver::Receiver;

crate::on_every_backend!(
    every_change_of_a_connection_is_delivered_signed_and_in_order,
    a_receiver_that_was_down_gets_every_event_when_it_comes_back,
    an_event_given_up_on_is_listed_and_can_be_sent_again,
    an_event_committed_before_a_kill_9_is_delivered_after_the_restart,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Webhook settings for quick tests: endpoint `app` at `receiver`, retries after 50–200 ms.
fn with_endpoint(s: &mut Settings, receiver: &Receiver) {
    s.webhooks.endpoints.insert(
        "app".into(),
        EndpointSettings {
            url: receiver.url("app"),
            secret: SECRET.to_owned().into(),
            events: vec![],
            tenant: None,
        },
    );
    s.webhooks.poll_interval_ms = 50;
    s.webhooks.retry_min_delay_ms = 50;
    s.webhooks.retry_max_delay_ms = 200;
    s.webhooks.timeout_secs = 2;
}

async fn seed(app: &TestApp, user: &str) -> String {
    let t = app
        .seed(
            json!({ "user_name": user, "provider": "fake", "refresh_token": format!("rt-{user}"),
                      "access_token": format!("at-{user}"), "expiry_time": now_ms() - 1000 }),
        )
        .await;
    t["id"].as_str().unwrap().to_owned()
}

/// The event types per token, in the order they arrived.
fn by_token(payloads: &[Value]) -> Vec<(String, String)> {
    payloads
        .iter()
        .map(|p| {
            let token = p["data"]["token_id"].as_str().unwrap_or("*").to_owned();
            (token, p["type"].as_str().unwrap().to_owned())
        })
        .collect()
}

async fn every_change_of_a_connection_is_delivered_signed_and_in_order(backend: Backend) {
    let receiver = Receiver::start(SECRET, true).await;
    let fake = FakeProvider::start().await;
    let app = spawn_app_with(backend, |s| {
        with_fake(s, &fake, "client_secret_post");
        with_endpoint(s, &receiver);
    })
    .await;

    // An exchange creates a connection; a second one for the same user replaces it.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at-exchanged", "refresh_token": "rt-exchanged", "expires_in": 3600 })))
        .mount(&fake.server)
        .await;
    let jwt = app.jwt("tokens:write tokens:read");
    for code in ["code-1", "code-2"] {
        let r = app
            .exchange(&jwt, &json!({ "grant_token": code, "provider": "fake", "user_name": "carol@example.com" }))
            .await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let carol = app
        .find(&app.admin(), &json!({ "user_name": "carol@example.com" }))
        .await;
    let carol = carol.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The provider refuses refreshes: three in a row for one token, for good for another.
    let flaky = seed(&app, "dave@example.com").await;
    let dead = seed(&app, "erin@example.com").await;
    Mock::given(method("POST"))
        .and(body_string_contains("rt-dave"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("rt-erin"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&fake.server)
        .await;
    let access = app.jwt("tokens:access");
    for _ in 0..3 {
        let r = app.access_token(&access, &flaky, "").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(app.access_token(&access, &dead, "").await.status(), 409);

    // Revoked by a save, then deleted; and everything deleted at once.
    let admin = app.admin();
    let r = app
        .save(&admin, &json!({ "id": carol, "status": "revoked" }))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.delete_token(&admin, &carol).await.status(), 204);
    assert_eq!(app.delete_all(&admin, "?confirm=all").await.status(), 200);

    let payloads = receiver.payloads(7).await;
    let seen = by_token(&payloads);
    let of = |id: &str| -> Vec<String> {
        seen.iter()
            .filter(|(t, _)| t == id)
            .map(|(_, k)| k.clone())
            .collect()
    };
    assert_eq!(
        of(&carol),
        [
            "connection.created",
            "connection.replaced",
            "token.revoked",
            "token.deleted"
        ]
    );
    assert_eq!(of(&flaky), ["token.refresh_failing"]);
    assert_eq!(of(&dead), ["token.needs_reauth"]);
    assert_eq!(of("*"), ["tokens.deleted"]);
    let failing = payloads
        .iter()
        .find(|p| p["type"] == "token.refresh_failing")
        .unwrap();
    assert_eq!(failing["data"]["failures"], 3);
    assert_eq!(failing["data"]["user_name"], "dave@example.com");
    assert_eq!(failing["data"]["provider"], "fake");
    assert!(failing["timestamp"].as_str().unwrap().ends_with('Z'));
    let deleted_all = payloads
        .iter()
        .find(|p| p["type"] == "tokens.deleted")
        .unwrap();
    assert_eq!(deleted_all["data"]["count"], 2);
    // No token or secret value in any event.
    let all = serde_json::to_string(&payloads).unwrap();
    for secret in [
        "rt-exchanged",
        "at-exchanged",
        "rt-dave",
        "at-dave",
        "rt-erin",
        "at-erin",
        "code-1",
    ] {
        assert!(!all.contains(secret), "{secret} in an event");
    }
    // Each message has its own id; every one was verified by the reference library.
    let records = receiver.records().await;
    let ids: std::collections::HashSet<_> = records.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids.len(), records.len());
    let metrics = app.metrics().await.text().await.unwrap();
    assert!(metrics.contains(r#"webhook_deliveries_total{endpoint="app",outcome="delivered"}"#));
    assert!(metrics.contains("webhook_delivery_duration_seconds"));
    app.stop().await;
}

async fn a_receiver_that_was_down_gets_every_event_when_it_comes_back(backend: Backend) {
    let receiver = Receiver::start(SECRET, false).await;
    let fake = FakeProvider::start().await;
    let app = spawn_app_with(backend, |s| {
        with_fake(s, &fake, "client_secret_post");
        with_endpoint(s, &receiver);
    })
    .await;
    let admin = app.admin();
    let (a, b) = (
        seed(&app, "a@example.com").await,
        seed(&app, "b@example.com").await,
    );
    for id in [&a, &b] {
        for status in ["revoked", "needs_reauth", "revoked"] {
            let r = app
                .save(&admin, &json!({ "id": id, "status": status }))
                .await;
            assert_eq!(r.status(), 200);
        }
        assert_eq!(app.delete_token(&admin, id).await.status(), 204);
    }
    // Down: every attempt refused, retried with backoff.
    let started = Instant::now();
    while receiver.refused().await < 6 {
        assert!(started.elapsed() < Duration::from_secs(10), "no retries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending: Value = app
        .webhook_events(&admin, "?state=pending")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["events"].as_array().unwrap().len(), 8);
    receiver.set_up(true).await;

    let seen = by_token(&receiver.payloads(8).await);
    for id in [&a, &b] {
        let kinds: Vec<&str> = seen
            .iter()
            .filter(|(t, _)| t == id)
            .map(|(_, k)| k.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "token.revoked",
                "token.needs_reauth",
                "token.revoked",
                "token.deleted"
            ],
            "in order, none lost"
        );
    }
    let delivered: Value = app
        .webhook_events(&admin, "?state=delivered&limit=100")
        .await
        .json()
        .await
        .unwrap();
    let events = delivered["events"].as_array().unwrap();
    assert_eq!(events.len(), 8);
    assert!(events.iter().any(|e| e["attempts"].as_i64().unwrap() > 1));
    app.stop().await;
}

async fn an_event_given_up_on_is_listed_and_can_be_sent_again(backend: Backend) {
    let receiver = Receiver::start(SECRET, false).await;
    let app = spawn_app_with(backend, |s| {
        with_endpoint(s, &receiver);
        s.webhooks.max_attempts = 2;
    })
    .await;
    let admin = app.admin();
    let t = app
        .seed(json!({ "user_name": "f@example.com", "refresh_token": "rt-f" }))
        .await;
    let id = t["id"].as_str().unwrap();
    assert_eq!(app.delete_token(&admin, id).await.status(), 204);
    let started = Instant::now();
    let failed = loop {
        let page: Value = app
            .webhook_events(&admin, "?state=failed")
            .await
            .json()
            .await
            .unwrap();
        if let Some(e) = page["events"].as_array().unwrap().first() {
            break e.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never given up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed["type"], "token.deleted");
    assert_eq!(failed["attempts"], 2);
    assert_eq!(failed["last_status"], 503);
    assert_eq!(failed["payload"]["data"]["token_id"], id);
    // Another tenant's caller sees none of it.
    let other = app.jwt_for("other", "tokens:admin", Some("other"));
    let page: Value = app.webhook_events(&other, "").await.json().await.unwrap();
    assert!(page["events"].as_array().unwrap().is_empty());
    let seq = failed["seq"].as_i64().unwrap().to_string();
    assert_eq!(app.retry_webhook_event(&other, &seq).await.status(), 404);

    receiver.set_up(true).await;
    let r = app.retry_webhook_event(&admin, &seq).await;
    assert_eq!(r.status(), 200);
    let payloads = receiver.payloads(1).await;
    assert_eq!(payloads[0]["type"], "token.deleted");
    app.stop().await;
}

/// The change and its event commit together: a broker killed right after a delete commits
/// (before it could deliver) leaves the event to the next broker that starts.
async fn an_event_committed_before_a_kill_9_is_delivered_after_the_restart(backend: Backend) {
    let receiver = Receiver::start(SECRET, false).await;
    let app = spawn_app(backend).await;
    let cli = BrokerCli::for_app(&app);
    let url = receiver.url("app");
    let env = [
        ("TOKEN_BROKER__WEBHOOKS__ENDPOINTS__APP__URL", url.as_str()),
        ("TOKEN_BROKER__WEBHOOKS__ENDPOINTS__APP__SECRET", SECRET),
        ("TOKEN_BROKER__WEBHOOKS__POLL_INTERVAL_MS", "50"),
        ("TOKEN_BROKER__WEBHOOKS__RETRY_MIN_DELAY_MS", "50"),
        ("TOKEN_BROKER__WEBHOOKS__RETRY_MAX_DELAY_MS", "100"),
        ("TOKEN_BROKER__WEBHOOKS__TIMEOUT_SECS", "1"),
        ("TOKEN_BROKER__OAUTH__BACKGROUND__ENABLED", "false"),
    ];
    let mut broker = cli.serve(&env).await;
    let admin = app.admin();
    let r = broker
        .save(
            &admin,
            &json!({ "user_name": "g@example.com", "refresh_token": "rt-g" }),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(broker.delete_token(&admin, &id).await.status(), 204);
    broker.kill_hard();

    let pending: Value = app
        .webhook_events(&admin, "?state=pending")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["events"][0]["type"], "token.deleted");
    receiver.set_up(true).await;
    let _broker = cli.serve(&env).await;
    let payloads = receiver.payloads(1).await;
    assert_eq!(payloads[0]["type"], "token.deleted");
    assert_eq!(payloads[0]["data"]["token_id"], id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_bad_endpoint_secret_stops_the_start_with_the_key_named() {
    let r = crate::processes::BrokerCli::with_config(
        "[webhooks.endpoints.app]\nurl = 'http://127.0.0.1:9/x'\nsecret = 'not-a-whsec'\n",
    )
    .run(&["migrate"])
    .await;
    r.assert_code(78)
        .assert_stderr("webhooks.endpoints.app.secret")
        .assert_no_secret(&["not-a-whsec"]);
}
