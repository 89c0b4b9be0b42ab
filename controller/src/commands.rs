//! The subcommands of `mpanel-controller`. Each returns `anyhow::Result`; `main` turns an error
//! into one line on stderr and exit code 1.

use std::path::Path;

use crate::app;
use crate::config::Config;
use crate::crypto;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.require_encryption_keys()?;
    let listeners = app::Listeners::bind(&config).await?;
    app::run(config, listeners, app::shutdown_signal()).await
}

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = app::open_store(config).await?;
    println!("migrations applied ({})", store.backend().as_str());
    store.close().await;
    Ok(())
}

/// Creates an admin token and prints it once; only its hash is stored.
pub async fn create_admin_token(config: &Config, name: &str) -> anyhow::Result<()> {
    let store = app::open_store(config).await?;
    let token = crypto::new_token("mpa_")?;
    let row = store
        .create_admin_token(name, &crypto::token_hash(&token))
        .await?;
    store.close().await;
    println!("{token}");
    eprintln!(
        "admin token {} ({name}) created; it is shown only this once",
        row.id
    );
    Ok(())
}

/// Loads configuration, naming the source in the error.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("configuration: {e}"))
}
