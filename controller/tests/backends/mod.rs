//! Runs one storage behaviour on each backend: a fresh PostgreSQL database and a fresh SQLite
//! file per test, migrated, handed to the behaviour, then dropped.

use std::future::Future;

use mpanel_controller::store::{self, DynStore};
use mpanel_e2e::databases::{TestDatabase, TestSqlite};

pub async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDatabase::create().await;
    let store = store::connect(&db.url)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrations apply");
    test(store.clone()).await;
    store.close().await;
    db.drop_database().await;
}

pub async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestSqlite::create();
    let store = store::connect(&db.url)
        .await
        .expect("open the test database");
    store.migrate().await.expect("migrations apply");
    test(store.clone()).await;
    store.close().await;
    db.remove();
}

/// Declares each behaviour (an `async fn(DynStore)` in the calling file) once and runs it on
/// both backends, as `postgres::<name>` and `sqlite::<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::backends::with_postgres(super::$name).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::backends::with_sqlite(super::$name).await;
                }
            )+
        }
    };
}
