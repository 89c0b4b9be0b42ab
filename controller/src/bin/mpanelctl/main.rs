//! `mpanelctl`: the admin CLI of mpanel. It talks only HTTP to the controller's API (the same
//! routes and JSON as any script) and links none of the controller's library. Exit status: 0
//! success, 1 runtime failure (the API refused, could not be reached, a watched task failed),
//! 2 bad usage; errors are one line on stderr.

mod cli;
mod client;
mod commands;
mod config;
mod failure;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::failure::{Failure, one_line};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "mpanelctl",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&Failure::Runtime(format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = config::resolve(cli.url, cli.token, cli.config.as_deref())?;
    let ctx = commands::Ctx {
        client: client::Client::new(settings)?,
        json: cli.json,
    };
    commands::run(&ctx, cli.command).await
}

fn fail(f: &Failure) -> ExitCode {
    eprintln!("error: {}", f.line());
    ExitCode::from(f.exit_code())
}

/// `--help` and `--version` print as clap makes them (exit 0); a usage error becomes one line
/// naming what is wrong (exit 2), without clap's usage block.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let text = one_line(&text.join(" "));
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    eprintln!("error: {text} (see --help)");
    ExitCode::from(2)
}
