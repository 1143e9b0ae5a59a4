//! `/v1/proxy/{id}/{path}`: a service calls the provider's API through the broker and never
//! holds the token. The API here is a wiremock server on loopback, listed as the providers'
//! `api_base_urls`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fake_provider::{grant, with_fake, FakeProvider};
use crate::helpers::{now_ms, spawn_app_with, uuid_simple, Backend, TestApp};

crate::on_every_backend!(an_invalid_token_answer_is_refreshed_once_and_the_call_sent_again);

/// An API base the providers list where nothing listens.
const CLOSED: &str = "http://127.0.0.1:9";

/// A broker whose providers `fake` (RFC 6750 Bearer) and `zoho-eu` (Zoho-oauthtoken) both
/// have the API at `api`; `proxy.replay_buffer_bytes` is 1 KiB and requests are bounded at
/// 6 MiB, answers at 8 MiB.
async fn broker(backend: Backend, fake: &FakeProvider, api: &MockServer) -> TestApp {
    let api = api.uri();
    spawn_app_with(backend, |s| {
        with_fake(s, fake, "client_secret_post");
        for key in ["fake", "zoho-eu"] {
            s.providers.get_mut(key).unwrap().api_base_urls = vec![api.clone(), CLOSED.into()];
        }
        s.proxy.replay_buffer_bytes = 1024;
        s.proxy.max_request_bytes = 6 << 20;
        s.proxy.max_response_bytes = 8 << 20;
        s.proxy.timeout_secs = 1;
    })
    .await
}

/// Stores a token of `provider` (a user of its own) valid for an hour, with `api_domain`;
/// returns its id.
async fn token(app: &TestApp, provider: &str, api_domain: &str) -> String {
    let user = format!("{}@example.com", uuid_simple());
    let t = app
        .seed(json!({ "user_name": user, "provider": provider,
                      "refresh_token": "rt-1", "access_token": "at-1",
                      "expiry_time": now_ms() + 3_600_000, "api_domain": api_domain }))
        .await;
    t["id"].as_str().unwrap().to_owned()
}

async fn received(api: &MockServer) -> Vec<Request> {
    api.received_requests().await.unwrap_or_default()
}

#[tokio::test]
async fn a_call_reaches_the_tokens_api_with_its_access_token_and_the_answer_comes_back_unchanged() {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(Backend::Sqlite, &fake, &api).await;
    let id = token(&app, "fake", &api.uri()).await;
    Mock::given(method("GET"))
        .and(path("/crm/v8/Leads"))
        .and(query_param("page", "2"))
        .and(header("authorization", "Bearer at-1"))
        .respond_with(
            ResponseTemplate::new(203)
                .insert_header("x-api-answer", "kept")
                .insert_header("connection", "x-hop")
                .insert_header("x-hop", "dropped")
                .set_body_raw(r#"{"data":[{"id":"1"}]}"#, "application/json"),
        )
        .mount(&api)
        .await;

    let r = app
        .proxy(
            &app.jwt("tokens:proxy"),
            Method::GET,
            &id,
            "crm/v8/Leads?page=2&fields=Name",
        )
        .header("x-request-tag", "abc")
        .header("cookie", "broker-session=1")
        .await;
    assert_eq!(r.status(), 203);
    assert_eq!(r.headers()["x-api-answer"], "kept");
    assert!(
        r.headers().get("x-hop").is_none(),
        "hop-by-hop headers stay behind"
    );
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), r#"{"data":[{"id":"1"}]}"#);

    let sent = &received(&api).await[0];
    assert_eq!(sent.url.query(), Some("page=2&fields=Name"));
    assert_eq!(sent.headers["x-request-tag"], "abc");
    let auth: Vec<_> = sent.headers.get_all("authorization").iter().collect();
    assert_eq!(
        auth,
        ["Bearer at-1"],
        "only the token's, never the caller's JWT"
    );
    assert!(sent.headers.get("cookie").is_none());
}

#[tokio::test]
async fn every_method_and_its_body_is_sent_on_and_zoho_gets_its_own_header() {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(Backend::Sqlite, &fake, &api).await;
    let id = token(&app, "zoho-eu", &api.uri()).await;
    Mock::given(path("/crm/v8/Leads"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let jwt = app.jwt("tokens:proxy");
    for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let r = app
            .proxy(&jwt, m.clone(), &id, "crm/v8/Leads")
            .header("content-type", "application/json")
            .body(format!(r#"{{"method":"{m}"}}"#))
            .await;
        assert_eq!(r.status(), 200, "{m}");
    }
    let sent = received(&api).await;
    let seen: Vec<(String, String)> = sent
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 4);
    for (m, body) in &seen {
        assert_eq!(body, &format!(r#"{{"method":"{m}"}}"#));
    }
    for r in &sent {
        assert_eq!(r.headers["authorization"], "Zoho-oauthtoken at-1");
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

#[tokio::test]
async fn large_bodies_stream_through_both_ways_within_their_bounds() {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(Backend::Sqlite, &fake, &api).await;
    let id = token(&app, "fake", &api.uri()).await;
    let download = vec![b'd'; 7 << 20];
    Mock::given(method("GET"))
        .and(path("/files/big"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(download.clone()))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/huge"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'h'; 9 << 20]))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/files"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&api)
        .await;
    let jwt = app.jwt("tokens:proxy");

    // 5 MiB up, sent as a stream of 64 KiB chunks (no length known in advance).
    let chunks = (0..80).map(|_| Ok::<_, std::io::Error>(vec![b'u'; 64 << 10]));
    let r = app
        .proxy(&jwt, Method::POST, &id, "files")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .await;
    assert_eq!(r.status(), 201);
    let sent = received(&api).await;
    assert_eq!(sent[0].body.len(), 5 << 20);

    // 7 MiB down.
    let r = app.proxy(&jwt, Method::GET, &id, "files/big").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), download.len());

    // Past the bounds: a request body is refused, an answer cut off.
    let r = app
        .proxy(&jwt, Method::POST, &id, "files")
        .body(vec![b'x'; 7 << 20])
        .await;
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );
    let r = app.proxy(&jwt, Method::GET, &id, "files/huge").await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the answer is cut off past 8 MiB");
}

#[tokio::test]
async fn api_errors_pass_back_and_an_unreachable_or_slow_api_is_a_gateway_error() {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(Backend::Sqlite, &fake, &api).await;
    let id = token(&app, "fake", &api.uri()).await;
    Mock::given(path("/broken"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .mount(&api)
        .await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&api)
        .await;
    Mock::given(path("/moved"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://127.0.0.1:9/steal"),
        )
        .mount(&api)
        .await;
    let jwt = app.jwt("tokens:proxy");

    let r = app.proxy(&jwt, Method::GET, &id, "broken").await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "upstream exploded");

    let r = app.proxy(&jwt, Method::GET, &id, "moved").await;
    assert_eq!(
        r.status(),
        302,
        "a redirect is passed back, not followed with the token"
    );
    assert_eq!(r.headers()["location"], "http://127.0.0.1:9/steal");

    let r = app.proxy(&jwt, Method::GET, &id, "slow").await;
    assert_eq!(r.status(), 504);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "upstream_timeout"
    );

    // An API that is not there.
    let id = token(&app, "fake", CLOSED).await;
    let r = app.proxy(&jwt, Method::GET, &id, "anything").await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "upstream_unavailable"
    );
}

#[tokio::test]
async fn a_token_is_never_sent_to_an_api_its_provider_does_not_list() {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(Backend::Sqlite, &fake, &api).await;
    let jwt = app.jwt("tokens:proxy");
    // A tokens:write caller points a token at the cloud metadata service, another host, another
    // port of the API's host.
    let port = api.address().port();
    for domain in [
        "http://169.254.169.254".to_owned(),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{}", port + 1),
        "https://www.zohoapis.eu.evil.example".to_owned(),
    ] {
        let id = token(&app, "zoho-eu", &domain).await;
        let r = app.proxy(&jwt, Method::GET, &id, "crm/v8/org").await;
        assert_eq!(r.status(), 403, "{domain}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "upstream_not_allowed");
        assert!(!body.to_string().contains("at-1"));
    }
    // Nor climb out of the API's base path (sent raw: an HTTP client would resolve the `..`).
    let id = token(&app, "fake", &api.uri()).await;
    for rest in ["crm/../../admin", "crm/%2e%2E/admin"] {
        let head = raw_get(&app, &format!("/v1/proxy/{id}/{rest}"), &jwt).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{rest}: {head}");
    }
    assert!(received(&api).await.is_empty());
}

/// The status line and headers of a GET of `target` sent as written.
async fn raw_get(app: &TestApp, target: &str, jwt: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {jwt}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn only_tokens_proxy_callers_of_the_tokens_tenant_may_proxy() {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(Backend::Sqlite, &fake, &api).await;
    let id = token(&app, "fake", &api.uri()).await;
    let r = app
        .proxy(&app.jwt("tokens:access tokens:read"), Method::GET, &id, "x")
        .await;
    assert_eq!(r.status(), 403);
    let r = app
        .proxy(
            &app.jwt_for("acme-service", "tokens:proxy", Some("acme")),
            Method::GET,
            &id,
            "x",
        )
        .await;
    assert_eq!(
        r.status(),
        404,
        "another tenant's token does not exist for this caller"
    );
    let r = app
        .proxy(&app.jwt("tokens:proxy"), Method::GET, "no-such-token", "x")
        .await;
    assert_eq!(r.status(), 404);
    assert!(received(&api).await.is_empty());
}

#[tokio::test]
async fn each_call_is_audited_and_counted_without_the_token_or_the_body() {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(Backend::Sqlite, &fake, &api).await;
    let id = token(&app, "fake", &api.uri()).await;
    Mock::given(path("/crm/v8/Leads"))
        .respond_with(ResponseTemplate::new(200).set_body_string("secret-answer"))
        .mount(&api)
        .await;
    let r = app
        .proxy(
            &app.jwt("tokens:proxy"),
            Method::POST,
            &id,
            "crm/v8/Leads?q=secret-query",
        )
        .body("secret-body")
        .await;
    assert_eq!(r.status(), 200);

    let trail: Value = app
        .audit(&app.admin(), "?action=proxy")
        .await
        .json()
        .await
        .unwrap();
    let row = &trail["events"][0];
    assert_eq!(row["token_id"], id.as_str());
    assert_eq!(row["status"], 200);
    let detail = row["detail"].as_str().unwrap();
    assert_eq!(detail, "POST answered 200");
    let metrics = app.metrics().await.text().await.unwrap();
    assert!(
        metrics.contains(r#"proxy_requests_total{provider="fake",method="POST",status="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("proxy_request_duration_seconds"));
    for text in [trail.to_string(), metrics] {
        for secret in ["at-1", "secret-body", "secret-query", "secret-answer"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
}

/// The API says the access token is invalid (it was revoked early, or rotated elsewhere): the
/// broker refreshes once, however many calls see it at once, and sends each call again.
async fn an_invalid_token_answer_is_refreshed_once_and_the_call_sent_again(backend: Backend) {
    let (fake, api) = (FakeProvider::start().await, MockServer::start().await);
    let app = broker(backend, &fake, &api).await;
    let bearer = token(&app, "fake", &api.uri()).await;
    let zoho = token(&app, "zoho-eu", &api.uri()).await;
    Mock::given(header("authorization", "Bearer at-1"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"Bearer error="invalid_token""#),
        )
        .mount(&api)
        .await;
    Mock::given(header("authorization", "Zoho-oauthtoken at-1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}),
        ))
        .mount(&api)
        .await;
    Mock::given(header("authorization", "Bearer at-2"))
        .respond_with(ResponseTemplate::new(200).set_body_string("fresh"))
        .mount(&api)
        .await;
    Mock::given(header("authorization", "Zoho-oauthtoken at-2"))
        .respond_with(ResponseTemplate::new(200).set_body_string("fresh"))
        .mount(&api)
        .await;
    fake.on_refresh(200, grant("at-2", None, 3600), 100).await;
    let jwt = app.jwt("tokens:proxy");

    let calls = (0..10).map(|i| {
        let (app, jwt) = (&app, &jwt);
        let id = if i % 2 == 0 { &bearer } else { &zoho };
        async move {
            let r = app
                .proxy(jwt, Method::POST, id, "crm/v8/Leads")
                .body(format!("call {i}"))
                .await;
            (r.status(), r.text().await.unwrap())
        }
    });
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!((status, body.as_str()), (StatusCode::OK, "fresh"));
    }
    assert_eq!(
        fake.calls("refresh_token").await,
        2,
        "one refresh per token"
    );
    // Each call's body went out twice: before and after the refresh.
    let sent = received(&api).await;
    for i in 0..10 {
        let n = sent
            .iter()
            .filter(|r| r.body == format!("call {i}").as_bytes())
            .count();
        assert_eq!(n, 2, "call {i}");
    }

    // A body too large to hold cannot be sent twice: the 401 comes back as the API sent it.
    let id = token(&app, "fake", &api.uri()).await;
    let r = app
        .proxy(&jwt, Method::POST, &id, "crm/v8/Leads")
        .body(vec![b'x'; 4096])
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    app.stop().await;
}
