//! Every state store the conformance suites run on, opened fresh for one test: the store, and
//! what keeps it alive (a temporary directory, a private server, a table dropped after).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use outrider_blocks::state::{
    MemoryStore, MySqlStore, PostgresStore, RedisSettings, RedisStore, SqliteStore, StateStore,
};
use outrider_testkit::{MariaDb, Postgres, RedisServer};

/// A store, and the guard that keeps what it runs on.
pub(crate) type Opened = (Arc<dyn StateStore>, Box<dyn Any + Send>);

pub(crate) async fn memory() -> Opened {
    (Arc::new(MemoryStore::new()), Box::new(()))
}

pub(crate) async fn sqlite() -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("state.db"), "state").unwrap();
    (Arc::new(s), Box::new(dir))
}

/// On a private server: tests leave keys with long expiries behind.
pub(crate) async fn redis() -> Opened {
    let server = RedisServer::start();
    let s = RedisStore::connect(&RedisSettings::plain("127.0.0.1", server.port))
        .await
        .unwrap();
    (Arc::new(s), Box::new(server))
}

pub(crate) async fn postgres() -> Opened {
    let pg = Postgres::start();
    let s = PostgresStore::connect(&pg.conn, &pg.table, Duration::from_secs(10))
        .await
        .unwrap();
    (Arc::new(s), Box::new(pg))
}

pub(crate) async fn mysql() -> Opened {
    let db = MariaDb::start();
    let s = MySqlStore::connect(&db.dsn, &db.database, "state", Duration::from_secs(10))
        .await
        .unwrap();
    (Arc::new(s), Box::new(db))
}
