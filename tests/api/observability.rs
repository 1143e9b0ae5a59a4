//! What operators see: the audit trail and Prometheus metrics.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_provider::{grant, with_fake, FakeProvider};
use crate::helpers::{error_of, spawn_app, spawn_app_with, Backend};

crate::on_every_backend!(the_audit_trail_records_who_did_what_without_secrets);

async fn the_audit_trail_records_who_did_what_without_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let ops = app.jwt_for(
        "ops-console",
        "tokens:read tokens:write tokens:secrets tokens:access",
        None,
    );
    let saved: Value = app
        .save(&ops, &json!({ "user_name": "audit@example.com", "refresh_token": "AUDIT-RT-SECRET", "access_token": "AUDIT-AT-SECRET", "client_secret": "AUDIT-CS-SECRET", "expiry_time": 4102444800000i64 }))
        .await
        .json()
        .await
        .unwrap();
    let id = saved["id"].as_str().unwrap();
    assert_eq!(app.get_token(&ops, id).await.status(), StatusCode::OK);
    let r = app.access_token(&ops, id, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    let again = app.access_token(&ops, id, "").await;
    assert_eq!(again.status(), StatusCode::OK);
    // Refused attempts are recorded too.
    assert_eq!(
        app.get_token("forged.jwt.value", id).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.delete_token(&app.jwt_for("reader", "tokens:read", None), id)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get_token(&app.jwt_for("intruder", "tokens:read", Some("globex")), id)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete_token(&ops, id).await.status(),
        StatusCode::NO_CONTENT
    );

    let admin = app.jwt_for("auditor", "tokens:admin", None);
    let r = app.audit(&admin, &format!("?token_id={id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(!text.contains("AUDIT-"), "no secret in the audit trail");
    let page: Value = serde_json::from_str(&text).unwrap();
    let events: Vec<(String, String, String, Option<String>)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["caller"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["detail"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let expect = |caller: &str, action: &str, outcome: &str| {
        assert!(
            events
                .iter()
                .any(|(c, a, o, _)| c == caller && a == action && o == outcome),
            "missing {caller} {action} {outcome} in {events:?}"
        );
    };
    // Newest first.
    assert_eq!(events[0].1, "delete_token");
    expect("ops-console", "save_token", "ok");
    expect("ops-console", "get_token", "ok");
    expect("ops-console", "get_access_token", "ok");
    expect("reader", "delete_token", "forbidden");
    expect("intruder", "get_token", "not_found");
    expect("ops-console", "delete_token", "ok");
    assert!(events
        .iter()
        .any(|(_, a, _, d)| a == "get_token" && d.as_deref() == Some("secrets revealed")));
    // Successful access-token reads are folded: one event, two occurrences.
    let reads: Value = app
        .audit(&admin, &format!("?token_id={id}&action=get_access_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reads["events"].as_array().unwrap().len(), 1, "{reads}");
    assert_eq!(reads["events"][0]["occurrences"], 2);
    assert!(reads["events"][0]["last_at"].is_string());
    let unauth: Value = app
        .audit(&admin, "?caller=anonymous&action=get_token")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unauth["events"][0]["outcome"], "unauthorized");
    assert_eq!(unauth["events"][0]["status"], 401);

    // Paging.
    let first: Value = app.audit(&admin, "?limit=2").await.json().await.unwrap();
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .audit(&admin, &format!("?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(second["events"][0]["id"], first["events"][0]["id"]);

    // Only admins read it; a tenant's admin sees only its tenant.
    let (status, _) = error_of(app.audit(&ops, "").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let globex_admin = app.jwt_for("globex-admin", "tokens:admin", Some("globex"));
    let theirs: Value = app.audit(&globex_admin, "").await.json().await.unwrap();
    assert!(theirs["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant"] == "globex"));
    assert!(!theirs["events"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn metrics_count_requests_refreshes_and_tokens() {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("at-m", None, 3600), 0).await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic")
    })
    .await;
    let id = app
        .seed(json!({ "user_name": "m@example.com", "provider": "fake", "refresh_token": "rt", "access_token": "at", "expiry_time": 1 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.access_token(&app.jwt("tokens:access"), &id, "").await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = app.metrics().await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for needle in [
        r#"http_requests_total{method="GET",route="/v1/tokens/{id}/access-token",status="200"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/v1/tokens/{id}/access-token""#,
        r#"token_refreshes_total{provider="fake",outcome="refreshed"}"#,
        r#"access_token_cache_total{result="miss"}"#,
        r#"tokens{status="active"}"#,
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    assert!(!text.contains("at-m"), "no token in metrics");
}

/// Attacks on caller authentication are refused — and each attempt is in the audit trail.
#[tokio::test]
async fn auth_attacks_are_refused_and_audited() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    let app = spawn_app_with(Backend::Sqlite, |s| s.auth.audience = "token-broker".into()).await;
    let owner = app.jwt_for("acme-svc", "tokens:read tokens:write", Some("acme"));
    let saved: Value = app
        .save(
            &owner,
            &json!({ "user_name": "target@example.com", "refresh_token": "rt" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = saved["id"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    let secret = crate::helpers::expose(&app.settings.auth.hs256_secret).to_owned();
    let sign = |claims: Value, key: &[u8]| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let claims = |exp: i64, aud: &str| json!({ "sub": "attacker", "scope": "tokens:read tokens:admin", "tenant": "*", "exp": exp, "aud": aud });
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(now + 60, "token-broker").to_string())
    );
    let attacks = [
        (
            "expired",
            sign(claims(now - 600, "token-broker"), secret.as_bytes()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong key",
            sign(
                claims(now + 60, "token-broker"),
                b"not-the-broker-secret-but-32-bytes!!",
            ),
            StatusCode::UNAUTHORIZED,
        ),
        ("alg none", none, StatusCode::UNAUTHORIZED),
        (
            "wrong audience",
            sign(claims(now + 60, "another-service"), secret.as_bytes()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "other tenant",
            app.jwt_for("globex-svc", "tokens:read", Some("globex")),
            StatusCode::NOT_FOUND,
        ),
        (
            "missing scope",
            app.jwt_for("acme-reader", "", Some("acme")),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (what, jwt, expected) in &attacks {
        let r = app.get_token(jwt, id).await;
        assert_eq!(r.status(), *expected, "{what}");
    }
    let admin = app.jwt_for("auditor", "tokens:admin", None);
    let page: Value = app
        .audit(&admin, &format!("?token_id={id}&action=get_token"))
        .await
        .json()
        .await
        .unwrap();
    let outcomes: Vec<(String, String)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["caller"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The four forged JWTs: refused before a caller was known, so counted per route, reason
    // and source rather than filed under the token they aimed at.
    let refused: Value = app
        .audit(&admin, "?caller=anonymous&action=get_token")
        .await
        .json()
        .await
        .unwrap();
    let refused = refused["events"].as_array().unwrap();
    let reasons: std::collections::BTreeSet<&str> = refused
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 4, "one row per reason: {refused:?}");
    assert!(refused
        .iter()
        .all(|e| e["outcome"] == "unauthorized" && e["occurrences"] == 1));
    assert!(
        outcomes.contains(&("globex-svc".into(), "not_found".into())),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("acme-reader".into(), "forbidden".into())),
        "{outcomes:?}"
    );
}
