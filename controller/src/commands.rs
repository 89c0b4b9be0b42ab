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

/// Creates a dashboard admin. The password comes from stdin or is generated and printed once;
/// only its argon2id hash is stored.
pub async fn create_admin_user(
    config: &Config,
    email: &str,
    password_stdin: bool,
) -> anyhow::Result<()> {
    use crate::web::credentials;
    let email = credentials::email_address(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let (password, generated) = if password_stdin {
        let mut raw = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut raw)
            .map_err(|e| anyhow::anyhow!("--password-stdin: cannot read stdin: {e}"))?;
        let password = raw
            .strip_suffix('\n')
            .map(|p| p.strip_suffix('\r').unwrap_or(p))
            .unwrap_or(&raw)
            .to_owned();
        credentials::check_new_password(&password)
            .map_err(|e| anyhow::anyhow!("--password-stdin: the password {e}"))?;
        (password, false)
    } else {
        (credentials::generated_password()?, true)
    };
    let store = app::open_store(config).await?;
    if store.find_admin_user_by_email(&email).await?.is_some() {
        store.close().await;
        anyhow::bail!("--email: an admin with email {email} already exists");
    }
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || credentials::hash_password(&to_hash)).await??;
    let created = store.create_admin_user(&email, &hash, "cli").await;
    store.close().await;
    let user = created.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            anyhow::anyhow!("--email: an admin with email {email} already exists")
        }
        other => other.into(),
    })?;
    if generated {
        println!("{password}");
    }
    if generated {
        eprintln!(
            "admin {} ({}) created; the password above is shown only this once",
            user.id, user.email
        );
    } else {
        eprintln!("admin {} ({}) created", user.id, user.email);
    }
    Ok(())
}

/// Lists the dashboard admins, one per line: id, email, created, status.
pub async fn list_admin_users(config: &Config) -> anyhow::Result<()> {
    let store = app::open_store(config).await?;
    let users = store.list_admin_users().await;
    store.close().await;
    for user in users? {
        let created = crate::store::admin_users::shown_time(user.created_at);
        let status = match user.disabled_at {
            Some(_) => "disabled",
            None => "active",
        };
        println!("{}\t{}\t{created}\t{status}", user.id, user.email);
    }
    Ok(())
}

/// Disables a dashboard admin and revokes its sessions.
pub async fn disable_admin_user(config: &Config, email: &str) -> anyhow::Result<()> {
    let email = crate::web::credentials::email_address(email)
        .map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let store = app::open_store(config).await?;
    let result = store.disable_admin_user(&email, "cli").await;
    store.close().await;
    let user = result.map_err(|e| match e {
        crate::store::StoreError::NotFound { .. } => {
            anyhow::anyhow!("--email: no enabled admin with email {email}")
        }
        other => other.into(),
    })?;
    eprintln!(
        "admin {} ({}) disabled; its sessions are revoked",
        user.id, user.email
    );
    Ok(())
}

/// Loads configuration, naming the source in the error.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("configuration: {e}"))
}
