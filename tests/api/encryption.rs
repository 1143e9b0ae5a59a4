//! Secrets at rest: a dump of the table alone reveals none of them.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};

crate::on_every_backend!(
    a_database_dump_reveals_no_secret,
    lookups_by_value_still_work
);

const SECRETS: [&str; 4] = [
    "client-secret-PLAINTEXT-1",
    "1000.refresh-PLAINTEXT-2",
    "1000.access-PLAINTEXT-3",
    "1000.grant-PLAINTEXT-4",
];

async fn a_database_dump_reveals_no_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(json!({
        "user_name": "alice@example.com",
        "client_id": "cid",
        "client_secret": SECRETS[0],
        "refresh_token": SECRETS[1],
        "access_token": SECRETS[2],
        "grant_token": SECRETS[3],
    }))
    .await;

    let rows = app.raw_rows().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.key_id, "test-1");
    for blob in [
        &row.client_secret,
        &row.refresh_token,
        &row.access_token,
        &row.grant_token,
    ] {
        let blob = blob.as_ref().expect("secret column is filled");
        for secret in SECRETS {
            assert!(
                !blob.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "plaintext found in a ciphertext column"
            );
        }
    }
    for hash in [
        &row.refresh_token_hash,
        &row.access_token_hash,
        &row.grant_token_hash,
    ] {
        let hash = hash.as_ref().unwrap();
        assert_eq!(hash.len(), 64);
        assert!(SECRETS.iter().all(|s| !hash.contains(s)));
    }
    // Every text column of the row, joined, holds no secret either.
    let text = format!(
        "{} {} {} {:?} {:?} {:?} {:?} {}",
        row.id,
        row.tenant,
        row.provider,
        row.user_name,
        row.client_id,
        row.redirect_url,
        row.api_domain,
        row.status
    );
    assert!(SECRETS.iter().all(|s| !text.contains(s)));
}

async fn lookups_by_value_still_work(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(
        json!({ "client_id": "cid", "refresh_token": SECRETS[1], "access_token": SECRETS[2] }),
    )
    .await;
    let r = app
        .find(&app.admin(), &json!({ "access_token": SECRETS[2] }))
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["refresh_token"], SECRETS[1]);
}
