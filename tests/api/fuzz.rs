//! Property tests over every request body and query: whatever a caller sends, the broker never
//! answers 5xx and never shows a secret it should not.

use std::sync::OnceLock;

use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::fake_provider::{grant, with_fake, FakeProvider};
use crate::helpers::{spawn_app_with, Backend, TestApp};

/// Secrets stored before fuzzing; no answer to a caller without `tokens:secrets` may show them.
const SECRETS: [&str; 3] = [
    "FUZZ-REFRESH-9f2c",
    "FUZZ-CLIENT-SECRET-77ab",
    "FUZZ-GRANT-31d0",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    _provider: FakeProvider,
    app: TestApp,
    id: String,
    jwt: String,
}

/// One broker for all properties (cases run one after another).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (provider, app, id) = runtime.block_on(async {
            // A working provider, so access-token calls that need a refresh get one.
            let provider = FakeProvider::start().await;
            provider.on_refresh(200, grant("at-fuzz", None, 600), 0).await;
            let app = spawn_app_with(Backend::Sqlite, |s| with_fake(s, &provider, "client_secret_basic")).await;
            let t = app
                .seed(json!({ "user_name": "fuzz@example.com", "provider": "fake", "refresh_token": SECRETS[0], "client_secret": SECRETS[1], "grant_token": SECRETS[2], "access_token": "at", "client_id": "cid" }))
                .await;
            (provider, app, t["id"].as_str().unwrap().to_owned())
        });
        // Everything but tokens:secrets.
        let jwt = app.jwt("tokens:read tokens:write tokens:access tokens:admin");
        Fixture { runtime, _provider: provider, app, id, jwt }
    })
}

fn call(method: Method, path: &str, body: Option<String>) -> (u16, String) {
    let f = fixture();
    f.runtime.block_on(async {
        let mut request = f
            .app
            .http
            .request(method, f.app.url(path))
            .bearer_auth(&f.jwt);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

fn check(status: u16, body: &str, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{what} answered {status}: {body}");
    for s in SECRETS {
        prop_assert!(!body.contains(s), "{what} showed a secret: {body}");
    }
    Ok(())
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from(SECRETS[0])),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 16] = [
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
    "provider",
    "tenant",
    "status",
    "created_at",
    "grant_token",
    "code_verifier",
];

/// Objects with the real field names and values of any type: closer to what callers get wrong.
fn token_like() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), any_json(), 0..8).prop_map(
        |m| {
            let mut o = Map::new();
            for (k, v) in m {
                o.insert(k.to_owned(), v);
            }
            // A well-known user half the time, so updates of the stored token are exercised too.
            if o.len() % 2 == 0 {
                o.insert("user_name".into(), Value::from("fuzz@example.com"));
            }
            Value::Object(o)
        },
    )
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        token_like().prop_map(|v| v.to_string()),
        any_json().prop_map(|v| v.to_string()),
        ".{0,60}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "limit",
        "cursor",
        "user_name",
        "provider",
        "status",
        "tenant",
        "min_validity",
        "confirm",
        "token_id",
        "caller",
        "action",
        "since",
        "return_to",
        "code",
        "state",
        "error",
        "x",
    ]);
    prop::collection::vec((key, ".{0,20}"), 0..4).prop_map(|pairs| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            q.append_pair(k, &v);
        }
        q.finish()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_body_is_answered_without_5xx_or_secrets(body in body(), target in 0usize..3) {
        let (method, path) = [
            (Method::PUT, "/v1/tokens"),
            (Method::POST, "/v1/tokens/find"),
            (Method::POST, "/v1/oauth/exchange"),
        ][target].clone();
        let (status, text) = call(method, path, Some(body.clone()));
        check(status, &text, &format!("{path} with {body}"))?;
    }

    #[test]
    fn any_query_is_answered_without_5xx_or_secrets(q in query(), target in 0usize..6) {
        let id = &fixture().id;
        let path = [
            "/v1/tokens".to_owned(),
            format!("/v1/tokens/{id}/access-token"),
            "/v1/audit".to_owned(),
            "/v1/oauth/authorize".to_owned(),
            "/v1/oauth/callback".to_owned(),
            format!("/v1/tokens/{id}"),
        ][target].clone();
        let (status, text) = call(Method::GET, &format!("{path}?{q}"), None);
        check(status, &text, &format!("{path}?{q}"))?;
    }

    #[test]
    fn any_path_segment_is_answered_without_5xx(segment in ".{1,80}") {
        let encoded: String = url::form_urlencoded::byte_serialize(segment.as_bytes()).collect();
        for suffix in ["", "/access-token", "/refresh", "/revoke"] {
            let method = if matches!(suffix, "" | "/access-token") {
                Method::GET
            } else {
                Method::POST
            };
            let (status, text) = call(method, &format!("/v1/tokens/{encoded}{suffix}"), None);
            check(status, &text, &format!("/v1/tokens/{encoded}{suffix}"))?;
        }
    }
}

/// After all that, the stored token is intact.
#[test]
fn the_seeded_token_survives_fuzzing() {
    let f = fixture();
    let (status, _) = call(Method::GET, &format!("/v1/tokens/{}", f.id), None);
    assert_eq!(status, 200);
}
