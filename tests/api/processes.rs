//! The broker binary as a separate process: one-shot CLI runs and `serve` processes, configured
//! through a TOML file so they can share a database and keys with an in-process test app.
//! A `serve` process derefs to an [`ApiClient`] for its port, like `TestApp` does.
//!
//! With `TEST_LOG=1` the test's `RUST_LOG` (if set) is passed to `serve` processes in place of
//! their default `info`, and their log lines are echoed to the test's output as they arrive.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use token_broker::config::Settings;

use crate::client::ApiClient;
use crate::helpers::{test_log, TestApp};

pub const BIN: &str = env!("CARGO_BIN_EXE_token-broker");

/// A command for the binary with no `TOKEN_BROKER*` variables (nor `RUST_LOG`: see
/// [`BrokerCli::serve`]) leaking in from the test's environment.
pub fn clean_command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("TOKEN_BROKER") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The database, key and caller-JWT settings of `settings`, as a config file.
pub fn shared_config(settings: &Settings) -> String {
    let keys: Vec<(String, String)> = settings
        .crypto
        .keys
        .iter()
        .map(|(id, key)| (id.clone(), key.expose_secret().to_owned()))
        .collect();
    config_with_keys(settings, &settings.crypto.active_key_id, &keys)
}

/// Like [`shared_config`], with other encryption keys (the lookup key stays).
pub fn config_with_keys(settings: &Settings, active: &str, keys: &[(String, String)]) -> String {
    let keys = keys
        .iter()
        .map(|(id, key)| format!("\"{id}\" = '{key}'"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "[database]\nurl = '{url}'\n\
         [crypto]\nactive_key_id = '{active}'\nlookup_key = '{lookup}'\n\
         [crypto.keys]\n{keys}\n\
         [auth]\nhs256_secret = '{hs256}'\n",
        url = settings.database.url.expose_secret(),
        active = active,
        lookup = settings.crypto.lookup_key.expose_secret(),
        hs256 = settings.auth.hs256_secret.expose_secret(),
    )
}

/// The binary with a config folder of its own (`{dir}/cli.toml`, loaded with `--env cli`).
pub struct BrokerCli {
    pub dir: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl BrokerCli {
    pub fn with_config(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cli.toml"), toml).unwrap();
        Self { dir }
    }

    /// Configured for the same database and keys as `app`.
    pub fn for_app(app: &TestApp) -> Self {
        Self::with_config(&shared_config(&app.settings))
    }

    pub fn command(&self) -> Command {
        let mut cmd = clean_command();
        let dir = self.dir.path().to_str().unwrap();
        cmd.current_dir(dir)
            .args(["--config-dir", dir, "--env", "cli"]);
        cmd
    }

    /// Writes `contents` to a file in the CLI's folder and returns its path.
    pub fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Runs the binary with `args` and debug logging on, so no-secret checks cover the log too.
    pub async fn run(&self, args: &[&str]) -> Run {
        let out = tokio::process::Command::from(self.command())
            .args(args)
            .env("RUST_LOG", "debug")
            .output()
            .await
            .unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `serve` on a free port with extra environment variables; waits until ready.
    /// Logs at `info` (some tests read the log), or at the test's `RUST_LOG` with `TEST_LOG=1`.
    pub async fn serve(&self, env: &[(&str, &str)]) -> BrokerProcess {
        let port = free_port();
        let mut cmd = self.command();
        let filter = std::env::var("RUST_LOG")
            .ok()
            .filter(|_| test_log())
            .unwrap_or_else(|| "info".into());
        cmd.arg("serve")
            .env("TOKEN_BROKER__SERVER__PORT", port.to_string())
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        BrokerProcess::spawn(cmd, port).await
    }
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    pub fn assert_stdout(&self, needle: &str) -> &Self {
        assert!(self.stdout.contains(needle), "no `{needle}` in {self:#?}");
        self
    }

    pub fn assert_stderr(&self, needle: &str) -> &Self {
        assert!(self.stderr.contains(needle), "no `{needle}` in {self:#?}");
        self
    }

    pub fn assert_no_secret(&self, secrets: &[&str]) -> &Self {
        for s in secrets {
            assert!(!self.stdout.contains(s), "stdout shows `{s}`: {self:#?}");
            assert!(!self.stderr.contains(s), "stderr shows `{s}`: {self:#?}");
        }
        self
    }
}

/// A running `serve` process; killed and reaped when dropped. `broker.refresh(…)`,
/// `broker.base`, … are its [`ApiClient`]'s.
pub struct BrokerProcess {
    child: Child,
    pub api: ApiClient,
    log: Arc<Mutex<String>>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl BrokerProcess {
    /// Spawns `cmd` (which must serve on `port` and pipe stderr) and waits for `/readyz`.
    pub async fn spawn(mut cmd: Command, port: u16) -> Self {
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            let echo = test_log();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("[broker :{port}] {line}");
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        // From here on, Drop kills and reaps the process whatever happens.
        let broker = Self {
            child,
            api: ApiClient::new(format!("http://127.0.0.1:{port}")),
            log,
        };
        for _ in 0..200 {
            if broker
                .readyz()
                .try_send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return broker;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "broker process on port {port} did not become ready:\n{}",
            broker.log()
        );
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the broker did not exit within 15 s of SIGTERM");
    }
}

impl std::ops::Deref for BrokerProcess {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
