//! The configuration conformance suite: every configuration store is held to the
//! [`ConfigurationStore`] contract by the same checks, each store written to as a user would
//! (Redis `SET key value||version`, SQL on the PostgreSQL table with daprd's trigger).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use outrider_blocks::configuration::{
    ConfigurationStore, Item, Items, Keys, PostgresConfiguration, RedisConfiguration,
};
use outrider_blocks::state::{BoxFuture, RedisSettings};
use outrider_testkit::{Postgres, RedisServer};
use tokio::sync::mpsc;

/// Writes a store's items as its users do, and cuts a watch's connection.
trait Writer: Send + Sync {
    fn set(&self, key: &str, value: &str, version: &str) -> BoxFuture<()>;
    fn delete(&self, key: &str) -> BoxFuture<()>;
    /// The server restarts, or the watch's connection is cut.
    fn cut(&self) -> BoxFuture<()>;
}

struct Fixture {
    store: Arc<dyn ConfigurationStore>,
    writer: Arc<dyn Writer>,
    _guard: Box<dyn Any + Send>,
}

fn keys(names: &[&str]) -> Keys {
    Keys {
        keys: names.iter().map(|k| (*k).to_owned()).collect(),
        metadata: Default::default(),
    }
}

fn item(value: &str, version: &str) -> Item {
    Item {
        value: value.into(),
        version: version.into(),
        metadata: Default::default(),
    }
}

/// The next update, within 10 s.
async fn next(rx: &mut mpsc::Receiver<Items>) -> Items {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no update within 10 s")
        .expect("the watch ended")
}

fn one(key: &str, i: Item) -> Items {
    Items::from([(key.to_owned(), i)])
}

async fn get_reads_named_and_all_keys(f: Fixture) {
    f.writer.set("a", "1", "1").await;
    f.writer.set("b", "two", "7").await;
    let got = f.store.get(keys(&["a"])).await.unwrap();
    assert_eq!(got, one("a", item("1", "1")));
    let got = f.store.get(keys(&["a", "missing"])).await.unwrap();
    assert_eq!(got, one("a", item("1", "1")), "a missing key is left out");
    let all = f.store.get(keys(&[])).await.unwrap();
    let want: Items = [("a".into(), item("1", "1")), ("b".into(), item("two", "7"))].into();
    assert_eq!(all, want);
}

/// Each change of a watched key arrives once; unwatched keys stay quiet; a deleted key arrives
/// empty; a write that changes nothing is not sent again. (Each update is awaited before the
/// next write: a watch reads a changed key again, so changes close together may arrive as one.)
async fn watches_send_each_change_once(f: Fixture) {
    f.writer.set("a", "0", "1").await;
    let (tx, mut rx) = mpsc::channel(16);
    let _watch = f.store.subscribe(keys(&["a", "b"]), tx).await.unwrap();
    f.writer.set("a", "on", "2").await;
    assert_eq!(next(&mut rx).await, one("a", item("on", "2")));
    f.writer.set("c", "unwatched", "1").await;
    f.writer.set("b", "x", "1").await;
    assert_eq!(next(&mut rx).await, one("b", item("x", "1")));
    f.writer.set("b", "x", "1").await;
    f.writer.delete("a").await;
    assert_eq!(next(&mut rx).await, one("a", Item::default()));
    f.writer.set("b", "end", "2").await;
    assert_eq!(
        next(&mut rx).await,
        one("b", item("end", "2")),
        "the unchanged write of b was sent"
    );
}

async fn a_watch_of_no_keys_hears_every_key(f: Fixture) {
    let (tx, mut rx) = mpsc::channel(16);
    let _watch = f.store.subscribe(keys(&[]), tx).await.unwrap();
    f.writer.set("anything", "v", "3").await;
    assert_eq!(next(&mut rx).await, one("anything", item("v", "3")));
}

async fn dropping_the_watch_ends_it(f: Fixture) {
    let (tx, mut rx) = mpsc::channel(16);
    let watch = f.store.subscribe(keys(&["a"]), tx).await.unwrap();
    drop(watch);
    f.writer.set("a", "after", "1").await;
    let ended = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert_eq!(ended, Ok(None), "the watch went on after being dropped");
}

/// The watch's connection goes (the server restarts): it comes back by itself and the next
/// change arrives, once.
async fn a_watch_survives_losing_its_connection(f: Fixture) {
    f.writer.set("a", "before", "1").await;
    let (tx, mut rx) = mpsc::channel(16);
    let _watch = f.store.subscribe(keys(&["a"]), tx).await.unwrap();
    f.writer.cut().await;
    // Written until the store answers again (a restarted server takes a moment).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while f.store.get(keys(&["a"])).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.writer.set("a", "after", "2").await;
    assert_eq!(next(&mut rx).await, one("a", item("after", "2")));
    f.writer.set("a", "last", "3").await;
    assert_eq!(
        next(&mut rx).await,
        one("a", item("last", "3")),
        "sent twice?"
    );
}

macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            async fn make() -> Fixture {
                ($make)().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_reads_named_and_all_keys() {
                super::get_reads_named_and_all_keys(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watches_send_each_change_once() {
                super::watches_send_each_change_once(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_watch_of_no_keys_hears_every_key() {
                super::a_watch_of_no_keys_hears_every_key(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dropping_the_watch_ends_it() {
                super::dropping_the_watch_ends_it(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_watch_survives_losing_its_connection() {
                super::a_watch_survives_losing_its_connection(make().await).await;
            }
        }
    };
}

#[path = "configuration/writers.rs"]
mod writers;

conformance!(redis, || async {
    let server = RedisServer::start();
    let settings = RedisSettings::plain("127.0.0.1", server.port);
    let store = RedisConfiguration::connect(&settings).await.unwrap();
    let writer = writers::RedisWriter::new(server).await;
    Fixture {
        store: Arc::new(store),
        writer: writer.clone(),
        _guard: Box::new(writer),
    }
});

conformance!(postgres, || async {
    let pg = Postgres::start();
    let writer = writers::PostgresWriter::new(&pg).await;
    let store = PostgresConfiguration::connect(
        &pg.conn,
        &pg.table,
        Some(writer.channel.clone()),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    Fixture {
        store: Arc::new(store),
        writer: writer.clone(),
        _guard: Box::new((pg, writer)),
    }
});
