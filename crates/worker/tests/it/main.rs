//! Integration tests of clipping-worker: real HTTP on loopback, a verifying
//! receiver on port 0, and real processes where the test is about processes.

/// Defines, for each `name(kind: StoreKind)` test body given, a module
/// `name` with two tests, `name::sqlite` and `name::postgres`: the same test
/// on each store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(crate::helpers::StoreKind::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(crate::helpers::StoreKind::Postgres).await
            }
        }
    )*};
}

mod delivery;
mod engine;
mod events;
mod fleet;
mod helpers;
mod intake;
mod openapi;
mod process;
mod receiver_example;
mod storage;
