//! HTTPS served by the broker itself (`server.tls.cert_file` / `key_file`, rustls): a
//! certificate made for the test, trusted by the client as its only root.

use reqwest::StatusCode;

use crate::helpers::{spawn_app_with, Backend};

#[tokio::test]
async fn the_broker_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, made.cert.pem()).unwrap();
    std::fs::write(&key_file, made.key_pair.serialize_pem()).unwrap();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.tls.cert_file = cert_file.display().to_string();
        s.server.tls.key_file = key_file.display().to_string();
    })
    .await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let https = format!("https://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The API itself, over TLS, with a caller JWT.
    let r = client
        .get(format!("{https}/v1/tokens"))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // HTTP/2 is negotiated by ALPN.
    let h2 = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    // A client that does not trust the certificate is refused by its own TLS check, and plain
    // HTTP on the TLS port gets no answer.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{https}/healthz"))
        .send()
        .await
        .is_err());
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .is_err());
}
