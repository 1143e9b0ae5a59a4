//! Faults: a broker killed with -9 in the middle of refreshes, the database going away and coming
//! back, and providers that reset connections. Nothing stored may be lost or left unusable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::fake_provider::{with_fake, FakeProvider};
use crate::helpers::{error_of, spawn_app_with, Backend, BackendExt};
use crate::processes::{shared_config, BrokerCli};

crate::on_every_backend!(a_broker_killed_mid_refresh_loses_no_token);

/// A provider that rotates refresh tokens like Auth0/Okta with a reuse grace: each refresh
/// returns a new refresh token; the one just replaced stays usable until the new one is used, so
/// a client that crashed before storing the new one can still refresh. Any older one is dead.
#[derive(Clone, Default)]
struct RotatingProvider {
    families: Arc<Mutex<HashMap<String, Family>>>,
}

/// The refresh tokens of one grant: the current one and the one it replaced.
type Family = (String, Option<String>);

impl RotatingProvider {
    fn issue(&self, family: &str) -> String {
        let rt = format!("rt-{family}-0");
        self.families
            .lock()
            .unwrap()
            .insert(family.into(), (rt.clone(), None));
        rt
    }

    fn current(&self, family: &str) -> String {
        self.families.lock().unwrap()[family].0.clone()
    }
}

impl Respond for RotatingProvider {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let rt = form.get("refresh_token").cloned().unwrap_or_default();
        let family = rt
            .rsplit_once('-')
            .map_or("", |(family, _)| family)
            .trim_start_matches("rt-")
            .to_owned();
        let mut families = self.families.lock().unwrap();
        let Some((current, previous)) = families.get_mut(&family) else {
            return ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid_grant" }));
        };
        if rt != *current && Some(&rt) != previous.as_ref() {
            return ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid_grant" }));
        }
        let generation: u64 = current.rsplit('-').next().unwrap().parse().unwrap();
        let next = format!("rt-{family}-{}", generation + 1);
        *previous = Some(rt);
        *current = next.clone();
        ResponseTemplate::new(200)
            .set_body_json(json!({ "access_token": format!("at-{next}"), "refresh_token": next, "expires_in": 3600 }))
            .set_delay(Duration::from_millis(30))
    }
}

async fn a_broker_killed_mid_refresh_loses_no_token(backend: Backend) {
    let fake = FakeProvider::start().await;
    let provider = RotatingProvider::default();
    Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/token"))
        .respond_with(provider.clone())
        .mount(&fake.server)
        .await;
    let app = spawn_app_with(backend, |s| with_fake(s, &fake, "client_secret_basic")).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let rt = provider.issue(&format!("f{i}"));
        let t = app
            .seed(json!({ "user_name": format!("crash{i}@example.com"), "provider": "fake", "refresh_token": rt, "access_token": "at", "expiry_time": 1 }))
            .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let config = format!(
        "{}[oauth]\nrefresh_lease_secs = 1\nretry_min_delay_ms = 10\nretry_max_delay_ms = 20\n[oauth.background]\nenabled = false\n\
         [providers.fake]\nkind = 'oauth2'\nauthorize_url = '{uri}/authorize'\ntoken_url = '{uri}/token'\nclient_id = 'fake-client'\nclient_secret = 'x'\n",
        shared_config(&app.settings),
        uri = fake.uri()
    );
    let cli = BrokerCli::with_config(&config);
    let jwt = app.jwt("tokens:write tokens:read tokens:secrets");

    // Hammer forced refreshes, then kill -9 while they are in flight. The budget is lifted: how
    // many refreshes fit in the hammering depends on the build's speed, and a spent budget
    // (rightly a 429 for a forced refresh) is not what this test is about.
    let mut broker = cli.serve(&[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<JoinHandle<usize>> = (0..4)
        .map(|w| {
            let (api, jwt, ids, stop) =
                (broker.api.clone(), jwt.clone(), ids.clone(), stop.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let id = &ids[i % ids.len()];
                    i += 1;
                    let r = api.refresh(&jwt, id).try_send().await;
                    match r {
                        Ok(r) if r.status() == StatusCode::OK => ok += 1,
                        Ok(r) => panic!("refresh answered {} before the crash", r.status()),
                        Err(_) => break, // the broker is gone
                    }
                }
                ok
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    broker.kill_hard();
    stop.store(true, Ordering::Relaxed);
    let refreshed: usize = futures::future::join_all(workers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert!(refreshed > 0, "some refreshes completed before the crash");

    // A new broker on the same database: leases of the dead one expire, every token refreshes.
    let broker = cli.serve(&[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (i, id) in ids.iter().enumerate() {
        let r = broker.refresh(&jwt, id).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "token {i} is stuck after the crash"
        );
        let stored: Value = broker.get_token(&jwt, id).await.json().await.unwrap();
        assert_eq!(stored["status"], "active");
        assert_eq!(
            stored["refresh_token"],
            provider.current(&format!("f{i}")),
            "token {i} points at a dead refresh token"
        );
    }
    assert_eq!(app.count().await, ids.len());
}

/// A TCP proxy in front of the database that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Proxy {
    async fn to(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, connections) = (up.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    connections.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut outbound) =
                            TcpStream::connect(("127.0.0.1", target_port)).await
                        {
                            let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
                }
            })
        };
        Self {
            port,
            up,
            connections,
            _accept: accept,
        }
    }

    /// The database "goes away": open connections are cut, new ones refused.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn database_down_and_back(backend: Backend, port: u16) {
    let proxy = Proxy::to(port).await;
    let app = spawn_app_with(backend, |s| {
        let url = secrecy::ExposeSecret::expose_secret(&s.database.url)
            .replace(&format!(":{port}/"), &format!(":{}/", proxy.port));
        s.database.url = secrecy::SecretString::from(url);
        s.database.acquire_timeout_secs = 1;
    })
    .await;
    let token = app.seed(json!({ "user_name": "outage@example.com", "refresh_token": "rt-outage", "access_token": "at" })).await;
    let id = token["id"].as_str().unwrap();

    proxy.down();
    for _ in 0..3 {
        let r = app.get_token(&app.admin(), id).await;
        assert!(r.headers().contains_key("retry-after"));
        let (status, body) = error_of(r).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("database_unavailable")
            )
        );
    }
    let (status, _) = error_of(
        app.save(
            &app.admin(),
            &json!({ "user_name": "new@example.com", "refresh_token": "x" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let r = app.readyz().await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.healthz().await.status(),
        StatusCode::OK,
        "the process itself is fine"
    );

    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if app.get_token(&app.admin(), id).await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the broker recovers without a restart");
    let after: Value = app.get_token(&app.admin(), id).await.json().await.unwrap();
    assert_eq!(after, token);
    assert_eq!(app.readyz().await.status(), StatusCode::OK);
    assert_eq!(app.count().await, 1, "the refused save wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_and_back() {
    if Backend::Postgres.enabled() {
        database_down_and_back(Backend::Postgres, 5432).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_down_and_back() {
    if Backend::MySql.enabled() {
        database_down_and_back(Backend::MySql, 3306).await;
    }
}

/// A provider that accepts connections and resets them at once.
#[tokio::test]
async fn a_provider_resetting_connections_is_a_503_and_nothing_changes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = socket_reset(stream);
        }
    });
    let fake = FakeProvider::start().await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_fake(s, &fake, "client_secret_basic");
        s.providers.get_mut("fake").unwrap().token_url =
            Some(format!("http://127.0.0.1:{port}/token"));
    })
    .await;
    let t = app
        .seed(json!({ "user_name": "reset@example.com", "provider": "fake", "refresh_token": "rt-reset", "access_token": "at", "expiry_time": 1 }))
        .await;
    let r = app
        .access_token(&app.jwt("tokens:access"), t["id"].as_str().unwrap(), "")
        .await;
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("provider_unavailable")
        )
    );
    let stored: Value = app
        .get_token(&app.admin(), t["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stored["refresh_token"].as_str(), stored["status"].as_str()),
        (Some("rt-reset"), Some("active"))
    );
}

/// Closes a connection with SO_LINGER 0, which sends a TCP RST.
fn socket_reset(stream: std::net::TcpStream) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(&stream);
    socket.set_linger(Some(Duration::ZERO))?;
    drop(stream);
    Ok(())
}
