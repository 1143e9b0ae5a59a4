//! `tests/fake_zoho/fake_zoho.py` as a child process: Zoho's accounts server (errors as HTTP 200,
//! the "Access Denied" lock-out past 10 refreshes per refresh token in 10 minutes, 30 live access
//! tokens per grant, the `accounts-server` callback parameter, user info) and the CRM calls the
//! SDKs make, with an admin API the tests seed and count through. Shared with the Python and
//! Node adapter suites, which get its URL in `FAKE_ZOHO_URL`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

pub struct FakeZoho {
    pub url: String,
    child: Child,
    http: reqwest::Client,
}

impl FakeZoho {
    pub fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake_zoho/fake_zoho.py");
        let mut child = Command::new("python3")
            .args([script, "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/fake_zoho/fake_zoho.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the fake prints its URL");
        let url = line.trim().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "fake Zoho said {line:?}"
        );
        Self {
            url,
            child,
            http: reqwest::Client::new(),
        }
    }

    async fn admin(&self, what: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}/__admin/{what}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "fake Zoho admin {what}: {}",
            r.status()
        );
    }

    /// Registers an OAuth client (a Zoho self client).
    pub async fn client(&self, client_id: &str, client_secret: &str) {
        self.admin(
            "clients",
            json!({ "client_id": client_id, "client_secret": client_secret }),
        )
        .await;
    }

    /// A grant that already exists at Zoho: `refresh_token` of `email` for `client_id`.
    pub async fn refresh_token(&self, refresh_token: &str, client_id: &str, email: &str) {
        self.admin(
            "refresh_tokens",
            json!({ "refresh_token": refresh_token, "client_id": client_id, "email": email }),
        )
        .await;
    }

    /// A code Zoho issued to `client_id` for `email`'s account (as its consent page would).
    pub async fn code(&self, code: &str, client_id: &str, email: &str) {
        self.admin(
            "codes",
            json!({ "code": code, "client_id": client_id, "email": email }),
        )
        .await;
    }

    /// Counters: `token_calls` (every request to the token endpoint), `refresh_calls`,
    /// `exchange_calls`, `access_denied`, …
    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/__admin/stats", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for FakeZoho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
