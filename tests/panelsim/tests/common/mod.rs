//! Shared helpers for the simulator's HTTP tests: start a TLS simulator on port 0, a client
//! that accepts its self-signed certificate, unique names, and MariaDB checks.
#![allow(dead_code)]

use std::time::Duration;

use mpanel_panelsim::{SimConfig, SimHandle, SimKind};
use rand::Rng as _;
use serde_json::Value;
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};

pub const TOKEN: &str = "test-token-123";
pub const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306";

pub fn config(kind: SimKind) -> SimConfig {
    SimConfig {
        tls: true,
        ..SimConfig::new(kind, TOKEN)
    }
}

pub async fn start(config: SimConfig) -> SimHandle {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    mpanel_panelsim::start(config, listener)
        .await
        .expect("simulator starts")
}

pub async fn start_kind(kind: SimKind) -> SimHandle {
    start(config(kind)).await
}

/// A client for the self-signed HTTPS listener (as drivers with `insecure_tls` use).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

/// A lower-case name that starts with `prefix` and is unique per call (8 random characters).
pub fn unique(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

pub fn accounts(state: &Value) -> Vec<Value> {
    state["accounts"].as_array().cloned().unwrap_or_default()
}

/// The accounts besides the one every simulator starts with, after checking that one is still
/// there untouched by the test.
pub fn ours(state: &Value) -> Vec<Value> {
    let (resident, ours): (Vec<Value>, Vec<Value>) = accounts(state)
        .into_iter()
        .partition(|a| a["username"] == mpanel_panelsim::RESIDENT_USER);
    assert_eq!(resident.len(), 1, "the resident account is gone: {state}");
    assert_eq!(resident[0]["domain"], mpanel_panelsim::RESIDENT_DOMAIN);
    assert_eq!(resident[0]["suspended"], false);
    ours
}

/// The zones besides the resident account's.
pub fn our_zones(state: &Value) -> Vec<Value> {
    state["zones"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|z| z["domain"] != mpanel_panelsim::RESIDENT_DOMAIN)
        .collect()
}

pub fn accounts_named(state: &Value, username: &str) -> usize {
    accounts(state)
        .iter()
        .filter(|a| a["username"] == username)
        .count()
}

/// MariaDB must be reachable: these tests fail (never skip) when it is not.
pub async fn require_mariadb() -> String {
    let options: MySqlConnectOptions = MARIADB_URL.parse().expect("valid URL");
    match tokio::time::timeout(
        Duration::from_secs(5),
        MySqlConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            MARIADB_URL.to_owned()
        }
        Ok(Err(error)) => panic!(
            "MariaDB is not reachable at {MARIADB_URL} ({error}); these tests need a local MariaDB \
             with a password-less root on 127.0.0.1:3306"
        ),
        Err(_) => panic!("MariaDB at {MARIADB_URL} did not answer within 5 s; these tests need it"),
    }
}

/// Log in as `user` and use `database`: create a table, write and read a row.
pub async fn login_and_use(user: &str, password: &str, database: &str) -> Result<i64, sqlx::Error> {
    let options = MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(3306)
        .username(user)
        .password(password)
        .database(database);
    let mut connection = MySqlConnection::connect_with(&options).await?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS probe (id INT PRIMARY KEY)")
        .execute(&mut connection)
        .await?;
    sqlx::raw_sql("REPLACE INTO probe (id) VALUES (42)")
        .execute(&mut connection)
        .await?;
    let row: (i32,) = sqlx::query_as("SELECT id FROM probe")
        .fetch_one(&mut connection)
        .await?;
    let _ = connection.close().await;
    Ok(i64::from(row.0))
}

pub async fn database_exists(name: &str) -> bool {
    let options: MySqlConnectOptions = MARIADB_URL.parse().expect("valid URL");
    let mut connection = MySqlConnection::connect_with(&options)
        .await
        .expect("root login");
    let found: Option<(String,)> =
        sqlx::query_as("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(name)
            .fetch_optional(&mut connection)
            .await
            .expect("query schemata");
    let _ = connection.close().await;
    found.is_some()
}

pub async fn user_exists(name: &str) -> bool {
    let options: MySqlConnectOptions = MARIADB_URL.parse().expect("valid URL");
    let mut connection = MySqlConnection::connect_with(&options)
        .await
        .expect("root login");
    let found: Option<(String,)> =
        sqlx::query_as("SELECT User FROM mysql.user WHERE User = ? LIMIT 1")
            .bind(name)
            .fetch_optional(&mut connection)
            .await
            .expect("query users");
    let _ = connection.close().await;
    found.is_some()
}

/// A throwaway self-signed certificate and key in PEM, for certificate installs.
pub fn certificate(domain: &str) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec![domain.to_owned()]).expect("rcgen");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}
