//! The configuration API through real sidecars: `configuration.redis` (a private server, as
//! the test restarts it) and `configuration.postgresql` (daprd's table and trigger), read with
//! get, watched with subscribe (updates POSTed to the app once each, a store restart ridden
//! out), ended with unsubscribe; daprd's codes and bodies.

use std::process::Command;
use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, Postgres, RedisServer, Sidecar};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn redis_cli(server: &RedisServer, args: &[&str]) {
    let port = server.port.to_string();
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .output()
        .expect("redis-cli (make deps installs it)");
    assert!(out.status.success(), "{out:?}");
}

fn psql(pg: &Postgres, sql: &str) {
    let out = Command::new("psql")
        .args([&pg.conn, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql (make deps installs it)");
    assert!(out.status.success(), "{sql}: {out:?}");
}

/// The updates the app received at `path`, as `(id, items)`, once there are `n`.
async fn updates(app: &FakeApp, path: &str, n: usize) -> Vec<(String, Value)> {
    let seen = app.wait_at(path, n, WAIT).await;
    seen.iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            let v = r.json();
            (
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["items"].clone(),
            )
        })
        .collect()
}

async fn subscribe(s: &Sidecar, rest: &str) -> String {
    let r = s.get(&format!("/v1.0/configuration/{rest}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn redis_items_are_read_watched_through_a_restart_and_unwatched() {
    let mut redis = RedisServer::start();
    let mesh = Mesh::new();
    let docs = format!(
        "kind: Component\nmetadata: {{name: cfg}}\nspec:\n  type: configuration.redis\n  \
         metadata:\n  - {{name: redisHost, value: '127.0.0.1:{}'}}\n",
        redis.port
    );
    let res = mesh.resources("res", "cfg.yaml", &docs);
    let app = FakeApp::start("cfg-app").await;
    let mut s = mesh
        .sidecar("cfg-redis")
        .app_port(app.port)
        .resources(&res)
        .start()
        .await;
    s.wait_ready().await;
    redis_cli(&redis, &["SET", "a", "on||1"]);
    redis_cli(&redis, &["SET", "b", "off"]);
    for prefix in ["/v1.0", "/v1.0-alpha1"] {
        let r = s
            .get(&format!("{prefix}/configuration/cfg?key=a&key=b&key=none"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let want = json!({"a": {"value": "on", "version": "1"}, "b": {"value": "off"}});
        assert_eq!(r.json(), want, "{prefix}");
    }
    let r = s.get("/v1.0/configuration/cfg?key=none").await;
    assert_eq!(r.status, 204, "nothing matched: {}", r.text());

    let id = subscribe(&s, "cfg/subscribe?key=a").await;
    redis_cli(&redis, &["SET", "unwatched", "x||1"]);
    redis_cli(&redis, &["SET", "a", "changed||2"]);
    let got = updates(&app, "/configuration/cfg/a", 1).await;
    let changed = json!({"a": {"value": "changed", "version": "2"}});
    assert_eq!(got, [(id.clone(), changed.clone())]);

    // The store restarts (losing its data and settings): the watch comes back by itself. It
    // may first report `a` gone (the restarted server lost it), then the new value, once.
    redis.restart();
    let after = json!({"a": {"value": "after", "version": "3"}});
    let deadline = tokio::time::Instant::now() + WAIT;
    let path = "/configuration/cfg/a";
    let has_after = |seen: &[(String, Value)]| seen.iter().any(|(_, items)| *items == after);
    while !has_after(&updates(&app, path, 1).await) {
        redis_cli(&redis, &["SET", "a", "after||3"]);
        assert!(
            tokio::time::Instant::now() < deadline,
            "no update after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = updates(&app, path, 1).await;
    let since: Vec<_> = got[1..]
        .iter()
        .map(|(i, items)| (i.as_str(), items))
        .collect();
    let gone = json!({"a": {}});
    let want_one = [(id.as_str(), &after)];
    let want_two = [(id.as_str(), &gone), (id.as_str(), &after)];
    assert!(since == want_one || since == want_two, "{since:?}");

    // A second watch of the same key; ending the first leaves only the second's updates.
    let id2 = subscribe(&s, "cfg/subscribe?key=a").await;
    let r = s
        .get(&format!("/v1.0-alpha1/configuration/cfg/{id}/unsubscribe"))
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    let n = got.len();
    redis_cli(&redis, &["SET", "a", "last||4"]);
    let got = updates(&app, path, n + 1).await;
    let last = json!({"a": {"value": "last", "version": "4"}});
    assert_eq!(got[n], (id2.clone(), last));
    redis_cli(&redis, &["DEL", "a"]);
    let got = updates(&app, path, n + 2).await;
    assert_eq!(got[n + 1], (id2, gone), "a deleted key arrives empty");
    assert_eq!(app.count_at(path), n + 2, "nothing for the ended watch");

    let r = s
        .get(&format!("/v1.0/configuration/cfg/{id}/unsubscribe"))
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let says = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        says.contains(&format!(
            "failed to unsubscribe to configuration request {id}"
        )),
        "{says}"
    );
    assert!(
        r.json().get("errorCode").is_none(),
        "daprd sends no code here: {}",
        r.text()
    );
    let r = s.get("/v1.0/configuration/nocfg?key=a").await;
    r.assert_error_says(
        400,
        "ERR_CONFIGURATION_STORE_NOT_FOUND",
        "configuration store nocfg not found",
    );
}

#[tokio::test]
async fn postgresql_rows_are_read_and_watched_through_the_trigger() {
    let pg = Postgres::start();
    let t = &pg.table;
    psql(&pg, &pg.configuration_table_sql());
    let _function = Dropped(&pg);
    let flag = format!("INSERT INTO {t} VALUES ('flag', 'on', '1', '{{\"team\": \"a\"}}')");
    psql(&pg, &flag);
    let mesh = Mesh::new();
    let docs = format!(
        "kind: Component\nmetadata: {{name: pgcfg}}\nspec:\n  type: configuration.postgresql\n  \
         metadata:\n  - {{name: connectionString, value: '{}'}}\n  - {{name: table, value: {t}}}\n",
        pg.conn
    );
    let res = mesh.resources("res", "cfg.yaml", &docs);
    let app = FakeApp::start("pgcfg-app").await;
    let mut s = mesh
        .sidecar("cfg-pg")
        .app_port(app.port)
        .resources(&res)
        .start()
        .await;
    s.wait_ready().await;
    let r = s.get("/v1.0/configuration/pgcfg?key=flag").await;
    let want = json!({"flag": {"value": "on", "version": "1", "metadata": {"team": "a"}}});
    assert_eq!((r.status, r.json()), (200, want));
    let r = s.get("/v1.0/configuration/pgcfg?key=a'b").await;
    r.assert_error_says(500, "ERR_CONFIGURATION_GET", "invalid key");

    // The channel comes with the request, as daprd allows.
    let r = s.get("/v1.0/configuration/pgcfg/subscribe?key=flag").await;
    r.assert_error_says(
        500,
        "ERR_CONFIGURATION_SUBSCRIBE",
        "notifyChannel must be set",
    );
    let id = subscribe(
        &s,
        &format!("pgcfg/subscribe?key=flag&metadata.pgNotifyChannel={t}"),
    )
    .await;
    psql(
        &pg,
        &format!("UPDATE {t} SET value = 'off', version = '2' WHERE key = 'flag'"),
    );
    psql(
        &pg,
        &format!("INSERT INTO {t} VALUES ('other', 'x', '1', NULL)"),
    );
    psql(&pg, &format!("DELETE FROM {t} WHERE key = 'flag'"));
    let got = updates(&app, "/configuration/pgcfg/flag", 2).await;
    let off = json!({"flag": {"value": "off", "version": "2", "metadata": {"team": "a"}}});
    assert_eq!(got, [(id.clone(), off), (id.clone(), json!({"flag": {}}))]);
    let r = s
        .get(&format!("/v1.0/configuration/pgcfg/{id}/unsubscribe"))
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    assert_eq!(app.count_at("/configuration/pgcfg/other"), 0, "not watched");
}

/// Drops the trigger's function of `pg`'s table when the test ends, passed or not (the table
/// itself goes with `pg`).
struct Dropped<'a>(&'a Postgres);

impl Drop for Dropped<'_> {
    fn drop(&mut self) {
        let sql = format!("DROP FUNCTION IF EXISTS {}_notify() CASCADE", self.0.table);
        let _ = Command::new("psql")
            .args([&self.0.conn, "-qAtc", &sql])
            .output();
    }
}

#[tokio::test]
async fn without_stores_or_an_app_the_api_says_so() {
    let mesh = Mesh::new();
    let mut bare = mesh.sidecar("cfg-none").start().await;
    bare.wait_ready().await;
    let r = bare.get("/v1.0/configuration/any?key=a").await;
    r.assert_error_says(
        500,
        "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
        "configuration stores not configured",
    );

    let docs = "kind: Component\nmetadata: {name: cfg}\nspec:\n  type: configuration.redis\n  \
                metadata:\n  - {name: redisHost, value: '127.0.0.1:6379'}\n";
    let res = mesh.resources("res", "cfg.yaml", docs);
    let mut s = mesh.sidecar("cfg-no-app").resources(&res).start().await;
    s.wait_ready().await;
    let r = s.get("/v1.0/configuration/cfg/subscribe?key=a").await;
    r.assert_error_says(500, "ERR_APP_CHANNEL_NIL", "app channel is not initialized");
    let comps = s.components().await;
    assert!(
        comps.contains(&("cfg".into(), "configuration.redis".into())),
        "{comps:?}"
    );
}
