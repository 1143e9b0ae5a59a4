//! What anonymous clients cost: bounded metric series, refused calls counted rather than written
//! one by one, audit rows that expire, limited login starts, and connections that cannot be
//! hoarded.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, spawn_app_with, Backend};

/// The `http_requests_total` series in a `/metrics` page.
fn request_series(page: &str) -> Vec<String> {
    page.lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn invented_methods_and_paths_add_no_metric_series() {
    let app = spawn_app(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    // Every route and the usual statuses once, so the series they have exist already.
    for _ in 0..2 {
        for i in 0..1500 {
            let method = Method::from_bytes(format!("X{i}METHOD").as_bytes()).unwrap();
            let path = match i % 3 {
                0 => format!("/v1/tokens/{i}"),
                1 => format!("/nothing/here/{i}"),
                _ => "/healthz".to_owned(),
            };
            let r = http.request(method, app.url(&path)).send().await.unwrap();
            assert!(r.status().is_client_error(), "{}", r.status());
            let _ = http
                .get(app.url(&format!("/no/such/path/{i}")))
                .send()
                .await
                .unwrap();
        }
    }
    let page = app.metrics().await.text().await.unwrap();
    let series = request_series(&page);
    assert!(
        series
            .iter()
            .all(|s| !s.contains("METHOD") && !s.contains("/nothing/") && !s.contains("/no/such/")),
        "a client-chosen method or path became a label: {series:?}"
    );
    assert!(
        series.iter().any(|s| s.contains("method=\"OTHER\"")),
        "invented methods are counted as OTHER"
    );
    assert!(
        series.iter().any(|s| s.contains("route=\"unmatched\"")),
        "unknown paths are counted as unmatched"
    );
    // Bounded: a handful of series for 6000 requests (metrics are process-wide, shared with the
    // other tests of this binary, so the bound is generous but nowhere near one per request).
    assert!(series.len() < 400, "{} series", series.len());
    assert!(page.len() < 400_000, "/metrics is {} bytes", page.len());
}

crate::on_every_backend!(
    refused_calls_are_counted_per_route_reason_and_source,
    audit_rows_past_their_retention_are_deleted,
    expired_login_sessions_are_swept,
);

async fn refused_calls_are_counted_per_route_reason_and_source(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin();
    let before = app.raw_audit_count().await;
    for i in 0..300 {
        // Each names another token: the id is not part of what is counted.
        let r = app.get_token("not.a.jwt", &format!("tok-{i}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = app.get_public("/v1/tokens").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Invented connect links: anyone can send them, so they are counted the same way.
    for i in 0..100 {
        let r = app.get_public(&format!("/connect/no-such-link-{i}")).await;
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let links: Value = app
        .audit(&admin, "?caller=anonymous&action=open_connect_link")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(links["events"].as_array().unwrap().len(), 1, "{links}");
    assert_eq!(links["events"][0]["occurrences"], 100);
    // The audit endpoint writes what is pending first.
    let page: Value = app
        .audit(&admin, "?caller=anonymous&action=get_token")
        .await
        .json()
        .await
        .unwrap();
    let list_page: Value = app
        .audit(&admin, "?caller=anonymous&action=list_tokens")
        .await
        .json()
        .await
        .unwrap();
    let mut events = page["events"].as_array().unwrap().clone();
    events.extend(list_page["events"].as_array().unwrap().iter().cloned());
    assert_eq!(events.len(), 2, "one row per route and reason: {events:?}");
    let get = events
        .iter()
        .find(|e| e["action"] == "get_token")
        .expect("the refused reads");
    assert_eq!(get["occurrences"], 300);
    assert_eq!(get["outcome"], "unauthorized");
    assert_eq!(get["status"], 401);
    assert_eq!(get["source"], "127.0.0.1");
    assert!(
        get["detail"].as_str().unwrap().contains("malformed"),
        "{get}"
    );
    assert!(get["last_at"].is_string());
    let list = events
        .iter()
        .find(|e| e["action"] == "list_tokens")
        .unwrap();
    assert_eq!(list["occurrences"], 300);
    assert!(
        list["detail"].as_str().unwrap().contains("Authorization"),
        "{list}"
    );
    // 700 refused calls, 3 rows (the audit reads themselves are not recorded).
    assert_eq!(app.raw_audit_count().await - before, 3);
}

async fn audit_rows_past_their_retention_are_deleted(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.audit.retention_days = 30;
        s.audit.purge_interval_secs = 1;
    })
    .await;
    let day = 86_400_000i64;
    let now = crate::helpers::now_ms();
    app.insert_audit_rows(&[now - 31 * day, now - 40 * day, now - 29 * day, now - 1000])
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ages = app.raw_audit_times().await;
        if ages.iter().all(|at| *at > now - 30 * day) {
            assert!(
                ages.contains(&(now - 29 * day)),
                "younger rows stay: {ages:?}"
            );
            assert!(ages.contains(&(now - 1000)));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old rows were not deleted: {ages:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A provider the connect-session tests can start logins with (nothing listens behind it).
fn acme_provider() -> token_broker::config::ProviderSettings {
    token_broker::config::ProviderSettings {
        kind: Some("oauth2".into()),
        authorize_url: Some("http://127.0.0.1:9/authorize".into()),
        token_url: Some("http://127.0.0.1:9/token".into()),
        client_id: Some("acme-client".into()),
        client_secret: Some("acme-secret".into()),
        ..Default::default()
    }
}

async fn expired_login_sessions_are_swept(backend: Backend) {
    let app = crate::helpers::spawn_app_with_clock(backend, |s| {
        s.providers.insert("acme".into(), acme_provider());
    })
    .await;
    let jwt = app.jwt("tokens:write tokens:read");
    let body = json!({ "provider": "acme", "user_name": "ann@example.com" });
    let old: Value = app.create_session(&jwt, &body).await.json().await.unwrap();
    let old_id = old["id"].as_str().unwrap();
    // Expired sessions stay a day, to explain a late visit ...
    app.clock.advance_ms(3_600_000);
    assert_eq!(app.session(&jwt, old_id).await.status(), StatusCode::OK);
    // ... and are gone after that: the next login start sweeps them.
    app.clock.advance_ms(25 * 3_600_000);
    assert_eq!(
        app.create_session(&jwt, &body).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.session(&jwt, old_id).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn login_starts_are_limited_per_caller() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.oauth.login_starts_per_minute = 3;
        s.providers.insert("acme".into(), acme_provider());
    })
    .await;
    let portal = app.jwt_for("portal", "tokens:write tokens:read", Some("acme"));
    let other = app.jwt_for("other-portal", "tokens:write tokens:read", Some("acme"));
    let body = json!({ "provider": "acme", "user_name": "ann@example.com" });
    for _ in 0..3 {
        assert_eq!(
            app.create_session(&portal, &body).await.status(),
            StatusCode::CREATED
        );
    }
    let r = app.create_session(&portal, &body).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"], "rate_limited");
    // Another caller has its own allowance.
    assert_eq!(
        app.create_session(&other, &body).await.status(),
        StatusCode::CREATED
    );
}

/// Opens a TCP connection that sends nothing.
async fn idle_socket(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Whether the broker has closed `socket` (a read sees EOF or a reset).
async fn closed_by_broker(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_millis(50), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 the broker wrote before closing: read on.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed_and_healthz_still_answers() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.header_read_timeout_secs = 2;
        s.server.idle_timeout_secs = 3;
    })
    .await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(idle_socket(port).await);
    }
    // Slow-header clients: a byte every 300 ms, never finishing the request head.
    let mut trickling = Vec::new();
    for _ in 0..100 {
        let mut s = idle_socket(port).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        trickling.push(s);
    }
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        let mut alive = trickling.len();
        while started.elapsed() < Duration::from_secs(6) && alive > 0 {
            alive = 0;
            for s in &mut trickling {
                if s.write_all(b"X").await.is_ok() {
                    alive += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        trickling
    });
    // With 400 sockets held, the broker answers at once.
    let started = Instant::now();
    assert_eq!(app.healthz().await.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1));

    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut still_open = 0;
    for s in &mut idle {
        if !closed_by_broker(s).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "idle connections are closed");
    let mut trickling = trickle.await.unwrap();
    let mut still_open = 0;
    for s in &mut trickling {
        if !closed_by_broker(s).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "slow-header connections are closed");
    assert_eq!(app.healthz().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_is_freed() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.max_connections = 20;
        s.server.header_read_timeout_secs = 2;
    })
    .await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut hoarded = Vec::new();
    for _ in 0..20 {
        hoarded.push(idle_socket(port).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // All 20 slots are held: the next request waits in the backlog until the header timeout
    // frees them, then is served.
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("served once the idle connections are closed");
    assert_eq!(r.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(6),
        "waited {waited:?}"
    );
}
