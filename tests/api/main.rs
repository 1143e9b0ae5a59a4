//! The API test suite: each test starts the real broker on a random port with its own database.
//! Storage tests run once per backend (`…::sqlite::…`, `…::postgres::…`, `…::mysql::…`).
//! Tests talk to a broker through `client::ApiClient`, whether it runs in-process
//! (`helpers::TestApp`) or as a `serve` process (`processes::BrokerProcess`).

mod client;
mod fake_provider;
mod fake_zoho;
mod helpers;

mod auth;
mod cli;
mod deploy;
mod encryption;
mod errors;
mod exchange;
mod faults;
mod fuzz;
mod health;
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
mod refresh_limits;
mod replicas;
mod sdk_adapters;
mod sdk_storm;
mod single_flight;
mod tokens;
