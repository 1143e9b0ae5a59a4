//! Several brokers on one database, as replicas behind a load balancer. Each answers the
//! access-token hot path from memory (`tokens.access_cache_ttl_ms`): its own writes show at
//! once, another replica's within the change feed's poll interval (`tokens.change_poll_ms`; the
//! cache's time to live when the feed is off), and a token in steady use is re-checked in the
//! background rather than expiring under its callers.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::fake_provider::{grant, with_fake, FakeProvider};
use crate::helpers::{now_ms, spawn_app, spawn_app_with, Backend, TestApp};
use crate::processes::BrokerCli;

crate::on_every_backend!(
    three_broker_processes_agree_within_the_change_poll,
    three_replicas_agree_within_the_change_poll_not_the_cache_ttl,
    a_replicas_own_writes_show_at_once,
    another_replicas_changes_show_within_the_cache_ttl,
    a_token_in_steady_use_never_goes_back_to_an_older_value,
    a_refresh_by_another_replica_shows_within_the_cache_ttl,
);

const TTL_MS: u64 = 400;

/// Two replicas with the change feed off: what the cache's time to live alone guarantees (as
/// while the feed cannot be read).
async fn two_replicas(backend: Backend) -> (TestApp, TestApp) {
    let a = spawn_app_with(backend, |s| {
        s.tokens.access_cache_ttl_ms = TTL_MS;
        s.tokens.change_poll_ms = 0;
    })
    .await;
    let b = a.replica().await;
    (a, b)
}

async fn seed(app: &TestApp) -> String {
    let far = now_ms() + 3_600_000;
    let t = app
        .seed(
            json!({ "user_name": "alice@example.com", "refresh_token": "rt-1",
                      "access_token": "at-1", "expiry_time": far }),
        )
        .await;
    t["id"].as_str().unwrap().to_owned()
}

/// The access token a replica hands out for `id`, or the status it answers instead.
async fn access_token(app: &TestApp, id: &str) -> Result<String, StatusCode> {
    let r = app.access_token(&app.jwt("tokens:access"), id, "").await;
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    let body: Value = r.json().await.unwrap();
    Ok(body["access_token"].as_str().unwrap().to_owned())
}

/// Polls a broker until its hot path answers `want` for `id`; returns how long that took.
async fn until_broker_answers(
    api: &ApiClient,
    jwt: &str,
    id: &str,
    want: Result<&str, StatusCode>,
) -> Duration {
    let started = Instant::now();
    loop {
        let r = api.access_token(jwt, id, "").await;
        let got = match r.status() {
            StatusCode::OK => Ok(r.json::<Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_owned()),
            status => Err(status),
        };
        if got.as_deref().map_err(|s| *s) == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three `token-broker serve` processes on one database, each caching tokens for a minute: a
/// save, a revoke and a delete through one are answered by the other two within a fraction
/// of a second (the change feed is read every 50 ms), not after the cache's minute.
async fn three_broker_processes_agree_within_the_change_poll(backend: Backend) {
    const BOUND: Duration = Duration::from_millis(500);
    let app = spawn_app(backend).await;
    let cli = BrokerCli::for_app(&app);
    let env = [
        ("TOKEN_BROKER__TOKENS__ACCESS_CACHE_TTL_MS", "60000"),
        ("TOKEN_BROKER__TOKENS__CHANGE_POLL_MS", "50"),
        ("TOKEN_BROKER__OAUTH__BACKGROUND__ENABLED", "false"),
    ];
    let brokers = [
        cli.serve(&env).await,
        cli.serve(&env).await,
        cli.serve(&env).await,
    ];
    let [a, b, c] = brokers.each_ref().map(|p| &**p);
    let (admin, caller) = (app.admin(), app.jwt("tokens:access"));
    let far = now_ms() + 3_600_000;
    let r = a
        .save(
            &admin,
            &json!({ "user_name": "alice@example.com", "refresh_token": "rt-1",
                                "access_token": "at-1", "expiry_time": far }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for broker in [a, b, c] {
        until_broker_answers(broker, &caller, &id, Ok("at-1")).await;
    }
    let mut seen = Vec::new();

    let r = b
        .save(&admin, &json!({ "id": id, "access_token": "at-2" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    for broker in [a, c] {
        seen.push(until_broker_answers(broker, &caller, &id, Ok("at-2")).await);
    }
    let r = c
        .save(&admin, &json!({ "id": id, "status": "revoked" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    for broker in [a, b] {
        seen.push(until_broker_answers(broker, &caller, &id, Err(StatusCode::CONFLICT)).await);
    }
    assert_eq!(a.delete_token(&admin, &id).await.status(), 204);
    for broker in [b, c] {
        seen.push(until_broker_answers(broker, &caller, &id, Err(StatusCode::NOT_FOUND)).await);
    }
    eprintln!("broker processes saw the change after {seen:?}");
    assert!(seen.iter().all(|d| *d < BOUND), "{seen:?}");
    app.stop().await;
}

async fn save(app: &TestApp, body: Value) {
    let r = app.save(&app.admin(), &body).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// Polls `app` until it answers `want`; returns how long that took.
async fn until_answers(app: &TestApp, id: &str, want: Result<&str, StatusCode>) -> Duration {
    let started = Instant::now();
    loop {
        let got = access_token(app, id).await;
        if got.as_deref().map_err(|s| *s) == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three brokers with a cache that would keep a token a minute: a save, a refresh, a revoke, a
/// delete and a delete_tokens on one are seen by the other two within a fraction of a second,
/// through the change feed they poll every 50 ms.
async fn three_replicas_agree_within_the_change_poll_not_the_cache_ttl(backend: Backend) {
    const BOUND: Duration = Duration::from_millis(1000);
    let fake = FakeProvider::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/revoke"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&fake.server)
        .await;
    let a = spawn_app_with(backend, |s| {
        s.tokens.access_cache_ttl_ms = 60_000;
        s.tokens.change_poll_ms = 50;
        with_fake(s, &fake, "client_secret_post");
    })
    .await;
    let (b, c) = (a.replica().await, a.replica().await);
    let id = seed(&a).await;
    for replica in [&a, &b, &c] {
        assert_eq!(access_token(replica, &id).await, Ok("at-1".into()));
    }
    let mut seen = Vec::new();

    save(&a, json!({ "id": id, "access_token": "at-2" })).await;
    for replica in [&b, &c] {
        seen.push(until_answers(replica, &id, Ok("at-2")).await);
    }
    assert_eq!(a.delete_token(&a.admin(), &id).await.status(), 204);
    for replica in [&b, &c] {
        seen.push(until_answers(replica, &id, Err(StatusCode::NOT_FOUND)).await);
    }
    // A refresh on one replica, then a revoke at the provider on another.
    let far = now_ms() + 3_600_000;
    let t = a
        .seed(json!({ "user_name": "bob@example.com", "provider": "fake",
                      "refresh_token": "rt-1", "access_token": "at-1", "expiry_time": far }))
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    for replica in [&a, &b, &c] {
        assert_eq!(access_token(replica, &id).await, Ok("at-1".into()));
    }
    fake.on_refresh(200, grant("at-2", Some("rt-2"), 3600), 0)
        .await;
    let r = a.refresh(&a.jwt("tokens:write"), &id).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    for replica in [&b, &c] {
        seen.push(until_answers(replica, &id, Ok("at-2")).await);
    }
    assert_eq!(b.revoke(&b.jwt("tokens:write"), &id).await.status(), 204);
    for replica in [&a, &c] {
        seen.push(until_answers(replica, &id, Err(StatusCode::NOT_FOUND)).await);
    }
    // delete_tokens: every token, whatever was cached.
    let id = seed(&b).await;
    for replica in [&a, &b, &c] {
        assert_eq!(access_token(replica, &id).await, Ok("at-1".into()));
    }
    let r = c.delete_all(&c.admin(), "?confirm=all").await;
    assert_eq!(r.status(), StatusCode::OK);
    for replica in [&a, &b] {
        seen.push(until_answers(replica, &id, Err(StatusCode::NOT_FOUND)).await);
    }
    eprintln!("replicas saw the change after {seen:?}");
    assert!(seen.iter().all(|d| *d < BOUND), "{seen:?}");
}

async fn a_replicas_own_writes_show_at_once(backend: Backend) {
    let (a, b) = two_replicas(backend).await;
    let id = seed(&a).await;
    assert_eq!(access_token(&a, &id).await, Ok("at-1".into()));

    save(&a, json!({ "id": id, "access_token": "at-2" })).await;
    assert_eq!(access_token(&a, &id).await, Ok("at-2".into()));

    assert_eq!(a.delete_token(&a.admin(), &id).await.status(), 204);
    assert_eq!(access_token(&a, &id).await, Err(StatusCode::NOT_FOUND));
    b.stop().await;
    a.stop().await;
}

async fn another_replicas_changes_show_within_the_cache_ttl(backend: Backend) {
    let (a, b) = two_replicas(backend).await;
    let id = seed(&a).await;
    assert_eq!(access_token(&a, &id).await, Ok("at-1".into()));

    // Polling every 20 ms, plus a request's own time: the bound is the TTL with some slack.
    let bound = Duration::from_millis(TTL_MS + 300);

    save(&b, json!({ "id": id, "access_token": "at-2" })).await;
    let took = until_answers(&a, &id, Ok("at-2")).await;
    assert!(took <= bound, "a new access token took {took:?}");

    save(&b, json!({ "id": id, "status": "revoked" })).await;
    let took = until_answers(&a, &id, Err(StatusCode::CONFLICT)).await;
    assert!(took <= bound, "a revocation took {took:?}");

    assert_eq!(b.delete_token(&b.admin(), &id).await.status(), 204);
    let took = until_answers(&a, &id, Err(StatusCode::NOT_FOUND)).await;
    assert!(took <= bound, "a deletion took {took:?}");
    b.stop().await;
    a.stop().await;
}

async fn a_token_in_steady_use_never_goes_back_to_an_older_value(backend: Backend) {
    let (a, b) = two_replicas(backend).await;
    let id = seed(&a).await;

    // Steady use for several TTLs (the copy is re-read in the background meanwhile), with a
    // change through the other replica and then one through this one along the way.
    let mut seen: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut saved_locally: Option<Instant> = None;
    let mut saved_elsewhere = false;
    loop {
        let got = access_token(&a, &id).await.expect("served throughout");
        if seen.last() != Some(&got) {
            seen.push(got.clone());
        }
        if !saved_elsewhere && started.elapsed() > Duration::from_millis(TTL_MS) {
            save(&b, json!({ "id": id, "access_token": "at-2" })).await;
            saved_elsewhere = true;
        } else if saved_locally.is_none() && got == "at-2" {
            save(&a, json!({ "id": id, "access_token": "at-3" })).await;
            saved_locally = Some(Instant::now());
        }
        if saved_locally.is_some_and(|at| at.elapsed() > Duration::from_millis(2 * TTL_MS)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, ["at-1", "at-2", "at-3"]);
    b.stop().await;
    a.stop().await;
}

async fn a_refresh_by_another_replica_shows_within_the_cache_ttl(backend: Backend) {
    let fake = FakeProvider::start().await;
    let a = spawn_app_with(backend, |s| {
        s.tokens.access_cache_ttl_ms = TTL_MS;
        s.tokens.change_poll_ms = 0;
        with_fake(s, &fake, "client_secret_post");
    })
    .await;
    let b = a.replica().await;
    let far = now_ms() + 3_600_000;
    let t = a
        .seed(
            json!({ "user_name": "alice@example.com", "provider": "fake",
                      "refresh_token": "rt-1", "access_token": "at-1", "expiry_time": far }),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(access_token(&a, &id).await, Ok("at-1".into()));

    // A forced refresh through the other replica writes only the credential columns: the
    // copy this replica keeps re-checking must still see the change.
    fake.on_refresh(200, grant("at-2", Some("rt-2"), 3600), 0)
        .await;
    let r = b.refresh(&b.jwt("tokens:write"), &id).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let took = until_answers(&a, &id, Ok("at-2")).await;
    assert!(took <= Duration::from_millis(TTL_MS + 300), "took {took:?}");
    b.stop().await;
    a.stop().await;
}
