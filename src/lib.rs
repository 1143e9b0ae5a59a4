//! token-broker: a standalone HTTP service that holds OAuth credentials and hands out valid
//! access tokens. `main.rs` only calls `cli::run`; everything else lives here so tests build the
//! very same application.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod http;
pub mod import;
pub mod jwks;
pub mod metrics;
pub mod oauth;
pub mod proxy;
pub mod server;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod webhooks;

pub use startup::Application;
