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
