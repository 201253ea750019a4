//! Actors through real sidecars and a real hosting app: calls, state and daprd's answers on one
//! host; one turn at a time, idle deactivation, reentrancy and timers; exactly one activation
//! per actor while hosts die and join (`actors/churn.rs`); placement across hosts announced
//! over mDNS or listed in a static map (`actors/placement.rs`); durable reminders
//! (`actors/reminders.rs`); `Resiliency` targets for actor types (`actors/resiliency.rs`).

#[path = "actors/churn.rs"]
mod churn;
#[path = "actors/placement.rs"]
mod placement;
#[path = "actors/reminders.rs"]
mod reminders;
#[path = "actors/resiliency.rs"]
mod resiliency;

use std::time::Duration;

use outrider_testkit::{ActorApp, JSON, Mesh, Reply, Sidecar, Turns, send, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A sidecar in front of `app`, once its actor host is ready.
async fn host(mesh: &Mesh, app_id: &str, res: &str, app: &ActorApp) -> Sidecar {
    let mut s = mesh
        .sidecar(app_id)
        .resources(res)
        .app_port(app.port)
        .start()
        .await;
    app.sidecar_port(s.api);
    s.wait_ready().await;
    wait_hosting(&s).await;
    s
}

async fn wait_hosting(s: &Sidecar) {
    wait_until(WAIT, "the actor host to be ready", || async {
        let m = s.metadata().await;
        (m["actorRuntime"]["runtimeStatus"] == "RUNNING" && m["actorRuntime"]["hostReady"] == true)
            .then_some(())
    })
    .await;
}

async fn call(s: &Sidecar, method: &str, path: &str, body: &str) -> Reply {
    send(
        method,
        &format!("{}{path}", s.api_url()),
        JSON,
        body.to_owned(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_actor_runs_its_calls_keeps_its_state_and_answers_as_daprd() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let app = ActorApp::start("one", json!({"entities": ["Counter"]}), Turns::default()).await;
    let s = host(&mesh, "counter", &res, &app).await;

    for want in 1..=3 {
        let r = call(&s, "POST", "/v1.0/actors/Counter/a/method/increment", "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["count"], want);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = call(&s, "GET", "/v1.0/actors/Counter/a/state/count", "").await;
    assert_eq!((r.status, r.text().as_str()), (200, "3"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = call(&s, "GET", "/v1.0/actors/Counter/a/state/missing", "").await;
    assert_eq!((r.status, r.text().as_str()), (204, ""));
    // The app got every verb as PUT, with the caller's body.
    let r = call(&s, "PUT", "/v1.0/actors/Counter/a/method/echo", "{\"x\":1}").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "{\"x\":1}");
    assert_eq!(r.json()["reentrancy"], Value::Null, "reentrancy is off");

    // State is written for active actors only, in one transaction.
    let tx = json!([{"operation": "upsert", "request": {"key": "k", "value": {"b": 2, "a": [1]}}},
                    {"operation": "delete", "request": {"key": "count"}}]);
    let r = call(&s, "POST", "/v1.0/actors/Counter/a/state", &tx.to_string()).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = call(&s, "GET", "/v1.0/actors/Counter/a/state/k", "").await;
    assert_eq!(r.json(), json!({"a": [1], "b": 2}));
    assert_eq!(
        call(&s, "GET", "/v1.0/actors/Counter/a/state/count", "")
            .await
            .status,
        204
    );
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Counter/idle/state",
        &tx.to_string(),
    )
    .await;
    r.assert_error_says(
        400,
        "ERR_ACTOR_INSTANCE_MISSING",
        "actor instance is missing",
    );
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Counter/a/state",
        "{\"not\": \"a list\"}",
    )
    .await;
    r.assert_error_says(
        400,
        "ERR_MALFORMED_REQUEST",
        "failed deserializing HTTP body",
    );
    let bad_op = json!([{"operation": "merge", "request": {"key": "k"}}]);
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Counter/a/state",
        &bad_op.to_string(),
    )
    .await;
    r.assert_error_says(
        500,
        "ERR_ACTOR_STATE_TRANSACTION_SAVE",
        "operation type merge not supported",
    );
    assert_eq!(
        call(&s, "GET", "/v1.0/actors/Counter/a/state/k", "")
            .await
            .status,
        200
    );

    // The app's failures, as daprd reports them.
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Counter/a/method/status?code=500",
        "",
    )
    .await;
    r.assert_error_says(
        500,
        "ERR_ACTOR_INVOKE_METHOD",
        "error from actor service: (500) {}",
    );
    let r = call(&s, "POST", "/v1.0/actors/Counter/a/method/nope", "").await;
    r.assert_error_says(
        500,
        "ERR_ACTOR_INVOKE_METHOD",
        "actor method not found: actors/Counter/a/method/nope",
    );
    let r = call(&s, "POST", "/v1.0/actors/Counter/a/method/errorheader", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-daprerrorresponseheader"), Some("1"));
    assert_eq!(r.json()["actorError"], "simulated");

    // Bad names never reach the app or the store.
    let before = app.calls().len();
    for (path, what) in [
        ("/v1.0/actors/Counter/a%7C%7Cb/method/echo", "separator"),
        (
            "/v1.0/actors/Counter/a%2Fb/method/echo",
            "forbidden character",
        ),
        (
            "/v1.0/actors/Counter/..%2F/method/echo",
            "forbidden character",
        ),
    ] {
        call(&s, "POST", path, "")
            .await
            .assert_error_says(400, "ERR_BAD_REQUEST", what);
    }
    let r = call(&s, "POST", "/v1.0/actors/Counter/a%7C%7Cb/state", "[]").await;
    r.assert_error_says(400, "ERR_BAD_REQUEST", "separator");
    assert_eq!(app.calls().len(), before);

    let meta = s.metadata().await;
    assert_eq!(meta["actors"], json!([{"type": "Counter", "count": 1}]));
    assert_eq!(meta["actorRuntime"]["activeActors"], meta["actors"]);
    assert_eq!(meta["actorRuntime"]["placement"], "placement: connected");
    let store = (meta["components"].as_array().unwrap().iter())
        .find(|c| c["name"] == "actorstore")
        .unwrap();
    assert!(
        store["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("ACTOR"))
    );

    // A type no sidecar hosts: tried for a few seconds, then daprd's answer.
    let r = call(&s, "POST", "/v1.0/actors/Nobody/x/method/m", "").await;
    r.assert_error_says(
        500,
        "ERR_ACTOR_INVOKE_METHOD",
        "did not find address for actor 'Nobody/x'",
    );
}

#[tokio::test]
async fn one_turn_at_a_time_then_idle_actors_deactivate() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let config = json!({"entities": ["Counter"], "actorIdleTimeout": "2s"});
    let turns = Turns::default();
    let app = ActorApp::start("one", config, turns.clone()).await;
    let s = host(&mesh, "counter", &res, &app).await;

    let url = format!(
        "{}/v1.0/actors/Counter/busy/method/increment?ms=30",
        s.api_url()
    );
    let calls = (0..16).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { send("POST", &url, &[], "").await.unwrap() })
    });
    let mut counts = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        counts.push(r.json()["count"].as_u64().unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=16).collect::<Vec<u64>>(), "no update lost");
    assert_eq!(turns.overlaps(), 0, "two calls ran in one actor at once");

    wait_until(WAIT, "the idle actor's deactivation", || async {
        app.deactivated()
            .contains(&"Counter/busy".to_owned())
            .then_some(())
    })
    .await;
    let r = call(&s, "POST", "/v1.0/actors/Counter/busy/state", "[]").await;
    r.assert_error_says(
        400,
        "ERR_ACTOR_INSTANCE_MISSING",
        "actor instance is missing",
    );
    assert_eq!(s.metadata().await["actors"], json!([{"type": "Counter"}]));
    // Called again, it comes back with its state.
    let r = call(&s, "POST", "/v1.0/actors/Counter/busy/method/increment", "").await;
    assert_eq!(r.json()["count"], 17);
}

#[tokio::test]
async fn reentrant_calls_share_the_turn_up_to_the_stack_depth() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let config =
        json!({"entities": ["Nested"], "reentrancy": {"enabled": true, "maxStackDepth": 3}});
    let turns = Turns::default();
    let app = ActorApp::start("one", config, turns.clone()).await;
    let s = host(&mesh, "nested", &res, &app).await;

    // nest → nest → echo: three calls of one chain, all inside the first one's turn.
    let r = call(&s, "POST", "/v1.0/actors/Nested/n/method/nest?depth=1", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let chain = r.json()["reentrancy"].as_str().unwrap().to_owned();
    assert_eq!(chain.len(), 36, "a generated chain id: {chain}");
    // One more level is one too many.
    let r = call(&s, "POST", "/v1.0/actors/Nested/n/method/nest?depth=2", "").await;
    r.assert_error_says(
        500,
        "ERR_ACTOR_INVOKE_METHOD",
        "maximum stack depth exceeded",
    );
    assert_eq!(turns.overlaps(), 0);
}

#[tokio::test]
async fn timers_fire_in_turn_until_spent_deleted_or_deactivated() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    // Clocks idle out after a second; markers stay.
    let config = json!({"entities": ["Clock", "Marker"], "actorIdleTimeout": "1s",
        "entitiesConfig": [{"entities": ["Marker"], "actorIdleTimeout": "1h"}]});
    let turns = Turns::default();
    let app = ActorApp::start("one", config, turns.clone()).await;
    let s = host(&mesh, "clock", &res, &app).await;
    let timer = |id: &str, name: &str, body: Value| {
        let s = &s;
        let path = if id == "marker" {
            format!("/v1.0/actors/Marker/m/timers/{name}")
        } else {
            format!("/v1.0/actors/Clock/{id}/timers/{name}")
        };
        async move { call(s, "POST", &path, &body.to_string()).await }
    };
    let fired = |actor: &str, name: &str| app.callbacks_of(actor, "timer", name).len();
    let wait_fired = |actor: &'static str, name: &'static str, n: usize| {
        let app = &app;
        async move {
            wait_until(WAIT, &format!("{n} firings of {actor} {name}"), || async {
                (app.callbacks_of(actor, "timer", name).len() >= n).then_some(())
            })
            .await;
        }
    };

    // Three repetitions, a second apart, with the body daprd sends.
    let r = timer(
        "a",
        "three",
        json!({"period": "R3/PT1S", "callback": "tick", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    // A recurring one, deleted after two firings.
    let r = timer("a", "often", json!({"dueTime": "100ms", "period": "100ms"})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    wait_fired("Clock/a", "often", 2).await;
    assert_eq!(
        call(&s, "DELETE", "/v1.0/actors/Clock/a/timers/often", "")
            .await
            .status,
        204
    );
    let deleted_at = fired("Clock/a", "often");
    wait_fired("Clock/a", "three", 3).await;
    let first = &app.callbacks_of("Clock/a", "timer", "three")[0];
    assert_eq!(
        first.body,
        json!({"callback": "tick", "data": {"n": 1}, "dueTime": "", "period": "R3/PT1S"})
    );
    // A marker timer, due well after any firing under way: when it has fired, the spent and
    // deleted timers had every chance to fire again.
    timer("a", "marker", json!({"dueTime": "600ms"})).await;
    wait_fired("Clock/a", "marker", 1).await;
    assert_eq!(fired("Clock/a", "three"), 3, "a spent timer fired again");
    assert!(
        fired("Clock/a", "often") <= deleted_at + 1,
        "a deleted timer kept firing"
    );

    // Timers go with their actor: `b` idles out before its timer is due.
    timer("b", "late", json!({"dueTime": "4s"})).await;
    wait_until(WAIT, "b's deactivation", || async {
        app.deactivated()
            .contains(&"Clock/b".to_owned())
            .then_some(())
    })
    .await;
    timer("marker", "late", json!({"dueTime": "4500ms"})).await;
    wait_fired("Marker/m", "late", 1).await;
    assert_eq!(
        fired("Clock/b", "late"),
        0,
        "a deactivated actor's timer fired"
    );
    assert_eq!(turns.overlaps(), 0);

    // Bad timers change nothing.
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Clock/a/timers/t",
        "{\"period\": 5}",
    )
    .await;
    r.assert_error_says(
        400,
        "ERR_MALFORMED_REQUEST",
        "failed deserializing HTTP body",
    );
    let r = timer("a", "t", json!({"period": "PT10"})).await;
    r.assert_error_says(500, "ERR_ACTOR_TIMER_CREATE", "invalid period");
    let r = timer(
        "a",
        "t",
        json!({"dueTime": "10s", "ttl": "2000-01-01T00:00:00Z"}),
    )
    .await;
    r.assert_error_says(500, "ERR_ACTOR_TIMER_CREATE", "already expired");
    let r = timer("a", "t", json!({"period": "R0/PT1S"})).await;
    r.assert_error_says(500, "ERR_ACTOR_TIMER_CREATE", "zero repetitions");
    let r = call(&s, "POST", "/v1.0/actors/Other/a/timers/t", "{}").await;
    r.assert_error_says(500, "ERR_ACTOR_TIMER_CREATE", "actor type not registered");
    assert_eq!(fired("Clock/a", "t"), 0);
}

/// README's actors example, as a newcomer runs it: the standard-library Counter app as the
/// sidecar's child, its state in SQLite.
#[tokio::test]
async fn the_readme_counter_example_runs() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "store.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: actorstore\nspec:\n  \
         type: state.sqlite\n  version: v1\n  metadata:\n  - name: actorStateStore\n    \
         value: \"true\"\n",
    );
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/actors/counter.py");
    let mut s = mesh
        .sidecar("counter")
        .resources(&res)
        .app_port(outrider_testkit::free_port())
        .command(["python3".to_owned(), example.to_string_lossy().into_owned()])
        .start()
        .await;
    s.wait_ready().await;
    wait_hosting(&s).await;
    for want in 1..=2 {
        let r = call(&s, "POST", "/v1.0/actors/Counter/ada/method/increment", "").await;
        assert_eq!(
            (r.status, r.json()["count"].clone()),
            (200, json!(want)),
            "{}",
            r.text()
        );
    }
    let r = call(&s, "GET", "/v1.0/actors/Counter/ada/state/count", "").await;
    assert_eq!(r.text(), "2");
    let nudge = json!({"dueTime": "500ms", "period": "R2/PT1S"});
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Counter/ada/reminders/nudge",
        &nudge.to_string(),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let job = json!({"dueTime": "500ms", "data": {"greeting": "hi"}});
    let r = call(&s, "POST", "/v1.0-alpha1/jobs/hello", &job.to_string()).await;
    assert_eq!(r.status, 204, "{}", r.text());
    wait_until(
        WAIT,
        "both reminder firings and the job in the app's output",
        || async {
            let log = s.log();
            (log.contains("reminder nudge for ada: count 4")
                && log.contains("job hello: {\"greeting\":\"hi\"}"))
            .then_some(())
        },
    )
    .await;
}
