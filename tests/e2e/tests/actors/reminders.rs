//! Durable reminders: fired in the actor's turn with daprd's body, counted repetitions, one-shot
//! ones deleted after they fire, cancelled by the app's answer, daprd's answers; and 200
//! reminders made through a host that is then killed, all fired by the hosts that remain.

use std::time::Duration;

use outrider_testkit::{ActorApp, Mesh, RedisServer, Turns, send, unique, wait_until};
use serde_json::{Value, json};

use super::{WAIT, call, host};

#[tokio::test]
async fn reminders_fire_in_turn_count_their_repetitions_and_end() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let turns = Turns::default();
    let app = ActorApp::start("one", json!({"entities": ["Pet"]}), turns.clone()).await;
    let s = host(&mesh, "pets", &res, &app).await;
    let remind = |id: &str, name: &str, body: Value| {
        let (s, path) = (&s, format!("/v1.0/actors/Pet/{id}/reminders/{name}"));
        async move { call(s, "POST", &path, &body.to_string()).await }
    };
    let fired = |actor: &str, name: &str| app.callbacks_of(actor, "remind", name);

    let r = remind(
        "rex",
        "feed",
        json!({"period": "R3/PT1S", "data": {"food": "bone"}}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = remind("rex", "once", json!({"dueTime": "500ms", "data": "walk"})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = call(&s, "GET", "/v1.0/actors/Pet/rex/reminders/feed", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"actorID": "rex", "actorType": "Pet", "data": {"food": "bone"}, "period": "R3/PT1S"})
    );
    assert!(r.text().ends_with('\n'));
    wait_until(WAIT, "three firings of feed", || async {
        (fired("Pet/rex", "feed").len() >= 3).then_some(())
    })
    .await;
    let first = &fired("Pet/rex", "feed")[0];
    assert_eq!(
        first.body,
        json!({"data": {"food": "bone"}, "dueTime": "", "period": "R3/PT1S"})
    );
    assert_eq!(fired("Pet/rex", "once")[0].body["data"], "walk");
    // Spent reminders are deleted.
    for name in ["feed", "once"] {
        wait_until(WAIT, "the spent reminder's deletion", || async {
            let r = call(
                &s,
                "GET",
                &format!("/v1.0/actors/Pet/rex/reminders/{name}"),
                "",
            )
            .await;
            (r.status == 404).then_some(r)
        })
        .await
        .assert_error_says(404, "ERR_ACTOR_REMINDER_NOT_FOUND", name);
    }
    assert_eq!(fired("Pet/rex", "feed").len(), 3);
    assert_eq!(fired("Pet/rex", "once").len(), 1);

    // A deleted reminder stops; one that fails is tried again.
    remind("rex", "often", json!({"period": "300ms"})).await;
    remind(
        "rex",
        "sulky",
        json!({"dueTime": "0s", "data": {"fail": true}}),
    )
    .await;
    wait_until(WAIT, "two firings of often", || async {
        (fired("Pet/rex", "often").len() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        call(&s, "DELETE", "/v1.0/actors/Pet/rex/reminders/often", "")
            .await
            .status,
        204
    );
    let at_delete = fired("Pet/rex", "often").len();
    wait_until(WAIT, "four tries of the failing reminder", || async {
        (fired("Pet/rex", "sulky").len() >= 4).then_some(())
    })
    .await;
    remind("rex", "marker", json!({"dueTime": "1500ms"})).await;
    wait_until(WAIT, "the marker", || async {
        (!fired("Pet/rex", "marker").is_empty()).then_some(())
    })
    .await;
    assert!(
        fired("Pet/rex", "often").len() <= at_delete + 1,
        "a deleted reminder kept firing"
    );
    assert_eq!(
        fired("Pet/rex", "sulky").len(),
        4,
        "one try and three more, then given up"
    );
    assert_eq!(turns.overlaps(), 0);

    // An app that answers `X-DaprReminderCancel: true` ends the reminder, and stops a timer.
    let cancel = json!({"period": "200ms", "data": {"cancel": true}});
    remind("rex", "enough", cancel.clone()).await;
    let timer = call(
        &s,
        "POST",
        "/v1.0/actors/Pet/rex/timers/enough",
        &cancel.to_string(),
    )
    .await;
    assert_eq!(timer.status, 204, "{}", timer.text());
    wait_until(WAIT, "the cancelled reminder's deletion", || async {
        let r = call(&s, "GET", "/v1.0/actors/Pet/rex/reminders/enough", "").await;
        (r.status == 404).then_some(())
    })
    .await;
    remind("rex", "marker2", json!({"dueTime": "1s"})).await;
    wait_until(WAIT, "the second marker", || async {
        (!fired("Pet/rex", "marker2").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        fired("Pet/rex", "enough").len(),
        1,
        "fired once, then cancelled"
    );
    let ticks = app.callbacks_of("Pet/rex", "timer", "enough").len();
    assert_eq!(ticks, 1, "the timer fired once, then stopped");

    // daprd's answers.
    let r = call(&s, "POST", "/v1.0/actors/Cat/tom/reminders/r", "{}").await;
    r.assert_error_says(403, "ERR_ACTOR_REMINDER_NON_HOSTED", "hosted actor types");
    let r = remind("rex", "bad", json!({"period": "every day"})).await;
    r.assert_error_says(500, "ERR_ACTOR_REMINDER_CREATE", "invalid period");
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Pet/rex/reminders/bad",
        "{\"dueTime\": 1}",
    )
    .await;
    r.assert_error_says(400, "ERR_MALFORMED_REQUEST", "failed deserializing");
    remind("rex", "kept", json!({"dueTime": "1h"})).await;
    let r = remind("rex", "kept", json!({"dueTime": "2h", "overwrite": false})).await;
    r.assert_error_says(409, "ERR_ACTOR_REMINDER_ALREADY_EXISTS", "kept");
    let r = call(&s, "GET", "/v1.0/actors/Pet/rex/reminders/kept", "").await;
    assert_eq!(r.json()["dueTime"], "1h");
    assert_eq!(
        call(&s, "DELETE", "/v1.0/actors/Pet/rex/reminders/never", "")
            .await
            .status,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_survive_the_death_of_the_host_that_made_them() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "actors.yaml",
        &format!(
            "kind: Component\nmetadata: {{name: actorstore}}\nspec:\n  type: state.redis\n  \
             version: v1\n  metadata:\n  - {{name: redisHost, value: \"127.0.0.1:{}\"}}\n  \
             - {{name: actorStateStore, value: \"true\"}}\n",
            redis.port
        ),
    );
    let actor_type = unique("Pet").replace('-', "");
    let config = json!({"entities": [actor_type]});
    let turns = Turns::default();
    let mut hosts = Vec::new();
    for i in 0..3 {
        let app = ActorApp::start(&format!("h{i}"), config.clone(), turns.clone()).await;
        let s = host(&mesh, "pets", &res, &app).await;
        hosts.push((s, app));
    }
    // 200 reminders through host 0: even actors three firings a second apart, odd ones once.
    const N: usize = 200;
    let base = hosts[0].0.api_url();
    for i in 0..N {
        let body = if i.is_multiple_of(2) {
            json!({"dueTime": "4s", "period": "R3/PT1S"})
        } else {
            json!({"dueTime": "4s"})
        };
        let url = format!("{base}/v1.0/actors/{actor_type}/a{i}/reminders/r");
        let r = send("POST", &url, outrider_testkit::JSON, body.to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{}", r.text());
    }
    // Host 0 dies before any is due.
    let (mut dead, dead_app) = hosts.remove(0);
    dead.signal(nix::sys::signal::Signal::SIGKILL);
    dead.kill().await;
    drop(dead_app);

    let want = |i: usize| if i.is_multiple_of(2) { 3 } else { 1 };
    let count = |i: usize| {
        hosts
            .iter()
            .map(|(_, app)| {
                app.callbacks_of(&format!("{actor_type}/a{i}"), "remind", "r")
                    .len()
            })
            .sum::<usize>()
    };
    wait_until(
        Duration::from_secs(60),
        "every reminder's firings",
        || async { (0..N).all(|i| count(i) >= want(i)).then_some(()) },
    )
    .await;
    // Every firing done, none twice (a marker due after the last one shows nothing more came).
    let marker = format!(
        "{}/v1.0/actors/{actor_type}/marker/reminders/m",
        hosts[0].0.api_url()
    );
    send(
        "POST",
        &marker,
        outrider_testkit::JSON,
        "{\"dueTime\": \"2s\"}",
    )
    .await
    .unwrap();
    wait_until(WAIT, "the marker", || async {
        let n: usize = hosts
            .iter()
            .map(|(_, a)| {
                a.callbacks_of(&format!("{actor_type}/marker"), "remind", "m")
                    .len()
            })
            .sum();
        (n == 1).then_some(())
    })
    .await;
    for i in 0..N {
        assert_eq!(count(i), want(i), "reminder of a{i}");
    }
    assert_eq!(
        turns.overlaps(),
        0,
        "a reminder fired in another turn of its actor"
    );
    // Spent and one-shot reminders are gone.
    for i in [0, 1, N - 2, N - 1] {
        let url = format!(
            "{}/v1.0/actors/{actor_type}/a{i}/reminders/r",
            hosts[1].0.api_url()
        );
        wait_until(WAIT, "a spent reminder's deletion", || async {
            let r = send("GET", &url, &[], "").await.unwrap();
            (r.status == 404).then_some(())
        })
        .await;
    }
}
