use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mpanel_controller::{commands, telemetry};

/// The mpanel controller: billing, provisioning queue, cron, admin API and the agents' CA.
///
/// Configuration comes from the environment, a .env file in the working directory, and an
/// optional TOML file (--config); see the README for every variable.
#[derive(Debug, Parser)]
#[command(name = "mpanel-controller", version, about, long_about)]
struct Cli {
    /// TOML file with configuration keys in lower case (environment variables win).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API, the agents' gRPC endpoint, workers and cron until SIGTERM/SIGINT.
    ///
    /// Listens on HTTP_LISTEN (API, webhooks, /healthz, /readyz, /metrics, the dashboard's
    /// /admin pages) and GRPC_LISTEN (agents, mutual TLS; enrollment on the same port). Applies
    /// pending migrations first. Needs ENCRYPTION_KEY. On SIGTERM the servers drain and workers
    /// finish or release the task in hand.
    Serve,
    /// Apply database migrations for the configured backend and exit.
    ///
    /// DATABASE_URL picks the backend (sqlite://… or postgres://…); applying them again is a
    /// no-op. `serve` does this too, so it is only needed to migrate ahead of a rollout.
    Migrate,
    /// Manage admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the admins who sign in to the web dashboard (/admin/login).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an admin. Without --password-stdin, a generated password is printed once on
    /// stdout; only its argon2id hash is stored.
    Create {
        /// The admin's email, used to sign in (unique, whatever its case).
        #[arg(long)]
        email: String,
        /// Read the password from stdin (at least 12 characters; one trailing newline is
        /// dropped) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the admins: id, email, created, and whether disabled.
    List,
    /// Disable an admin: it can no longer sign in, and its sessions are revoked.
    Disable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it once on stdout.
    ///
    /// Only a hash of the token is stored; keep the printed value, it cannot be shown again.
    /// Use it as `Authorization: Bearer <token>` or MPANEL_TOKEN for mpanelctl.
    Create {
        /// Create an admin token (the only kind so far).
        #[arg(long, required = true)]
        admin: bool,
        /// A label for the token, shown in the activity log.
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpanel-controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpanel-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = commands::load_config(cli.config.as_deref())?;
    telemetry::init(&config.log_filter, config.log_format);
    match cli.command {
        Command::Serve => commands::serve(config).await,
        Command::Migrate => commands::migrate(&config).await,
        Command::Token {
            command: TokenCommand::Create { admin: _, name },
        } => commands::create_admin_token(&config, &name).await,
        Command::Admin { command } => match command {
            AdminCommand::Create {
                email,
                password_stdin,
            } => commands::create_admin_user(&config, &email, password_stdin).await,
            AdminCommand::List => commands::list_admin_users(&config).await,
            AdminCommand::Disable { email } => commands::disable_admin_user(&config, &email).await,
        },
    }
}
