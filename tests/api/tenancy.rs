//! Tenancy fails closed: every caller JWT names its tenant, or `"*"` for all of them; the audit
//! trail files events under the token's tenant; a save tells nothing about other tenants' ids.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_of, expose, spawn_app, Backend, TestApp};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A JWT signed with the broker's HS256 secret, with exactly these claims.
fn signed(app: &TestApp, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(expose(&app.settings.auth.hs256_secret).as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_jwt_must_name_its_tenant_or_every_tenant() {
    let app = spawn_app(Backend::Sqlite).await;
    app.seed(json!({ "tenant": "acme", "user_name": "a@acme.test", "refresh_token": "r1" }))
        .await;
    app.seed(json!({ "tenant": "globex", "user_name": "g@globex.test", "refresh_token": "r2" }))
        .await;
    let claims = |tenant: Option<Value>| {
        let mut c = json!({ "sub": "svc", "scope": "tokens:read", "exp": now() + 60 });
        if let Some(t) = tenant {
            c["tenant"] = t;
        }
        c
    };
    // A forgotten claim mapper, an empty or malformed claim: refused, never "every tenant".
    for (what, tenant) in [
        ("no tenant claim", None),
        ("an empty tenant", Some(json!(""))),
        ("a tenant that is not a name", Some(json!("acme corp"))),
        ("a number", Some(json!(42))),
        ("a list", Some(json!(["acme", "globex"]))),
        ("null", Some(Value::Null)),
    ] {
        let (status, body) = error_of(app.list(&signed(&app, claims(tenant)), "").await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            body["message"].as_str().unwrap().contains("tenant"),
            "{what}: {body}"
        );
    }
    // One tenant sees its own.
    let acme: Value = app
        .list(&signed(&app, claims(Some(json!("acme")))), "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(acme["tokens"].as_array().unwrap().len(), 1);
    // "*" is the explicit grant to see every tenant.
    let all: Value = app
        .list(&signed(&app, claims(Some(json!("*")))), "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["tokens"].as_array().unwrap().len(), 2);
}

crate::on_every_backend!(
    a_tenants_admin_sees_every_event_on_its_tokens,
    saving_under_another_tenants_id_reveals_nothing,
);

async fn a_tenants_admin_sees_every_event_on_its_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app
        .seed(
            json!({ "tenant": "acme", "user_name": "ann@acme.test", "refresh_token": "r",
                      "access_token": "a", "expiry_time": 4102444800000i64 }),
        )
        .await;
    let id = token["id"].as_str().unwrap();
    // A platform service working across tenants reads acme's token and its secrets.
    let platform = app.jwt_for(
        "platform-ops",
        "tokens:read tokens:secrets tokens:access",
        None,
    );
    assert_eq!(app.get_token(&platform, id).await.status(), StatusCode::OK);
    assert_eq!(
        app.access_token(&platform, id, "").await.status(),
        StatusCode::OK
    );

    let acme_admin = app.jwt_for("acme-admin", "tokens:admin", Some("acme"));
    let page: Value = app
        .audit(&acme_admin, &format!("?token_id={id}"))
        .await
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    for action in ["get_token", "get_access_token"] {
        let e = events
            .iter()
            .find(|e| e["caller"] == "platform-ops" && e["action"] == action)
            .unwrap_or_else(|| panic!("acme's admin does not see {action}: {page}"));
        assert_eq!(e["tenant"], "acme");
    }
    assert!(events
        .iter()
        .any(|e| e["action"] == "get_token" && e["detail"] == "secrets revealed"));
    // Another tenant's admin sees none of it.
    let globex_admin = app.jwt_for("globex-admin", "tokens:admin", Some("globex"));
    let theirs: Value = app
        .audit(&globex_admin, &format!("?token_id={id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["events"], json!([]));
}

async fn saving_under_another_tenants_id_reveals_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let globex = app
        .seed(
            json!({ "id": "globex-token-1", "tenant": "globex", "user_name": "g@globex.test",
                      "refresh_token": "globex-rt" }),
        )
        .await;
    assert_eq!(globex["id"], "globex-token-1");
    let acme = app.jwt_for("acme-svc", "tokens:read tokens:write", Some("acme"));
    // The same answer whether the id is taken by another tenant or free: 201, and the broker
    // names the new token.
    let mut answers = Vec::new();
    for (id, user) in [
        ("globex-token-1", "x@acme.test"),
        ("never-used-id", "y@acme.test"),
    ] {
        let r = app
            .save(
                &acme,
                &json!({ "id": id, "user_name": user, "refresh_token": "acme-rt" }),
            )
            .await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_ne!(body["id"], id);
        assert_eq!(body["tenant"], "acme");
        answers.push(status);
    }
    assert_eq!(answers, [StatusCode::CREATED, StatusCode::CREATED]);
    // globex's token is untouched.
    let stored: Value = app
        .get_token(&app.jwt("tokens:read tokens:secrets"), "globex-token-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["tenant"], "globex");
    assert_eq!(stored["user_name"], "g@globex.test");
    assert_eq!(stored["refresh_token"], "globex-rt");
    // A save naming one of the caller's own tokens by id still updates it.
    let mine: Value = app
        .find(&acme, &json!({ "user_name": "x@acme.test" }))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .save(
            &acme,
            &json!({ "id": mine["id"], "api_domain": "https://www.zohoapis.eu" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn ids_made_of_dots_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    for id in [".", "..", "..."] {
        let (status, body) = error_of(
            app.save(
                &app.admin(),
                &json!({ "id": id, "user_name": "d@x", "refresh_token": "r" }),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
        assert_eq!(body["field"], "id", "{body}");
    }
    // In the path too, percent-encoded (sent raw: URL libraries would resolve the dots away).
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    for path in [
        "/v1/tokens/%2E",
        "/v1/tokens/%2E%2E",
        "/v1/tokens/%2e%2e/access-token",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            app.admin()
        );
        tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer)
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid_id"), "{path}: {answer}");
    }
    assert_eq!(app.count().await, 0);
}
