//! The subcommands of `mpanel-controller`. Each returns `anyhow::Result`; `main` turns an error
//! into one line on stderr and exit code 1.

use std::path::Path;

use anyhow::Context as _;

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

/// The embedded-default demonstration. The demo keeps its own database and key file in the
/// working directory (unless DATABASE_URL / ENCRYPTION_KEY are set), so repeated runs reuse them.
pub async fn demo(mut config: Config) -> anyhow::Result<()> {
    if config.database_url.expose() == crate::config::DEFAULT_DATABASE_URL {
        config.database_url = "sqlite://mpanel-demo.db?mode=rwc".to_owned().into();
    }
    if config.encryption_keys.is_none() {
        config.encryption_keys = Some(demo_key(Path::new("mpanel-demo.key"))?);
    }
    let listeners = app::Listeners::bind(&config).await?;
    let addr = listeners.http.local_addr()?;

    let store = app::open_store(&config).await?;
    let token = crypto::new_token("mpa_")?;
    store
        .create_admin_token("demo", &crypto::token_hash(&token))
        .await?;
    store.close().await;

    println!("MPANEL_URL=http://{addr}");
    println!("MPANEL_TOKEN={token}");
    println!(
        "# mpanel controller running on {} (embedded SQLite); Ctrl-C stops it.",
        config
            .database_url
            .expose()
            .split('?')
            .next()
            .unwrap_or("sqlite")
    );
    println!(
        "# Not yet: the demo fleet (panel simulators, agents and orders) joins once the provisioning pipeline exists."
    );
    app::run(config, listeners, app::shutdown_signal()).await
}

/// Reads the demo's key file, or creates it (mode 0600) with a fresh random key.
fn demo_key(path: &Path) -> anyhow::Result<crate::config::EncryptionKeys> {
    let hex_key = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("random source failed"))?;
            let text = hex::encode(bytes);
            write_private(path, &text)?;
            text
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let bytes = hex::decode(&hex_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{} does not hold 64 hex digits", path.display()))?;
    Ok(crate::config::EncryptionKeys {
        current: bytes,
        previous: Vec::new(),
    })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
