//! `mpanel-stripedouble`: run the Stripe API double until SIGTERM/SIGINT.
//!
//! Prints exactly one line to stdout once it accepts connections: `listening on <url>`.
//! Logs go to stderr (`RUST_LOG`, default `warn`); neither ever shows a key or secret. Exit
//! codes: 0 after a signal, 1 on a runtime failure, 2 on bad usage.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mpanel_stripedouble::{DoubleConfig, WebhookTarget};

/// A small in-memory Stripe API double for mpanel's tests.
#[derive(Parser)]
#[command(name = "mpanel-stripedouble", version, about)]
struct Cli {
    /// Address to listen on, e.g. 127.0.0.1:12111 (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// Webhook endpoint every event is POSTed to (needs --webhook-secret).
    #[arg(long, requires = "webhook_secret")]
    webhook_url: Option<String>,
    /// The endpoint's signing secret, whsec_... (better given through the environment).
    #[arg(
        long,
        env = "MPANEL_STRIPEDOUBLE_WEBHOOK_SECRET",
        hide_env_values = true,
        requires = "webhook_url"
    )]
    webhook_secret: Option<String>,
    /// API version events carry.
    #[arg(long, default_value = mpanel_stripedouble::DEFAULT_API_VERSION)]
    api_version: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            // clap's message up to the usage block, on one line. clap quotes the offending
            // value, so a bad flag never echoes the secret (its value is not parsed further).
            let rendered = error.to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!(
                "mpanel-stripedouble: {}",
                message.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mpanel-stripedouble: starting the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mpanel-stripedouble: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let webhook = match (cli.webhook_url, cli.webhook_secret) {
        (Some(url), Some(secret)) => Some(WebhookTarget { url, secret }),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    let config = DoubleConfig {
        webhook,
        api_version: cli.api_version,
    };
    let handle = mpanel_stripedouble::start(config, listener).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", handle.base_url()).context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
    }
    shutdown_signal().await?;
    tracing::info!("signal received, shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
