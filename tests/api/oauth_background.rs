//! The background refresher: tokens in use are refreshed ahead of expiry; idle ones are left alone.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_provider::{grant, seed, with_fake, FakeProvider};
use crate::helpers::{access, now_ms, spawn_app_with, stored, Backend};

#[tokio::test]
async fn tokens_in_use_are_refreshed_in_the_background() {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-bg", None, 3600), 0).await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.oauth.background.enabled = true;
        s.oauth.background.interval_secs = 1;
        s.oauth.background.ahead_secs = 300;
    })
    .await;
    // Valid for 100 s: callers are served from the store, and it counts as in use.
    let used = seed(&app, 100_000).await;
    assert_eq!(
        access(&app, &used, "").await.json::<Value>().await.unwrap()["access_token"],
        "at-1"
    );
    // Another expiring token nobody asked for is left alone.
    let idle = app
        .seed(json!({ "user_name": "idle@example.com", "provider": "fake", "refresh_token": "rt-idle", "access_token": "at-idle", "expiry_time": now_ms() + 100_000 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut refreshed = false;
    for _ in 0..100 {
        if stored(&app, &used).await["access_token"] == "at-bg" {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refreshed,
        "the background refresher did not refresh the token in use"
    );
    assert_eq!(fake.calls("refresh_token").await, 1);
    assert_eq!(stored(&app, &idle).await["access_token"], "at-idle");
}

/// A token endpoint that answers after `delay` and counts how many refreshes it serves at once.
struct CountingProvider {
    url: String,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    peak: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn counting_provider(delay: Duration) -> CountingProvider {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (calls, peak, now) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (c, p, n) = (calls.clone(), peak.clone(), now.clone());
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |body: String| {
            let (c, p, n) = (c.clone(), p.clone(), n.clone());
            async move {
                let at_once = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(at_once, Ordering::SeqCst);
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                n.fetch_sub(1, Ordering::SeqCst);
                let rt = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "refresh_token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                axum::Json(json!({ "access_token": format!("new-{rt}"),
                                   "token_type": "Bearer", "expires_in": 3600 }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    CountingProvider { url, calls, peak }
}

/// A wave: many tokens in use expiring within the same minutes are all refreshed before they
/// expire — pass after pass, not a batch per tick — with never more than
/// `oauth.background.concurrency` refreshes at the provider at once. (Scaled down for CI; the
/// 100 000-token wave in `bench/` is still to be built.)
#[tokio::test]
async fn a_wave_of_expiring_tokens_is_refreshed_within_the_concurrency_cap() {
    use std::sync::atomic::Ordering;
    const TOKENS: usize = 600;
    const CAP: usize = 8;
    let provider = counting_provider(Duration::from_millis(20)).await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.providers.insert(
            "wave".into(),
            token_broker::config::ProviderSettings {
                kind: Some("oauth2".into()),
                authorize_url: Some(format!("{}/authorize", provider.url)),
                token_url: Some(format!("{}/token", provider.url)),
                client_id: Some("wave-client".into()),
                client_secret: Some("wave-secret".into()),
                ..Default::default()
            },
        );
        s.oauth.background.enabled = false;
    })
    .await;
    // Expiring over the next 5 minutes, every one of them inside the 10-minute window.
    for i in 0..TOKENS {
        let expiry = now_ms() + 60_000 + (i as i64) * 400;
        app.seed(
            json!({ "user_name": format!("user{i}@wave.test"), "provider": "wave",
                         "refresh_token": format!("rt-{i}"), "access_token": format!("at-{i}"),
                         "expiry_time": expiry }),
        )
        .await;
    }
    // The refresher runs on a replica started once the wave is stored; its first tick comes at
    // start and the next an hour later, so the whole wave must be drained from the first.
    let started = std::time::Instant::now();
    let _refresher = app
        .replica_with(|s| {
            s.oauth.background.enabled = true;
            s.oauth.background.interval_secs = 3600;
            s.oauth.background.ahead_secs = 600;
            // Every token counts as in use (none was handed out yet).
            s.oauth.background.used_within_secs = 10_000_000_000;
            s.oauth.background.concurrency = CAP;
        })
        .await;
    loop {
        let done = provider.calls.load(Ordering::SeqCst);
        if done >= TOKENS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{done} of {TOKENS} refreshed after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let peak = provider.peak.load(Ordering::SeqCst);
    eprintln!(
        "wave: {TOKENS} tokens refreshed in {took:?}, provider peak concurrency {peak} (cap {CAP})"
    );
    assert!(peak <= CAP, "peak {peak} over the cap {CAP}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        provider.calls.load(Ordering::SeqCst),
        TOKENS,
        "each token once"
    );
    // Every one is stored refreshed, long before it would have expired.
    let page: Value = app
        .list(&app.jwt("tokens:read tokens:access"), "?limit=500")
        .await
        .json()
        .await
        .unwrap();
    assert!(page["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["access_token"].as_str().unwrap().starts_with("new-rt-")));
}
