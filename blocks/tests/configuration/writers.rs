//! How the conformance suite writes each configuration store: as its users do.

use std::sync::{Arc, Mutex};

use outrider_blocks::state::BoxFuture;
use outrider_testkit::{Postgres, RedisServer};

use super::Writer;

/// Redis: `SET key value||version`, `DEL key`; a cut restarts the private server.
pub(super) struct RedisWriter {
    server: Mutex<RedisServer>,
    client: redis::Client,
}

impl RedisWriter {
    pub(super) async fn new(server: RedisServer) -> Arc<Self> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", server.port)).unwrap();
        Arc::new(Self {
            server: Mutex::new(server),
            client,
        })
    }

    fn run(&self, cmd: redis::Cmd) -> BoxFuture<()> {
        let client = self.client.clone();
        Box::pin(async move {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            cmd.query_async::<()>(&mut conn).await.unwrap();
        })
    }
}

impl Writer for RedisWriter {
    fn set(&self, key: &str, value: &str, version: &str) -> BoxFuture<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(format!("{value}||{version}"));
        self.run(cmd)
    }

    fn delete(&self, key: &str) -> BoxFuture<()> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        self.run(cmd)
    }

    fn cut(&self) -> BoxFuture<()> {
        self.server.lock().unwrap().restart();
        Box::pin(async {})
    }
}

/// PostgreSQL: the table and trigger daprd's component documents (the test's own table, a
/// function and channel named after it), rows inserted, updated and deleted with SQL; a cut
/// terminates the backend that listens.
pub(super) struct PostgresWriter {
    client: Arc<tokio_postgres::Client>,
    conn: String,
    table: String,
    pub(super) channel: String,
}

impl PostgresWriter {
    pub(super) async fn new(pg: &Postgres) -> Arc<Self> {
        let (client, connection) = tokio_postgres::connect(&pg.conn, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let t = &pg.table;
        let ddl = pg.configuration_table_sql();
        client.batch_execute(&ddl).await.unwrap();
        Arc::new(Self {
            client: Arc::new(client),
            conn: pg.conn.clone(),
            table: t.clone(),
            channel: t.clone(),
        })
    }
}

impl Writer for PostgresWriter {
    fn set(&self, key: &str, value: &str, version: &str) -> BoxFuture<()> {
        let t = &self.table;
        let update = format!("UPDATE {t} SET value = $2, version = $3 WHERE key = $1");
        let insert = format!("INSERT INTO {t} (key, value, version) VALUES ($1, $2, $3)");
        let client = self.client.clone();
        let (key, value, version) = (key.to_owned(), value.to_owned(), version.to_owned());
        Box::pin(async move {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&key, &value, &version];
            if client.execute(&update, &params).await.unwrap() == 0 {
                client.execute(&insert, &params).await.unwrap();
            }
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<()> {
        let q = format!("DELETE FROM {} WHERE key = $1", self.table);
        let (client, key) = (self.client.clone(), key.to_owned());
        Box::pin(async move {
            client.execute(&q, &[&key]).await.unwrap();
        })
    }

    fn cut(&self) -> BoxFuture<()> {
        let q = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query = 'LISTEN \"{}\"'",
            self.channel
        );
        let client = self.client.clone();
        Box::pin(async move {
            let row = client.query_one(&q, &[]).await.unwrap();
            assert_eq!(row.get::<_, i64>(0), 1, "one listening backend");
        })
    }
}

impl Drop for PostgresWriter {
    /// The trigger's function outlives the test's table: dropped here, on a thread of its own
    /// (a drop cannot await).
    fn drop(&mut self) {
        let (conn, q) = (
            self.conn.clone(),
            format!("DROP FUNCTION IF EXISTS {}_notify() CASCADE", self.table),
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(rt) = rt else { return };
            rt.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&conn, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&q).await;
                }
            });
        })
        .join();
    }
}
