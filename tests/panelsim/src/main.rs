//! `mpanel-panelsim`: run one simulated panel until SIGTERM/SIGINT.
//!
//! Prints exactly one line to stdout once it accepts connections: `listening on <url>`.
//! Logs go to stderr (`RUST_LOG`, default `warn`). Exit codes: 0 after a signal, 1 on a
//! runtime failure, 2 on bad usage; errors are one line on stderr.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mpanel_panelsim::{SimConfig, SimKind};

/// Simulated cPanel/WHM, Plesk or DirectAdmin HTTP API for mpanel's tests and demo.
#[derive(Debug, Parser)]
#[command(name = "mpanel-panelsim", version, about)]
struct Cli {
    /// Panel to simulate: cpanel, plesk or directadmin.
    #[arg(long, value_parser = parse_kind)]
    kind: SimKind,
    /// Address to listen on, e.g. 127.0.0.1:2087 (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// API token the panel accepts.
    #[arg(long, value_parser = parse_token)]
    token: String,
    /// Extra latency added to every API call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability (0.0-1.0) that an API call fails with a transient 5xx and changes nothing.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    /// Seed for the fail-rate RNG and the deterministic quirks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Serve HTTPS with a self-signed certificate.
    #[arg(long)]
    tls: bool,
    /// Create real MariaDB databases and users, e.g. mysql://root@127.0.0.1:3306.
    #[arg(long)]
    mariadb_url: Option<String>,
    /// Serve /.well-known/acme-challenge/<token> from accounts' web roots (plain HTTP too).
    #[arg(long)]
    web_root_http: bool,
}

fn parse_kind(raw: &str) -> Result<SimKind, String> {
    raw.parse()
        .map_err(|e: mpanel_panelsim::UnknownKind| e.to_string())
}

fn parse_token(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(raw.to_owned())
    }
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("'{raw}' is not a number between 0.0 and 1.0")),
    }
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
            // clap's message up to the usage block, folded onto one line.
            let rendered = error.to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!(
                "mpanel-panelsim: {}",
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
            eprintln!("mpanel-panelsim: starting the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mpanel-panelsim: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    let config = SimConfig {
        kind: cli.kind,
        token: cli.token,
        latency_ms: cli.latency_ms,
        fail_rate: cli.fail_rate,
        seed: cli.seed,
        tls: cli.tls,
        mariadb_url: cli.mariadb_url,
        web_root_http: cli.web_root_http,
    };
    let handle = mpanel_panelsim::start(config, listener).await?;
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
