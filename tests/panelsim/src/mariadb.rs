//! Real MariaDB databases, users and grants behind the panels' database calls.
//!
//! Every statement is idempotent (`IF NOT EXISTS`, `ALTER USER` after create), so a retried
//! panel call converges. Identifiers are validated before they reach SQL and quoted anyway;
//! passwords are escaped string literals. DDL goes through the text protocol (`raw_sql`).
//!
//! Users are created for `%`, `127.0.0.1` and `localhost`, so a test can log in over TCP or a
//! socket with the credentials the panel handed out.

use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, raw_sql};

const HOSTS: [&str; 3] = ["%", "127.0.0.1", "localhost"];

/// Privileges a panel may grant; anything else is refused before reaching SQL.
const PRIVILEGES: [&str; 19] = [
    "ALL PRIVILEGES",
    "ALTER",
    "ALTER ROUTINE",
    "CREATE",
    "CREATE ROUTINE",
    "CREATE TEMPORARY TABLES",
    "CREATE VIEW",
    "DELETE",
    "DROP",
    "EVENT",
    "EXECUTE",
    "INDEX",
    "INSERT",
    "LOCK TABLES",
    "REFERENCES",
    "SELECT",
    "SHOW VIEW",
    "TRIGGER",
    "UPDATE",
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error(
        "invalid name '{0}': use letters, digits and underscores (database at most 64, user at most 80 characters)"
    )]
    InvalidName(String),
    #[error("unknown privilege '{0}'")]
    InvalidPrivilege(String),
    #[error("MariaDB: {0}")]
    Sql(#[from] sqlx::Error),
}

pub(crate) struct MariaDb {
    pool: MySqlPool,
}

/// A URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn valid_database_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(crate) fn valid_user_name(name: &str) -> bool {
    (1..=80).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Normalise a panel's privilege list (`ALL`, `ALL PRIVILEGES`, `SELECT,INSERT`).
pub(crate) fn parse_privileges(input: &str) -> Result<Vec<String>, DbError> {
    let mut out = Vec::new();
    for raw in input.split(',') {
        let privilege = raw
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        if privilege.is_empty() {
            continue;
        }
        let privilege = if privilege == "ALL" {
            "ALL PRIVILEGES".to_owned()
        } else {
            privilege
        };
        if !PRIVILEGES.contains(&privilege.as_str()) {
            return Err(DbError::InvalidPrivilege(raw.trim().to_owned()));
        }
        if !out.contains(&privilege) {
            out.push(privilege);
        }
    }
    if out.is_empty() {
        out.push("ALL PRIVILEGES".to_owned());
    }
    Ok(out)
}

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl MariaDb {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        raw_sql("SELECT 1").execute(&pool).await?;
        Ok(MariaDb { pool })
    }

    async fn run(&self, sql: String) -> Result<(), DbError> {
        raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn create_database(&self, name: &str) -> Result<(), DbError> {
        if !valid_database_name(name) {
            return Err(DbError::InvalidName(name.to_owned()));
        }
        self.run(format!("CREATE DATABASE IF NOT EXISTS {}", ident(name)))
            .await
    }

    pub(crate) async fn drop_database(&self, name: &str) -> Result<(), DbError> {
        if !valid_database_name(name) {
            return Err(DbError::InvalidName(name.to_owned()));
        }
        self.run(format!("DROP DATABASE IF EXISTS {}", ident(name)))
            .await
    }

    /// Create the user on every host, or reset its password if it exists.
    pub(crate) async fn create_user(&self, name: &str, password: &str) -> Result<(), DbError> {
        if !valid_user_name(name) {
            return Err(DbError::InvalidName(name.to_owned()));
        }
        for host in HOSTS {
            let account = format!("{}@{}", literal(name), literal(host));
            self.run(format!(
                "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {}",
                literal(password)
            ))
            .await?;
            self.run(format!(
                "ALTER USER {account} IDENTIFIED BY {}",
                literal(password)
            ))
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn drop_user(&self, name: &str) -> Result<(), DbError> {
        if !valid_user_name(name) {
            return Err(DbError::InvalidName(name.to_owned()));
        }
        for host in HOSTS {
            self.run(format!(
                "DROP USER IF EXISTS {}@{}",
                literal(name),
                literal(host)
            ))
            .await?;
        }
        Ok(())
    }

    /// Replace the user's privileges on the database with `privileges`.
    pub(crate) async fn grant(
        &self,
        user: &str,
        database: &str,
        privileges: &[String],
    ) -> Result<(), DbError> {
        if !valid_user_name(user) {
            return Err(DbError::InvalidName(user.to_owned()));
        }
        if !valid_database_name(database) {
            return Err(DbError::InvalidName(database.to_owned()));
        }
        for privilege in privileges {
            if !PRIVILEGES.contains(&privilege.as_str()) {
                return Err(DbError::InvalidPrivilege(privilege.clone()));
            }
        }
        let list = privileges.join(", ");
        for host in HOSTS {
            let account = format!("{}@{}", literal(user), literal(host));
            // REVOKE fails when nothing was granted yet; that is the idempotent case.
            let _ = self
                .run(format!(
                    "REVOKE ALL PRIVILEGES ON {}.* FROM {account}",
                    ident(database)
                ))
                .await;
            self.run(format!(
                "GRANT {list} ON {}.* TO {account}",
                ident(database)
            ))
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_are_normalised_and_checked() {
        assert_eq!(parse_privileges("ALL").unwrap(), vec!["ALL PRIVILEGES"]);
        assert_eq!(
            parse_privileges("select, insert").unwrap(),
            vec!["SELECT", "INSERT"]
        );
        assert_eq!(parse_privileges("").unwrap(), vec!["ALL PRIVILEGES"]);
        assert!(parse_privileges("SELECT; DROP DATABASE x").is_err());
    }

    #[test]
    fn quoting_escapes_what_it_must() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal(r"it's\"), r"'it\'s\\'");
        assert_eq!(
            redact("mysql://root:secret@127.0.0.1:3306"),
            "mysql://root@127.0.0.1:3306"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1:3306"),
            "mysql://root@127.0.0.1:3306"
        );
    }
}
