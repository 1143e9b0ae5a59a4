//! The `token-broker` binary: parses the command line and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::SecretString;
use token_broker::auth::{mint, MintRequest};
use token_broker::config::Settings;
use token_broker::{startup, telemetry, Application};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.config_dir, cli.environment.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("token-broker: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("token-broker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
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
    }
    Ok(())
}
