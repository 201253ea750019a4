//! Checks beyond the shared contract, one store at a time: SQLite durability and table names,
//! PostgreSQL's SQL queries against the evaluator, Redis replicas, and expiry sweeps.

use super::*;

#[tokio::test]
async fn sqlite_is_durable_and_refuses_unsafe_table_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.db");
    {
        let s = SqliteStore::open(&path, "state").unwrap();
        s.set(set("kept", b"across restarts")).await.unwrap();
    }
    let s = SqliteStore::open(&path, "state").unwrap();
    assert_eq!(
        value_of(&s, "kept").await.as_deref(),
        Some(&b"across restarts"[..])
    );
    for bad in ["", "state; DROP TABLE x", "a-b", "t\"x"] {
        assert!(SqliteStore::open(&path, bad).is_err(), "{bad:?}");
    }
}

/// PostgreSQL runs queries in SQL; the other stores use the in-process evaluator. On the same
/// varied data, every query must return the same keys in the same order, page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sql_queries_agree_with_the_evaluator() {
    use serde_json::{Value, json};
    let pg = Postgres::start();
    let sql: Arc<dyn StateStore> = Arc::new(
        PostgresStore::connect(&pg.conn, &pg.table, Duration::from_secs(10))
            .await
            .unwrap(),
    );
    let mem: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    // A deterministic mix of kinds, missing fields, nulls, nesting and non-objects.
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let words = ["apple", "Apple", "banana", "b", "", "zeta", "é"];
    for i in 0..60 {
        let a = match next(7) {
            0 => json!(next(20)),
            1 => json!(next(20) as f64 + 0.5),
            2 => json!(words[next(words.len() as u64) as usize]),
            3 => json!(null),
            4 => json!(next(2) == 0),
            5 => json!([1, 2]),
            _ => Value::Null,
        };
        let mut obj = json!({"b": words[next(words.len() as u64) as usize], "c": {"d": next(5)}});
        if next(6) != 0 {
            obj["a"] = a;
        }
        let value = match next(15) {
            0 => json!("just a string"),
            1 => json!([obj.clone()]),
            _ => obj,
        };
        let req = set(&format!("app||k{i:02}"), value.to_string().as_bytes());
        sql.set(req.clone()).await.unwrap();
        mem.set(req).await.unwrap();
    }
    for s in [&sql, &mem] {
        s.set(set("app||binary", b"\x00\xff")).await.unwrap();
        s.set(set("other||k00", br#"{"a":1}"#)).await.unwrap();
    }
    let queries = [
        json!({}),
        json!({"filter": {"EQ": {"a": 3}}}),
        json!({"filter": {"EQ": {"a": 3.0}}}),
        json!({"filter": {"EQ": {"b": "apple"}}}),
        json!({"filter": {"NEQ": {"b": "apple"}}}),
        json!({"filter": {"EQ": {"a": null}}}),
        json!({"filter": {"EQ": {"a": [1, 2]}}}),
        json!({"filter": {"IN": {"b": ["b", "", "zeta"]}}}),
        json!({"filter": {"GT": {"a": 7}}}),
        json!({"filter": {"LTE": {"a": 7.5}}}),
        json!({"filter": {"GTE": {"b": "b"}}}),
        json!({"filter": {"LT": {"b": "apple"}}}),
        json!({"filter": {"GT": {"a": true}}}),
        json!({"filter": {"EQ": {"c.d": 2}}}),
        json!({"filter": {"AND": [{"GT": {"c.d": 1}}, {"OR": [{"EQ": {"b": "b"}}, {"LT": {"a": 10}}]}]}}),
        json!({"sort": [{"key": "a"}]}),
        json!({"sort": [{"key": "a", "order": "DESC"}, {"key": "b"}]}),
        json!({"sort": [{"key": "b", "order": "DESC"}, {"key": "c.d", "order": "DESC"}], "page": {"limit": 7}}),
        json!({"filter": {"NEQ": {"c.d": 0}}, "sort": [{"key": "c.d"}, {"key": "a", "order": "DESC"}], "page": {"limit": 4}}),
    ];
    let mut non_empty = 0;
    for q in queries {
        let mut pages = [Vec::new(), Vec::new()];
        for (i, s) in [&sql, &mem].into_iter().enumerate() {
            let mut token: Option<String> = None;
            loop {
                let mut qv = q.clone();
                if let Some(t) = &token {
                    qv["page"]["token"] = json!(t);
                }
                let page = s
                    .query("app||".into(), Query::parse(&qv).unwrap())
                    .await
                    .unwrap();
                pages[i].push(page.items.iter().map(|r| r.0.clone()).collect::<Vec<_>>());
                token = page.token;
                if token.is_none() {
                    break;
                }
                assert!(pages[i].len() < 100, "paging never ends for {q}");
            }
        }
        assert_eq!(pages[0], pages[1], "SQL and evaluator disagree on {q}");
        let found = pages[0].concat().len();
        if q == json!({}) {
            assert_eq!(found, 60, "every JSON value under the prefix, nothing else");
        }
        non_empty += usize::from(found > 0);
    }
    assert!(
        non_empty >= 15,
        "only {non_empty} queries matched anything: the comparison proves little"
    );
}

/// Strong consistency on Redis waits for replicas (daprd's `WAIT n 1000`); eventual does not.
#[tokio::test]
async fn redis_strong_writes_wait_for_replicas() {
    let primary = RedisServer::start();
    let port = primary.port.to_string();
    let replica = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--replicaof",
        "127.0.0.1",
        &port,
    ]);
    let cli = |port: u16, args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cli(primary.port, &["INFO", "replication"]).contains("state=online") {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waits = || {
        let stats = cli(primary.port, &["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
            .and_then(|v| v.split(',').next()?.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let s = RedisStore::connect(&RedisSettings::plain("127.0.0.1", primary.port))
        .await
        .unwrap();
    s.set(set("eventual", b"1")).await.unwrap();
    assert_eq!(waits(), 0, "an eventual write waited");
    let strong = SetRequest {
        options: Options {
            consistency: Consistency::Strong,
            ..Default::default()
        },
        ..set("strong", b"2")
    };
    s.set(strong).await.unwrap();
    assert_eq!(waits(), 1, "a strong write did not wait for the replica");
    assert_eq!(
        cli(replica.port, &["HGET", "strong", "data"]).trim(),
        "2",
        "the replica has the strong write"
    );
    let del = DeleteRequest {
        options: Options {
            consistency: Consistency::Strong,
            ..Default::default()
        },
        ..del("strong", None)
    };
    s.delete(del).await.unwrap();
    assert_eq!(waits(), 2);
}

/// Expired rows are invisible at once; the periodic sweep deletes them for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_remove_expired_rows() {
    let ttl = |k: &str| {
        let mut r = set(k, b"1");
        r.metadata.insert("ttlInSeconds".into(), "1".into());
        r
    };
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("s.db"), "state").unwrap();
    let pg_server = Postgres::start();
    let pg = PostgresStore::connect(&pg_server.conn, &pg_server.table, Duration::from_secs(10))
        .await
        .unwrap();
    for s in [&lite as &dyn StateStore, &pg as &dyn StateStore] {
        s.set(ttl("short")).await.unwrap();
        s.set(set("kept", b"1")).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while value_of(&lite, "short").await.is_some() || value_of(&pg, "short").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lite.sweep_expired().await.unwrap(), 1);
    assert_eq!(pg.sweep_expired().await.unwrap(), 1);
    assert_eq!(
        lite.sweep_expired().await.unwrap(),
        0,
        "nothing left to sweep"
    );
    assert!(value_of(&lite, "kept").await.is_some() && value_of(&pg, "kept").await.is_some());
}
