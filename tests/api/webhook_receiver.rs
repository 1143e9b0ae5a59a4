//! A webhook endpoint on loopback that checks every delivery's signature with the Standard
//! Webhooks reference library from PyPI (`tests/webhooks/receiver.py`), so the broker's signing
//! is verified by an implementation other than its own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Receiver {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts a receiver that verifies with `secret`; `up` false: it answers 503 until told
    /// otherwise. The first start sets up its virtualenv (a pip install).
    pub async fn start(secret: &str, up: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/webhooks/run-receiver.sh"
        );
        let child = Command::new("bash")
            .arg(script)
            .args(["--port", "0", "--secret", secret, "--mode"])
            .arg(if up { "up" } else { "down" })
            .arg("--port-file")
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the webhook receiver did not start (tests/webhooks/run-receiver.sh)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The URL an endpoint named `name` is configured with.
    pub fn url(&self, name: &str) -> String {
        format!("{}/hooks/{name}", self.base)
    }

    /// Every delivery so far, in arrival order (`verified`, `id`, `payload`, …).
    pub async fn records(&self) -> Vec<Value> {
        let v: Value = reqwest::get(format!("{}/received", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["records"].as_array().cloned().unwrap_or_default()
    }

    /// Deliveries refused while down.
    pub async fn refused(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/received", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["refused"].as_u64().unwrap_or(0)
    }

    pub async fn set_up(&self, up: bool) {
        let r = reqwest::Client::new()
            .post(format!("{}/mode", self.base))
            .body(if up { "up" } else { "down" })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Waits until `n` deliveries were verified; returns their payloads in arrival order.
    pub async fn payloads(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let records = self.records().await;
            for r in &records {
                assert_eq!(r["verified"], true, "a delivery failed verification: {r}");
            }
            if records.len() >= n {
                return records.iter().map(|r| r["payload"].clone()).collect();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} of {n} deliveries after 20 s: {records:?}",
                records.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
