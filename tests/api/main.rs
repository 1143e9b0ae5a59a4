//! The API test suite: each test starts the real broker on a random port with its own database.
//! Storage tests run once per backend (`…::sqlite::…`, `…::postgres::…`, `…::mysql::…`).
//! Tests talk to a broker through `client::ApiClient`, whether it runs in-process
//! (`helpers::TestApp`) or as a `serve` process (`processes::BrokerProcess`).
//!
//! Switches (environment variables):
//! - `TB_TEST_BACKENDS=sqlite,postgres,mysql`: the backends to run (default: all three).
//! - `TEST_LOG=1`: the in-process broker logs to the test's output through a tracing subscriber
//!   (filter: `RUST_LOG`, default `info`), and `serve` processes get the test's `RUST_LOG` and
//!   echo their log lines; e.g. `TEST_LOG=1 RUST_LOG=token_broker=debug cargo test --test api
//!   oauth_refresh -- --nocapture`. Without it tests stay quiet (libtest shows a failed test's
//!   output either way).
//! - `TB_TEST_SKIP_PYTHON=1` / `TB_TEST_SKIP_NODE=1`: skip the SDK adapter suites.
//! - `TB_TEST_SKIP_BROWSER=1`: skip the Chromium tests; `TB_TEST_SKIP_SCHEMATHESIS=1`: skip the
//!   OpenAPI fuzzing (schemathesis).

mod client;
mod fake_provider;
mod fake_zoho;
mod helpers;

mod anonymous_traffic;
mod auth;
mod browser;
mod caller_keys;
mod cli;
mod deploy;
mod encryption;
mod errors;
mod exchange;
mod faults;
mod fuzz;
mod health;
mod id_tokens;
mod import;
mod interop;
mod oauth_background;
mod oauth_login;
mod oauth_refresh;
mod oauth_refresh_failures;
mod oauth_revoke;
mod observability;
mod openapi;
mod processes;
mod proxy;
mod refresh_limits;
mod replicas;
mod schema_fuzz;
mod sdk_adapters;
mod sdk_storm;
mod single_flight;
mod stored_rows;
mod tenancy;
mod tls;
mod tokens;
mod webhook_receiver;
mod webhooks;
