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
        /// Confine the caller to one tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

/// Parses the process's arguments, runs the command and returns the exit code: 0 on success, 2
/// for invalid configuration, 3 when an import rejected rows, 1 for any other failure.
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
            return ExitCode::from(2);
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
            ExitCode::FAILURE
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
        } => ops::list_tokens(&settings, status, provider, tenant).await?,
        Command::Keys {
            command: KeysCommand::Generate,
        } => println!(
            "{}",
            secrecy::ExposeSecret::expose_secret(&crate::crypto::generate_key())
        ),
        Command::Keys {
            command: KeysCommand::Rotate,
        } => ops::rotate_keys(&settings).await?,
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
    ) -> anyhow::Result<()> {
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
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        println!("{count} token(s)");
        Ok(())
    }

    pub async fn rotate_keys(settings: &Settings) -> anyhow::Result<()> {
        let tokens = open_token_service(settings).await?;
        let report = tokens.reencrypt_all().await?;
        println!(
            "re-encrypted {} token(s) under key `{}`; {} already used it",
            report.reencrypted,
            tokens.active_key_id(),
            report.unchanged
        );
        Ok(())
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
        Ok(if report.rejected.is_empty() { 0 } else { 3 })
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
