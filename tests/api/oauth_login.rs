//! The browser login (a connect session → its link, opened in a browser → provider →
//! `/v1/oauth/callback`): PKCE, the caller's tenant, one use per link and state, the binding to the
//! browser that opened the link, return_to's checks, RFC 9207 issuer checks, and authorize's input
//! checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::client;
use crate::fake_provider::{app_with, grant, with_fake, FakeProvider, CLIENT_ID};
use crate::helpers::{error_of, spawn_app_with, Backend, TestApp};

crate::on_every_backend!(
    the_browser_login_stores_the_token_once,
    a_login_answer_from_another_issuer_is_refused,
    a_login_finished_in_another_browser_is_refused,
    a_connect_session_reports_how_the_login_ended,
    return_to_is_checked_and_hears_about_failures,
);

/// The origin the tests' return_to URLs use.
const PORTAL: &str = "https://portal.example.com";

/// Follows the broker's authorize redirect to the connect link and opens it (as `app`'s own
/// browser); returns (state, code_challenge, redirect_uri).
async fn start_login(app: &TestApp, query: &str) -> (String, String, String) {
    let r = app
        .authorize(&app.jwt_for("portal", "tokens:write", Some("acme")), query)
        .await;
    assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.text().await);
    let link = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(link.contains("/connect/"), "{link}");
    let (state, challenge, redirect_uri, scope) = open_link(app, &link).await;
    assert_eq!(scope, "openid offline_access");
    (state, challenge, redirect_uri)
}

/// Opens a connect link in `app`'s browser: 302 to the provider with the binding cookie.
/// Returns (state, code_challenge, redirect_uri, scope).
async fn open_link(app: &TestApp, link: &str) -> (String, String, String, String) {
    let r = app.open_link(link).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{:?}", r.text().await);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(location.path(), "/authorize");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["prompt"], "consent");
    (
        q["state"].clone(),
        q["code_challenge"].clone(),
        q["redirect_uri"].clone(),
        q["scope"].clone(),
    )
}

/// A broker on `fake` whose return_to may point at [`PORTAL`].
async fn app_with_portal(backend: Backend, fake: &FakeProvider) -> TestApp {
    spawn_app_with(backend, |s| {
        with_fake(s, fake, "client_secret_basic");
        s.oauth.return_to_origins = vec![PORTAL.into()];
    })
    .await
}

async fn the_browser_login_stores_the_token_once(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app_with_portal(backend, &fake).await;
    let (state, challenge, redirect_uri) = start_login(
        &app,
        "?provider=fake&user_name=carol@example.com&return_to=https://portal.example.com/done",
    )
    .await;
    assert!(redirect_uri.ends_with("/v1/oauth/callback"));

    // The provider checks the PKCE verifier against the challenge it was given.
    struct Pkce(String);
    impl wiremock::Match for Pkce {
        fn matches(&self, r: &wiremock::Request) -> bool {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&r.body).into_owned().collect();
            form.get("code_verifier")
                .is_some_and(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == self.0)
                && form.get("code").map(String::as_str) == Some("the-code")
        }
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(Pkce(challenge))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant(
            "at-login",
            Some("rt-login"),
            3600,
        )))
        .expect(1)
        .mount(&fake.server)
        .await;

    let callback = format!("?code=the-code&state={state}");
    let r = app.callback(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(back.host_str(), Some("portal.example.com"));
    let q: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["status"], "connected");

    // Stored in the tenant of the caller who started the login.
    let acme = app.jwt_for("portal", "tokens:read tokens:secrets", Some("acme"));
    let t: Value = app
        .get_token(&acme, &q["token_id"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["user_name"], "carol@example.com");
    assert_eq!(t["refresh_token"], "rt-login");
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["provider"], "fake");

    // The same state again: refused (back to return_to with the reason), nothing stored, no
    // second exchange.
    let r = app.callback(&callback).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let again = r.headers()["location"].to_str().unwrap();
    assert!(
        again.ends_with("status=failed&error=already_used"),
        "{again}"
    );
    let r = app.callback("?code=x&state=forged").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count().await, 1);

    // No return_to: a page that says which account was connected.
    let (state, _, _) = start_login(&app, "?provider=fake&user_name=dave@example.com").await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-d", Some("rt-d"), 3600)))
        .mount(&fake.server)
        .await;
    let r = app.callback(&format!("?code=c2&state={state}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<strong>dave@example.com</strong> is now connected to"),
        "{page}"
    );
    assert!(page.contains(r#"data-outcome="connected""#), "{page}");
}

/// A callback is only taken from the browser that opened the session's link: someone who gets
/// hold of the provider's answer (a forwarded link, a login they started and sent to a victim)
/// cannot finish it elsewhere.
async fn a_login_finished_in_another_browser_is_refused(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app_with(backend, &fake).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-x", Some("rt-x"), 3600)))
        .mount(&fake.server)
        .await;
    let (state, _, _) = start_login(&app, "?provider=fake&user_name=claimed@example.com").await;
    let elsewhere = app.other_browser();
    let r = elsewhere
        .callback(&format!("?code=the-code&state={state}"))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"data-outcome="other-browser""#), "{page}");
    assert_eq!(
        fake.calls("authorization_code").await,
        0,
        "no code exchanged"
    );
    assert_eq!(app.count().await, 0);
    // Nor can the right browser finish it afterwards: the attempt ended the session.
    let r = app.callback(&format!("?code=the-code&state={state}")).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(app.count().await, 0);
}

/// `POST /v1/connect/sessions` and `GET /v1/connect/sessions/{id}`: a service creates a session,
/// sends the person to its link (which opens once) and reads how the login ended.
async fn a_connect_session_reports_how_the_login_ended(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app_with(backend, &fake).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-s", Some("rt-s"), 3600)))
        .mount(&fake.server)
        .await;
    let jwt = app.jwt_for("portal", "tokens:write tokens:read", Some("acme"));
    let r = app
        .create_session(
            &jwt,
            &serde_json::json!({ "provider": "fake", "user_name": "sam@example.com", "scopes": ["openid"] }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["scopes"], serde_json::json!(["openid"]));
    let id = created["id"].as_str().unwrap().to_owned();
    let link = created["connect_url"].as_str().unwrap().to_owned();

    let (state, _, _, scope) = open_link(&app, &link).await;
    assert_eq!(scope, "openid");
    let seen: Value = app.session(&jwt, &id).await.json().await.unwrap();
    assert_eq!(seen["status"], "opened");
    assert!(seen.get("connect_url").is_none(), "the link is shown once");
    // The link opens once: a second visit (this browser or another) is told so.
    let again = app.other_browser().open_link(&link).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again
        .text()
        .await
        .unwrap()
        .contains(r#"data-outcome="used""#));

    let r = app.callback(&format!("?code=c&state={state}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: Value = app.session(&jwt, &id).await.json().await.unwrap();
    assert_eq!(done["status"], "connected");
    let token: Value = app
        .get_token(&jwt, done["token_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(token["user_name"], "sam@example.com");
    assert_eq!(token["scopes"], serde_json::json!(["openid"]));
    assert_eq!(token["refreshable"], true);

    // Another tenant's caller cannot see it; a scope the provider does not allow is refused.
    let other = app.jwt_for("portal", "tokens:read tokens:write", Some("globex"));
    assert_eq!(
        app.session(&other, &id).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .create_session(
            &jwt,
            &serde_json::json!({ "provider": "fake", "scopes": ["admin"] }),
        )
        .await;
    let (status, body) = error_of(r).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "scopes");
    // An unknown link is a page, not JSON.
    let r = app.open_link("/connect/not-a-link").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("<!doctype html>"));
}

/// return_to: only allowed origins, never user info or backslash tricks, at most 2048
/// characters (a 422, never a 500, on every database); a failed login goes back there too, with
/// the error's code.
async fn return_to_is_checked_and_hears_about_failures(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app_with_portal(backend, &fake).await;
    let jwt = app.jwt("tokens:write");
    let long = format!("{PORTAL}/{}", "a".repeat(2100));
    for bad in [
        "https:\\\\evil.example/",
        "http://x@evil.example/",
        "https://portal.example.com@evil.example/",
        "https://evil.example/done",
        "javascript:alert(1)",
        "/relative",
        long.as_str(),
    ] {
        let r = app
            .create_session(
                &jwt,
                &serde_json::json!({ "provider": "fake", "return_to": bad }),
            )
            .await;
        let (status, body) = error_of(r).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(body["field"], "return_to", "{bad}");
    }
    assert_eq!(
        app.authorize(
            &jwt,
            &client::query(&[("provider", "fake"), ("return_to", &long)])
        )
        .await
        .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // A person who declines at the provider is sent back with the reason's code.
    let (state, _, _) = start_login(
        &app,
        &client::query(&[
            ("provider", "fake"),
            ("return_to", &format!("{PORTAL}/done")),
        ]),
    )
    .await;
    let r = app
        .callback(&format!("?error=access_denied&state={state}"))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(back.origin().ascii_serialization(), PORTAL);
    assert_eq!(q["status"], "failed");
    assert_eq!(q["error"], "access_denied");
    assert_eq!(app.count().await, 0);
}

/// RFC 9207: with `providers.<key>.issuer` set, the callback's `iss` must name that issuer, so a
/// code from another provider (a mix-up attack) is never exchanged.
async fn a_login_answer_from_another_issuer_is_refused(backend: Backend) {
    let fake = FakeProvider::start().await;
    let issuer = fake.uri();
    let app = spawn_app_with(backend, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.providers.get_mut("fake").unwrap().issuer = Some(issuer.clone());
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant("at-i", Some("rt-i"), 3600)))
        .mount(&fake.server)
        .await;
    let callback = |state: &str, iss: Option<&str>| {
        let mut pairs = vec![("code", "the-code"), ("state", state)];
        pairs.extend(iss.map(|iss| ("iss", iss)));
        app.callback(&client::query(&pairs))
    };

    for (iss, says) in [
        (Some("https://evil.example.com"), "another issuer"),
        (None, "names no issuer"),
    ] {
        let (state, _, _) = start_login(&app, "?provider=fake&user_name=erin@example.com").await;
        let r = callback(&state, iss).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let page = r.text().await.unwrap();
        assert!(page.contains(says), "{page}");
    }
    assert_eq!(
        fake.calls("authorization_code").await,
        0,
        "no code exchanged"
    );
    assert_eq!(app.count().await, 0);

    let (state, _, _) = start_login(&app, "?provider=fake&user_name=erin@example.com").await;
    let r = callback(&state, Some(&issuer)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn authorize_can_answer_json_and_rejects_bad_input() {
    let fake = FakeProvider::start().await;
    let app = app_with(Backend::Sqlite, &fake).await;
    let jwt = app.jwt("tokens:write");
    let r = app
        .authorize(&jwt, "?provider=fake")
        .header("accept", "application/json")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["authorize_url"]
        .as_str()
        .unwrap()
        .contains("/connect/"));

    for (query, field) in [
        ("?provider=nope", "provider"),
        ("?provider=fake&return_to=javascript:alert(1)", "return_to"),
        ("?provider=zoho-us", "provider"), // no client_id configured for it
    ] {
        let r = app.authorize(&jwt, query).await;
        let (status, body) = error_of(r).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(body["field"], field, "{query}");
    }
    // No caller JWT.
    let r = app.get_public("/v1/oauth/authorize?provider=fake").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A person who opens it in a browser gets a page that explains, not JSON.
    let r = app
        .get_public("/v1/oauth/authorize?provider=fake")
        .header("accept", "text/html,application/xhtml+xml")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("for applications"));
}
