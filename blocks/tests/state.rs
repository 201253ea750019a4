//! The state conformance suite: every store is held to the [`StateStore`] contract by the same
//! checks. A store that does not declare a feature must refuse it.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outrider_blocks::state::{
    Concurrency, Consistency, DeleteRequest, Encrypted, EncryptionKey, Item, MemoryStore, Metadata,
    Operation, Options, PostgresStore, Query, RedisSettings, RedisStore, SetRequest, SqliteStore,
    StateError, StateStore,
};
use outrider_testkit::{Postgres, RedisServer};

fn set(key: &str, value: &[u8]) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: Bytes::copy_from_slice(value),
        ..Default::default()
    }
}

fn with_etag(mut r: SetRequest, etag: &str) -> SetRequest {
    r.etag = Some(etag.into());
    r
}

fn del(key: &str, etag: Option<&str>) -> DeleteRequest {
    DeleteRequest {
        key: key.into(),
        etag: etag.map(Into::into),
        ..Default::default()
    }
}

/// What `get` answers for `key`, which must not fail.
async fn item_of(s: &dyn StateStore, key: &str) -> Option<Item> {
    s.get(key.into(), Metadata::new()).await.unwrap()
}

async fn etag_of(s: &dyn StateStore, key: &str) -> String {
    item_of(s, key)
        .await
        .expect("key exists")
        .etag
        .expect("etag")
}

async fn value_of(s: &dyn StateStore, key: &str) -> Option<Bytes> {
    item_of(s, key).await.map(|i| i.data)
}

async fn round_trips_every_kind_of_value(s: Arc<dyn StateStore>) {
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let values: [&[u8]; 6] = [
        b"",
        b"\"\"",
        b"{\"a\":[1,2,{\"b\":null}]}",
        b"\x00\xff\x01binary\x00",
        "ünïcödé 😀".as_bytes(),
        &big,
    ];
    for (i, v) in values.iter().enumerate() {
        let key = format!("kind-{i}");
        s.set(set(&key, v)).await.unwrap();
        assert_eq!(value_of(&*s, &key).await.as_deref(), Some(*v), "value {i}");
    }
    assert_eq!(value_of(&*s, "never-written").await, None);
    for key in [
        "a'b",
        "a\"; DROP TABLE state; --",
        "a||b||c",
        "ключ",
        "a/b%2Fc",
    ] {
        s.set(set(key, b"1")).await.unwrap();
        assert_eq!(
            value_of(&*s, key).await.as_deref(),
            Some(&b"1"[..]),
            "{key:?}"
        );
    }
}

/// `like_redis`: as daprd's Redis store, an ETag on a key that does not exist yet matches (the
/// write creates it; a delete is a no-op); the other stores refuse it as a mismatch.
async fn etags_change_and_guard_writes(s: Arc<dyn StateStore>, like_redis: bool) {
    s.set(set("e", b"1")).await.unwrap();
    let e1 = etag_of(&*s, "e").await;
    s.set(set("e", b"2")).await.unwrap();
    let e2 = etag_of(&*s, "e").await;
    assert_ne!(e1, e2, "a write must change the etag");
    let stale = s.set(with_etag(set("e", b"3"), &e1)).await;
    assert!(
        matches!(stale, Err(StateError::EtagMismatch(_))),
        "{stale:?}"
    );
    assert_eq!(
        value_of(&*s, "e").await.as_deref(),
        Some(&b"2"[..]),
        "a refused write changed the value"
    );
    s.set(with_etag(set("e", b"3"), &e2)).await.unwrap();
    assert_eq!(value_of(&*s, "e").await.as_deref(), Some(&b"3"[..]));
    let missing = s.set(with_etag(set("nope", b"x"), &e2)).await;
    if like_redis {
        missing.unwrap();
        assert_eq!(value_of(&*s, "nope").await.as_deref(), Some(&b"x"[..]));
        assert_eq!(
            etag_of(&*s, "nope").await,
            "1",
            "a key created so starts at version 1"
        );
    } else {
        assert!(
            matches!(missing, Err(StateError::EtagMismatch(_))),
            "an etag cannot match a missing key: {missing:?}"
        );
        assert_eq!(value_of(&*s, "nope").await, None);
    }
}

async fn first_write_wins(s: Arc<dyn StateStore>) {
    let first = |v: &[u8]| SetRequest {
        options: Options {
            concurrency: Concurrency::FirstWrite,
            ..Default::default()
        },
        ..set("fw", v)
    };
    s.set(first(b"a")).await.unwrap();
    assert!(matches!(
        s.set(first(b"b")).await,
        Err(StateError::EtagMismatch(_))
    ));
    assert_eq!(value_of(&*s, "fw").await.as_deref(), Some(&b"a"[..]));
    let e = etag_of(&*s, "fw").await;
    let mut with = first(b"c");
    with.etag = Some(e);
    s.set(with).await.unwrap();
    assert_eq!(value_of(&*s, "fw").await.as_deref(), Some(&b"c"[..]));
}

async fn deletes_honour_etags(s: Arc<dyn StateStore>, like_redis: bool) {
    s.delete(del("absent", None)).await.unwrap();
    s.set(set("d", b"0")).await.unwrap();
    let stale = etag_of(&*s, "d").await;
    s.set(set("d", b"1")).await.unwrap();
    let e = etag_of(&*s, "d").await;
    assert!(matches!(
        s.delete(del("d", Some(&stale))).await,
        Err(StateError::EtagMismatch(_))
    ));
    // An ETag the store never issued is refused, as a mismatch or as invalid (Redis: not a number).
    let garbage = s.delete(del("d", Some("not-an-etag-of-this-store"))).await;
    assert!(
        matches!(
            garbage,
            Err(StateError::EtagMismatch(_) | StateError::EtagInvalid(_))
        ),
        "{garbage:?}"
    );
    assert!(value_of(&*s, "d").await.is_some());
    s.delete(del("d", Some(&e))).await.unwrap();
    assert_eq!(value_of(&*s, "d").await, None);
    let again = s.delete(del("d", Some(&e))).await;
    if like_redis {
        again.unwrap();
    } else {
        assert!(
            matches!(again, Err(StateError::EtagMismatch(_))),
            "{again:?}"
        );
    }
}

async fn transactions_are_atomic_and_ordered(s: Arc<dyn StateStore>) {
    if !s.features().transactional {
        assert_eq!(
            s.multi(vec![Operation::Upsert(set("t", b"1"))]).await,
            Err(StateError::NotSupported("transactions"))
        );
        return;
    }
    s.set(set("t-c", b"first")).await.unwrap();
    let stale = etag_of(&*s, "t-c").await;
    s.set(set("t-c", b"keep")).await.unwrap();
    let failing = vec![
        Operation::Upsert(set("t-a", b"1")),
        Operation::Upsert(set("t-b", b"1")),
        Operation::Delete(del("t-c", Some(&stale))),
    ];
    assert!(matches!(
        s.multi(failing).await,
        Err(StateError::EtagMismatch(_))
    ));
    assert_eq!(
        value_of(&*s, "t-a").await,
        None,
        "a failed transaction left a write behind"
    );
    assert_eq!(value_of(&*s, "t-c").await.as_deref(), Some(&b"keep"[..]));
    let ordered = vec![
        Operation::Upsert(set("t-a", b"1")),
        Operation::Delete(del("t-a", None)),
        Operation::Upsert(set("t-a", b"2")),
        Operation::Delete(del("t-c", None)),
    ];
    s.multi(ordered).await.unwrap();
    assert_eq!(value_of(&*s, "t-a").await.as_deref(), Some(&b"2"[..]));
    assert_eq!(value_of(&*s, "t-c").await, None);
}

async fn ttl_expires_keys(s: Arc<dyn StateStore>) {
    let ttl = |secs: &str| {
        let mut r = set("ttl", b"short-lived");
        r.metadata.insert("ttlInSeconds".into(), secs.into());
        r
    };
    if !s.features().ttl {
        return;
    }
    assert!(matches!(
        s.set(ttl("soon")).await,
        Err(StateError::BadRequest(_))
    ));
    s.set(ttl("1")).await.unwrap();
    let item = item_of(&*s, "ttl").await.expect("visible before expiry");
    assert!(
        item.metadata.contains_key("ttlExpireTime"),
        "{:?}",
        item.metadata
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while value_of(&*s, "ttl").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.set(ttl("-1")).await.unwrap();
    let item = item_of(&*s, "ttl")
        .await
        .expect("negative ttl never expires");
    assert!(!item.metadata.contains_key("ttlExpireTime"));
}

async fn concurrent_writers_lose_no_update(s: Arc<dyn StateStore>) {
    s.set(set("counter", b"0")).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    loop {
                        let item = item_of(&*s, "counter").await.unwrap();
                        let n: u64 = std::str::from_utf8(&item.data).unwrap().parse().unwrap();
                        let req = SetRequest {
                            etag: item.etag,
                            ..set("counter", (n + 1).to_string().as_bytes())
                        };
                        match s.set(req).await {
                            Ok(()) => break,
                            Err(StateError::EtagMismatch(_)) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(value_of(&*s, "counter").await.as_deref(), Some(&b"400"[..]));
}

async fn queries_match_sort_and_page_within_a_prefix(s: Arc<dyn StateStore>) {
    let q = |v: serde_json::Value| Query::parse(&v).unwrap();
    if !s.features().query {
        assert_eq!(
            s.query("app||".into(), q(serde_json::json!({}))).await,
            Err(StateError::NotSupported("queries"))
        );
        return;
    }
    for (k, v) in [
        ("app||a", r#"{"t":"x","n":1}"#),
        ("app||b", r#"{"t":"y","n":2}"#),
        ("app||c", r#"{"t":"x","n":3}"#),
        ("other||d", r#"{"t":"x","n":4}"#),
        ("app||raw", "\x00binary"),
    ] {
        s.set(set(k, v.as_bytes())).await.unwrap();
    }
    let page = s
        .query("app||".into(), q(serde_json::json!({"filter": {"EQ": {"t": "x"}}, "sort": [{"key": "n", "order": "DESC"}], "page": {"limit": 1}})))
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(),
        ["app||c"]
    );
    assert!(page.items[0].2.is_some(), "results carry etags");
    let token = page.token.expect("a next page");
    let next = s
        .query("app||".into(), q(serde_json::json!({"filter": {"EQ": {"t": "x"}}, "sort": [{"key": "n", "order": "DESC"}], "page": {"limit": 1, "token": token}})))
        .await
        .unwrap();
    assert_eq!(
        next.items.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(),
        ["app||a"],
        "other prefixes never match"
    );
    assert_eq!(next.token, None);
    let all = s
        .query("app||".into(), q(serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3, "values that are not JSON never match");
}

macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            async fn make() -> (Arc<dyn StateStore>, Box<dyn std::any::Any + Send>) {
                ($make)().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_trips_every_kind_of_value() {
                let (s, _g) = make().await;
                super::round_trips_every_kind_of_value(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etags_change_and_guard_writes() {
                let (s, _g) = make().await;
                super::etags_change_and_guard_writes(s, stringify!($store) == "redis").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn first_write_wins() {
                let (s, _g) = make().await;
                super::first_write_wins(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn deletes_honour_etags() {
                let (s, _g) = make().await;
                super::deletes_honour_etags(s, stringify!($store) == "redis").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn transactions_are_atomic_and_ordered() {
                let (s, _g) = make().await;
                super::transactions_are_atomic_and_ordered(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ttl_expires_keys() {
                let (s, _g) = make().await;
                super::ttl_expires_keys(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn queries_match_sort_and_page_within_a_prefix() {
                let (s, _g) = make().await;
                super::queries_match_sort_and_page_within_a_prefix(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_lose_no_update() {
                let (s, _g) = make().await;
                super::concurrent_writers_lose_no_update(s).await;
            }
        }
    };
}

#[path = "state/open.rs"]
mod open;

conformance!(memory, open::memory);
conformance!(encrypted_sqlite, || async {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(&dir.path().join("state.db"), "state").unwrap();
    let key =
        EncryptionKey::from_hex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
            .unwrap();
    (
        Arc::new(Encrypted::new(Arc::new(inner), key, None)) as Arc<dyn StateStore>,
        Box::new(dir) as Box<dyn Any + Send>,
    )
});
conformance!(sqlite, open::sqlite);
conformance!(redis, open::redis);
conformance!(postgres, open::postgres);
conformance!(mysql, open::mysql);

#[path = "state/stores.rs"]
mod stores;
