//! The command line: the clap definitions of every subcommand and their dispatch (serve, migrate,
//! jwt mint, tokens list, keys generate/rotate, openapi, import zoho-csv/zoho-db), with what each
//! prints and the process exit code it returns. `main.rs` only calls [`run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::auth::{mint, MintRequest};
use crate::config::Settings;
use crate::{startup, telemetry, Application};

#[derive(Parser)]
#[command(
    name = "token-broker",
    version,
    about = "Holds OAuth credentials and hands out valid access tokens"
)]
struct Cli {
    /// Folder with `{env}.toml` overrides of the built-in defaults.
    #[arg(
        long,
        env = "TOKEN_BROKER_CONFIG_DIR",
        default_value = "config",
        global = true
    )]
    config_dir: PathBuf,
    /// Environment name: loads `{config_dir}/{env}.toml` on top of the defaults.
    #[arg(long = "env", env = "TOKEN_BROKER_ENV", global = true)]
    environment: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Caller JWTs.
    Jwt {
        #[command(subcommand)]
        command: JwtCommand,
    },
    /// Stored tokens and their health.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Webhook endpoints.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Print the OpenAPI document (as served at /openapi.json).
    Openapi,
    /// Import the Zoho SDKs' token stores (idempotent).
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// List tokens with their status and how long their access token stays valid.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a fresh key (base64 of 32 random bytes) for crypto.keys.<id> or crypto.lookup_key.
    Generate,
    /// Re-encrypt every token under crypto.active_key_id (safe while the service runs).
    Rotate,
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Print a fresh endpoint secret (whsec_…, 32 random bytes) for webhooks.endpoints.<name>.secret.
    Secret,
}

#[derive(Subcommand)]
enum ImportSource {
    /// A Zoho FileStore CSV file.
    ZohoCsv {
        file: PathBuf,
        /// Provider of the imported tokens.
        #[arg(long, default_value = "zoho-us")]
        provider: String,
        /// Tenant of the imported tokens.
        #[arg(long)]
        tenant: Option<String>,
        /// Ignore the file's ids: match by user_name, give new tokens generated ids.
        #[arg(long)]
        new_ids: bool,
    },
    /// A Zoho DBStore MySQL table.
    ZohoDb {
        /// mysql://user:password@host:3306/database
        url: String,
        #[arg(long, default_value = "oauthtoken")]
        table: String,
        #[arg(long, default_value = "zoho-us")]
        provider: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Ignore the table's ids: match by user_name, give new tokens generated ids.
        #[arg(long)]
        new_ids: bool,
    },
}

#[derive(Subcommand)]
enum JwtCommand {
    /// Print a caller JWT signed with the configured HS256 secret.
    Mint {
        /// The calling service, recorded as `sub`.
        #[arg(long)]
        sub: String,
        /// Space-separated scopes, e.g. "tokens:read tokens:write".
        #[arg(long, default_value = "tokens:read")]
        scope: String,
        /// Confine the caller to one tenant; without it the JWT may act on every tenant (`"*"`).
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

/// Exit codes (the README's table):
/// - 0: done.
/// - 1: the command failed (database unreachable, a file unreadable, …).
/// - 2: the command line is wrong (unknown subcommand or option; printed by clap).
/// - 3: done, but some rows were not: an import rejected rows, or `tokens list` / `keys rotate`
///   met rows it could not decrypt (each is named on stderr).
/// - 78: the configuration is invalid (a bad key, value, file or secret; EX_CONFIG).
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_PARTIAL: u8 = 3;
pub const EXIT_CONFIG: u8 = 78;

/// Parses the process's arguments, runs the command and returns the exit code (see
/// [`EXIT_CONFIG`] and its neighbours).
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        // Needs no configuration: the document comes from the code alone.
        let doc = crate::http::openapi();
        match doc.to_pretty_json() {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("token-broker: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(&cli.config_dir, cli.environment.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("token-broker: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log_writer = telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("token-broker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command.unwrap_or(Command::Serve), settings));
    // Tasks still running (a batch write, a provider call) get a moment, not forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    // Everything logged is written before the last words below.
    drop(log_writer);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("token-broker: {e:#}");
            let config = e
                .chain()
                .any(|cause| cause.downcast_ref::<crate::config::ConfigError>().is_some());
            ExitCode::from(if config { EXIT_CONFIG } else { EXIT_FAILURE })
        }
    }
}

/// Runs a command; returns the process exit code.
async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<u8> {
    if let Command::Import { source } = command {
        return ops::import(&settings, source).await;
    }
    match command {
        Command::Serve => {
            let app = Application::build(&settings).await?;
            app.run_until(startup::shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = startup::connect(&settings)?;
            store.migrate().await?;
            println!("migrations applied ({})", store.backend().name());
        }
        Command::Jwt {
            command:
                JwtCommand::Mint {
                    sub,
                    scope,
                    tenant,
                    ttl,
                },
        } => {
            let keys = startup::load_keys(&settings)?;
            let secret: SecretString = keys.hs256_secret.ok_or_else(|| {
                anyhow::anyhow!("auth.hs256_secret: not configured, so no caller JWT can be minted")
            })?;
            let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            let tenant = match tenant {
                Some(t) if t == crate::auth::ALL_TENANTS => t,
                Some(t) => crate::domain::TenantName::parse(t)?.as_str().to_owned(),
                None => {
                    eprintln!(
                        "note: no --tenant given: this JWT may act on EVERY tenant (\"tenant\": \"*\"); pass --tenant <name> to confine it to one"
                    );
                    crate::auth::ALL_TENANTS.to_owned()
                }
            };
            let token = mint(
                &secret,
                &MintRequest {
                    sub,
                    scope,
                    tenant,
                    ttl_secs: ttl,
                    issuer: non_empty(&settings.auth.issuer),
                    audience: non_empty(&settings.auth.audience),
                },
            )?;
            println!("{token}");
        }
        Command::Tokens {
            command:
                TokensCommand::List {
                    status,
                    provider,
                    tenant,
                },
        } => return ops::list_tokens(&settings, status, provider, tenant).await,
        Command::Keys {
            command: KeysCommand::Generate,
        } => println!(
            "{}",
            secrecy::ExposeSecret::expose_secret(&crate::crypto::generate_key())
        ),
        Command::Keys {
            command: KeysCommand::Rotate,
        } => return ops::rotate_keys(&settings).await,
        Command::Webhooks {
            command: WebhooksCommand::Secret,
        } => println!("{}", crate::webhooks::SigningKey::generate()),
        Command::Import { .. } | Command::Openapi => unreachable!("handled above"),
    }
    Ok(0)
}

/// The ops subcommands: thin wrappers that print what the library did.
mod ops {
    use super::ImportSource;
    use crate::config::Settings;
    use crate::domain::{ProviderKey, TenantName, TokenStatus};
    use crate::import::{import_csv, import_mysql, ImportOptions};
    use crate::startup::open_token_service;
    use crate::tokens::{ListQuery, Tenancy};

    pub async fn list_tokens(
        settings: &Settings,
        status: Option<String>,
        provider: Option<String>,
        tenant: Option<String>,
    ) -> anyhow::Result<u8> {
        let tokens = open_token_service(settings).await?;
        let status = status.map(|s| TokenStatus::parse(&s)).transpose()?;
        let tenant = tenant.map(TenantName::parse).transpose()?;
        let now = tokens.now_ms();
        println!(
            "{:<38} {:<30} {:<10} {:<12} {:<13} {:>12}",
            "ID", "USER", "PROVIDER", "TENANT", "STATUS", "EXPIRES IN"
        );
        let mut cursor = None;
        let mut count = 0;
        let mut unreadable = Vec::new();
        loop {
            let page = tokens
                .list(
                    &Tenancy::Unrestricted,
                    ListQuery {
                        limit: Some(settings.tokens.max_page_size),
                        cursor,
                        provider: provider.clone(),
                        status,
                        tenant: tenant.clone(),
                        ..Default::default()
                    },
                )
                .await?;
            for t in &page.tokens {
                count += 1;
                let expires = match t.expiry_time {
                    Some(e) if e > now => format!("{}s", (e - now) / 1000),
                    Some(_) => "expired".into(),
                    None => "-".into(),
                };
                println!(
                    "{:<38} {:<30} {:<10} {:<12} {:<13} {:>12}",
                    t.id.as_str(),
                    t.user_name.as_ref().map(|u| u.as_str()).unwrap_or("-"),
                    t.provider.as_str(),
                    t.tenant.as_ref().map(|t| t.as_str()).unwrap_or("-"),
                    t.status.as_str(),
                    expires
                );
            }
            unreadable.extend(page.unreadable);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        println!("{count} token(s)");
        Ok(report_unreadable(&unreadable))
    }

    /// Names the rows that could not be read, on stderr; the exit code says whether there were.
    fn report_unreadable(unreadable: &[crate::tokens::Unreadable]) -> u8 {
        for u in unreadable {
            eprintln!("unreadable token {}: {}", u.id, u.reason);
        }
        if unreadable.is_empty() {
            0
        } else {
            eprintln!(
                "{} stored token(s) could not be read: is a key missing from crypto.keys?",
                unreadable.len()
            );
            super::EXIT_PARTIAL
        }
    }

    pub async fn rotate_keys(settings: &Settings) -> anyhow::Result<u8> {
        let tokens = open_token_service(settings).await?;
        let report = tokens.reencrypt_all().await?;
        println!(
            "re-encrypted {} token(s) under key `{}`; {} already used it; {} could not be read",
            report.reencrypted,
            tokens.active_key_id(),
            report.unchanged,
            report.unreadable.len()
        );
        Ok(report_unreadable(&report.unreadable))
    }

    /// Returns the process exit code: 0 when every row was imported, 3 when some were rejected.
    pub async fn import(settings: &Settings, source: ImportSource) -> anyhow::Result<u8> {
        let tokens = open_token_service(settings).await?;
        let (report, what) = match source {
            ImportSource::ZohoCsv {
                file,
                provider,
                tenant,
                new_ids,
            } => {
                let options = options(provider, tenant, new_ids)?;
                (
                    import_csv(&tokens, &file, &options).await?,
                    file.display().to_string(),
                )
            }
            ImportSource::ZohoDb {
                url,
                table,
                provider,
                tenant,
                new_ids,
            } => {
                let options = options(provider, tenant, new_ids)?;
                (
                    import_mysql(&tokens, &url, &table, &options).await?,
                    format!("table `{table}`"),
                )
            }
        };
        println!(
            "imported {what}: {} created, {} updated, {} rejected",
            report.created,
            report.updated,
            report.rejected.len()
        );
        for r in &report.rejected {
            println!("rejected {}: {}", r.at, r.reason);
        }
        Ok(if report.rejected.is_empty() {
            0
        } else {
            super::EXIT_PARTIAL
        })
    }

    fn options(
        provider: String,
        tenant: Option<String>,
        new_ids: bool,
    ) -> anyhow::Result<ImportOptions> {
        Ok(ImportOptions {
            provider: ProviderKey::parse(provider)?,
            tenant: tenant.map(TenantName::parse).transpose()?,
            new_ids,
        })
    }
}
