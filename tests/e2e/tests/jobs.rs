//! The jobs API through real sidecars and a real app: a job fires at `POST /job/{name}` with its
//! data, repeats and TTL are honoured, the failure policy retries a job the app fails, deleting
//! a job stops it, daprd's answers for bad jobs; and a job scheduled through one instance fires
//! on another after the first is killed.

use std::time::Duration;

use outrider_testkit::{
    ActorApp, JSON, Mesh, RedisServer, Reply, Sidecar, Turns, send, wait_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn worker(mesh: &Mesh, res: &str, name: &str) -> (Sidecar, ActorApp) {
    let app = ActorApp::start(name, json!({"entities": []}), Turns::default()).await;
    let mut s = mesh
        .sidecar("worker")
        .resources(res)
        .app_port(app.port)
        .start()
        .await;
    app.sidecar_port(s.api);
    s.wait_ready().await;
    wait_until(WAIT, "the scheduler", || async {
        (s.metadata().await["actorRuntime"]["runtimeStatus"] == "RUNNING").then_some(())
    })
    .await;
    (s, app)
}

async fn job(s: &Sidecar, method: &str, name: &str, body: Value) -> Reply {
    let url = format!("{}/v1.0-alpha1/jobs/{name}", s.api_url());
    send(method, &url, JSON, body.to_string()).await.unwrap()
}

fn delivered(app: &ActorApp, name: &str) -> Vec<Value> {
    (app.callbacks().into_iter())
        .filter(|c| c.kind == "job" && c.name == name)
        .map(|c| c.body)
        .collect()
}

async fn wait_delivered(app: &ActorApp, name: &str, n: usize) {
    wait_until(WAIT, &format!("{n} deliveries of job {name}"), || async {
        (delivered(app, name).len() >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn jobs_fire_repeat_expire_retry_and_stop() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let (s, app) = worker(&mesh, &res, "one").await;

    // The quickstart's job: once, with its data as the body.
    let r = job(
        &s,
        "POST",
        "R2-D2",
        json!({"data": {"value": "R2-D2:Oil Change"}, "dueTime": "1s"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = job(&s, "GET", "R2-D2", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"name": "R2-D2", "dueTime": "1s",
               "data": {"@type": "type.googleapis.com/google.protobuf.Value", "value": {"value": "R2-D2:Oil Change"}},
               "failurePolicy": {"constant": {"interval": "1s", "maxRetries": 3}}})
    );
    wait_delivered(&app, "R2-D2", 1).await;
    assert_eq!(
        delivered(&app, "R2-D2")[0],
        json!({"value": "R2-D2:Oil Change"})
    );
    wait_until(WAIT, "the fired job's end", || async {
        let r = job(&s, "GET", "R2-D2", json!({})).await;
        (r.status == 500).then_some(r)
    })
    .await
    .assert_error_says(500, "DAPR_SCHEDULER_GET_JOB", "job not found");

    // Repeats, TTL, retries, drop, delete, on the stable names too.
    job(
        &s,
        "POST",
        "thrice",
        json!({"schedule": "@every 300ms", "repeats": 3}),
    )
    .await;
    let r = send(
        "POST",
        &format!("{}/v1.0/jobs/short", s.api_url()),
        JSON,
        json!({"schedule": "@every 400ms", "ttl": "1500ms"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    job(
        &s,
        "POST",
        "retried",
        json!({"dueTime": "0s", "data": {"failTimes": 2},
        "failurePolicy": {"constant": {"interval": "200ms", "maxRetries": 3}}}),
    )
    .await;
    job(
        &s,
        "POST",
        "dropped",
        json!({"dueTime": "0s", "data": {"failTimes": 1},
        "failure_policy": {"drop": {}}}),
    )
    .await;
    job(&s, "POST", "endless", json!({"schedule": "@every 200ms"})).await;
    wait_delivered(&app, "endless", 2).await;
    assert_eq!(job(&s, "DELETE", "endless", json!({})).await.status, 204);
    let at_delete = delivered(&app, "endless").len();
    wait_delivered(&app, "thrice", 3).await;
    wait_delivered(&app, "retried", 3).await;
    job(&s, "POST", "marker", json!({"dueTime": "2s"})).await;
    wait_delivered(&app, "marker", 1).await;
    assert_eq!(delivered(&app, "thrice").len(), 3, "repeats: 3");
    let short = delivered(&app, "short").len();
    assert!(
        (2..=4).contains(&short),
        "a 1.5 s TTL at 400 ms: {short} firings"
    );
    assert_eq!(
        delivered(&app, "retried").len(),
        3,
        "two failures, then done"
    );
    assert_eq!(
        delivered(&app, "dropped").len(),
        1,
        "dropped after one failure"
    );
    assert!(
        delivered(&app, "endless").len() <= at_delete + 1,
        "a deleted job kept firing"
    );
    assert_eq!(job(&s, "DELETE", "never", json!({})).await.status, 204);

    // daprd's answers; nothing is scheduled.
    job(&s, "POST", "j", json!({"data": 1}))
        .await
        .assert_error_says(400, "DAPR_SCHEDULER_SCHEDULE_EMPTY", "Schedule is empty");
    job(&s, "POST", "j", json!({"name": "j", "dueTime": "1s"}))
        .await
        .assert_error_says(400, "DAPR_SCHEDULER_JOB_NAME", "url only");
    job(&s, "POST", "j", json!({"schedule": "not cron"}))
        .await
        .assert_error_says(500, "DAPR_SCHEDULER_SCHEDULE_JOB", "validation");
    job(&s, "POST", "j", json!({"dueTime": 5}))
        .await
        .assert_error_says(400, "ERR_MALFORMED_REQUEST", "dueTime");
    job(
        &s,
        "POST",
        "j",
        json!({"schedule": "@every 1s", "repeats": 0}),
    )
    .await
    .assert_error_says(500, "DAPR_SCHEDULER_SCHEDULE_JOB", "repeats");
    job(&s, "POST", "kept", json!({"dueTime": "1h"})).await;
    job(&s, "POST", "kept", json!({"dueTime": "2h"}))
        .await
        .assert_error_says(409, "DAPR_SCHEDULER_SCHEDULE_JOB", "already exists");
    assert_eq!(
        job(
            &s,
            "POST",
            "kept",
            json!({"dueTime": "2h", "overwrite": true})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        job(&s, "GET", "kept", json!({})).await.json()["dueTime"],
        "2h"
    );
    job(&s, "GET", "j", json!({})).await.assert_error_says(
        500,
        "DAPR_SCHEDULER_GET_JOB",
        "not found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_scheduled_through_a_killed_instance_fire_on_another() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "store.yaml",
        &format!(
            "kind: Component\nmetadata: {{name: store}}\nspec:\n  type: state.redis\n  \
             version: v1\n  metadata:\n  - {{name: redisHost, value: \"127.0.0.1:{}\"}}\n  \
             - {{name: actorStateStore, value: \"true\"}}\n",
            redis.port
        ),
    );
    let (mut a, a_app) = worker(&mesh, &res, "a").await;
    let (_b, b_app) = worker(&mesh, &res, "b").await;
    // Ten jobs: each instance owns some of them.
    for i in 0..10 {
        let r = job(
            &a,
            "POST",
            &format!("job-{i}"),
            json!({"dueTime": "3s", "data": i}),
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    a.signal(nix::sys::signal::Signal::SIGKILL);
    a.kill().await;
    drop(a_app);
    for i in 0..10 {
        wait_delivered(&b_app, &format!("job-{i}"), 1).await;
        assert_eq!(delivered(&b_app, &format!("job-{i}")), [json!(i)]);
    }
}
