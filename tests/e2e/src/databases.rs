//! One fresh PostgreSQL database per test, so tests run in parallel without sharing rows.
//! `MPANEL_TEST_POSTGRES_URL` points at the server (default: the local one on 127.0.0.1:5432 as
//! `postgres`, which the test command sets up with trust authentication).

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Databases made by this harness carry this prefix, so a test run can sweep leftovers.
pub const DATABASE_PREFIX: &str = "mpanel_t_";

fn admin_url() -> String {
    std::env::vars()
        .find(|(k, _)| k == "MPANEL_TEST_POSTGRES_URL")
        .map_or_else(|| DEFAULT_ADMIN_URL.to_owned(), |(_, v)| v)
}

/// A database that exists for one test. Call `drop_database` at the end of the test; a test
/// that panics leaves it behind for the next run's sweep.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url = admin_url();
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for this test and is not reachable at {admin_url}: {e}. \
                 Run scripts/test, which installs and starts it, or set MPANEL_TEST_POSTGRES_URL."
            )
        });
        let name = format!("{DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("MPANEL_TEST_POSTGRES_URL must end in /<database>"),
        };
        TestDatabase {
            name,
            url,
            admin_url,
        }
    }

    pub async fn drop_database(self) {
        if let Ok(mut conn) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}

/// A fresh SQLite database file in its own temporary directory.
#[derive(Debug)]
pub struct TestSqlite {
    pub url: String,
    pub dir: std::path::PathBuf,
}

impl TestSqlite {
    pub fn create() -> TestSqlite {
        let dir =
            std::env::temp_dir().join(format!("mpanel-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let url = format!("sqlite://{}?mode=rwc", dir.join("mpanel.db").display());
        TestSqlite { url, dir }
    }

    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
