//! Resource files in the shapes Dapr's docs, quickstarts and SDK test suites write them: each
//! loads, or fails, exactly as daprd would — empty metadata, `ignoreErrors`, daprd's other type
//! names, versions, `initTimeout` — and MQTT subscriptions with wildcards deliver what they
//! match, while a filter that can never work is marked FAILED.

use std::time::Duration;

use outrider_testkit::{JSON, Mesh, Mosquitto, wait_until};
use serde_json::json;

/// What a sidecar given one component file does.
enum Expect {
    /// Starts, listing the component as this type.
    Loads(&'static str),
    /// Starts without the component, saying daprd's words.
    StartsWithout,
    /// Refuses to start with this exit code, saying this.
    Fails(i32, &'static str),
}

fn component(name: &str, type_: &str, rest: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {type_}\n{rest}"
    )
}

#[tokio::test]
async fn component_files_load_or_fail_as_daprd_would() {
    let mosquitto = Mosquitto::start();
    // A port nothing listens on: a store there fails to open.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable_redis =
        format!("  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{closed}\n");
    let cases: Vec<(String, Expect)> = vec![
        // As Dapr's own examples write an in-memory store: `metadata:` with nothing under it.
        (
            component("cache", "state.in-memory", "  version: v1\n  metadata:\n"),
            Expect::Loads("state.in-memory"),
        ),
        // daprd's other names for the same components.
        (
            component(
                "pubsub",
                "pubsub.mqtt",
                &format!(
                    "  version: v1\n  metadata:\n  - name: url\n    value: {}\n",
                    mosquitto.url
                ),
            ),
            Expect::Loads("pubsub.mqtt3"),
        ),
        (
            component(
                "cache",
                "state.sqlite3",
                "  version: v1\n  metadata:\n  - name: connectionString\n    value: compat.db\n",
            ),
            Expect::Loads("state.sqlite"),
        ),
        (
            component("cache", "State.In-Memory", "  version: v0\n"),
            Expect::Loads("state.in-memory"),
        ),
        // A type this build lacks, with and without ignoreErrors.
        (
            component(
                "cache",
                "state.cassandra",
                "  version: v1\n  ignoreErrors: true\n",
            ),
            Expect::StartsWithout,
        ),
        (
            component("cache", "state.cassandra", "  version: v1\n"),
            Expect::Fails(2, "\"state.cassandra\" is not supported"),
        ),
        // A store that cannot be opened, with and without ignoreErrors.
        (
            component(
                "cache",
                "state.redis",
                &format!("  ignoreErrors: true\n{unreachable_redis}"),
            ),
            Expect::StartsWithout,
        ),
        (
            component("cache", "state.redis", &unreachable_redis),
            Expect::Fails(1, "opening components failed"),
        ),
        (
            component("cache", "state.redis", "  version: v2\n"),
            Expect::Fails(2, "spec.version: \"v2\" of state.redis is not supported"),
        ),
        (
            component(
                "cache",
                "state.in-memory",
                "  version: v1\n  initTimeout: soon\n",
            ),
            Expect::Fails(2, "spec.initTimeout: \"soon\" is not a duration"),
        ),
    ];
    for (i, (yaml, expect)) in cases.into_iter().enumerate() {
        let mesh = Mesh::new();
        let res = mesh.resources("res", "component.yaml", &yaml);
        let sidecar = mesh.sidecar(&format!("compat{i}")).resources(&res);
        match expect {
            Expect::Loads(type_) => {
                let s = sidecar.start().await;
                let comps = s.components().await;
                assert!(
                    comps.iter().any(|(_, t)| t == type_),
                    "{yaml}\nlisted: {comps:?}"
                );
            }
            Expect::StartsWithout => {
                let s = sidecar.start().await;
                let comps = s.metadata().await["components"].clone();
                assert!(comps.is_null(), "{yaml}\nlisted: {comps}");
                assert!(
                    s.log().contains(
                        "Ignoring error processing component: process component cache error"
                    ),
                    "{yaml}\n{}",
                    s.log()
                );
            }
            Expect::Fails(code, says) => {
                sidecar
                    .start_fails(Duration::from_secs(30), code, &[says])
                    .await;
            }
        }
    }
}

#[tokio::test]
async fn mqtt_wildcard_subscriptions_deliver_what_they_match() {
    let mosquitto = Mosquitto::start();
    let mesh = Mesh::new();
    let run = format!("compat{}", std::process::id());
    let res = mesh.resources(
        "res",
        "pubsub.yaml",
        &component(
            "pubsub",
            "pubsub.mqtt",
            &format!("  metadata:\n  - name: url\n    value: {}\n", mosquitto.url),
        ),
    );
    let (app, sub) = mesh
        .sidecar("mqtt-wild")
        .resources(&res)
        .start_subscriber_expecting(
            "w",
            json!([
                {"pubsubname": "pubsub", "topic": format!("{run}/+/temperature"), "route": "/temps"},
                {"pubsubname": "pubsub", "topic": format!("{run}/alerts/#"), "route": "/alerts",
                 "metadata": {"rawPayload": "true"}},
                {"pubsubname": "pubsub", "topic": format!("{run}/#/broken"), "route": "/never"},
            ]),
            2,
        )
        .await;
    // The filter MQTT cannot take is marked FAILED, with the broker's reason, not retried.
    let subs = sub.metadata().await["subscriptions"].clone();
    let broken = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["topic"].as_str().unwrap().ends_with("/broken"))
        .unwrap()
        .clone();
    assert_eq!(broken["status"], "FAILED", "{subs}");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("not an MQTT topic filter"),
        "{broken}"
    );
    let publisher = mesh.sidecar("mqtt-pub").resources(&res).start().await;
    for (topic, n) in [
        (format!("{run}/kitchen/temperature"), 1),
        (format!("{run}/garage/temperature"), 2),
        (format!("{run}/kitchen/humidity"), 3),
        (format!("{run}/alerts/fire/kitchen"), 4),
    ] {
        let r = publisher
            .publish("pubsub", &topic, JSON, &format!("{{\"n\":{n}}}"))
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let temps = app.wait_at("/temps", 2, Duration::from_secs(15)).await;
    let alerts = app.wait_at("/alerts", 1, Duration::from_secs(15)).await;
    let mut got: Vec<(u64, String)> = temps
        .iter()
        .map(|r| {
            let e = r.json();
            (
                e["data"]["n"].as_u64().unwrap(),
                e["topic"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    // Each event carries the topic it was published on: in the publisher's CloudEvent, and in
    // the one the sidecar makes for a raw subscription (from the broker's message).
    assert_eq!(
        got,
        [
            (1, format!("{run}/kitchen/temperature")),
            (2, format!("{run}/garage/temperature")),
        ]
    );
    let raw = alerts[0].json();
    assert_eq!(raw["topic"], format!("{run}/alerts/fire/kitchen"), "{raw}");
    // The humidity reading matched nothing: give it the time the others took, and check.
    wait_until(Duration::from_secs(5), "the deliveries settled", || async {
        (app.count_at("/temps") == 2 && app.count_at("/alerts") == 1).then_some(())
    })
    .await;
    assert_eq!(app.count_at("/never"), 0);
}

#[tokio::test]
async fn configuration_fields_are_honoured_warned_of_or_refused() {
    let mesh = Mesh::new();
    let write = |name: &str, text: &str| {
        let p = mesh.home().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    // A pipeline naming middleware that is not there would leave the API without the
    // protection asked for.
    let bearer = write(
        "bearer.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  httpPipeline:\n    handlers:\n    - name: oauth\n      type: middleware.http.bearer\n",
    );
    mesh.sidecar("piped")
        .args(["--config", &bearer])
        .start_fails(
            Duration::from_secs(30),
            2,
            &[
                "bearer.yaml: spec.httpPipeline.handlers[0].name",
                "no middleware component of that name is loaded",
            ],
        )
        .await;
    // A misspelt field is named with its value; a denied component type is not loaded.
    let typo = write(
        "typo.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  acessControl:\n    defaultAction: deny\n  components:\n    deny:\n    - state.in-memory\n",
    );
    let res = mesh.resources(
        "res",
        "state.yaml",
        &component("cache", "state.in-memory", "  version: v1\n"),
    );
    let s = mesh
        .sidecar("typo")
        .args(["--config", &typo])
        .resources(&res)
        .start()
        .await;
    let log = s.log();
    assert!(
        log.contains("typo.yaml: spec.acessControl")
            && log.contains("is not a field of a Configuration"),
        "{log}"
    );
    assert!(
        log.contains("denied by the Configuration's spec.components.deny"),
        "{log}"
    );
    assert!(s.metadata().await["components"].is_null());
}

#[tokio::test]
async fn settings_a_component_does_not_read_are_named() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "components.yaml",
        &format!(
            "{}---\n{}",
            component(
                "cache",
                "state.sqlite",
                "  version: v1\n  metadata:\n  - name: connectionString\n    value: s.db\n  - name: tableName\n    value: t\n  - name: keyPrefix\n    value: name\n  - name: cleanupInterval\n    value: 1h\n  - name: conectionString\n    value: typo.db\n  - name: actorStateStore\n    value: \"true\"\n",
            ),
            component(
                "pubsub",
                "pubsub.in-memory",
                "  version: v1\n  metadata:\n  - name: consumerID\n    value: g\n  - name: allowedTopics\n    value: a,b\n  - name: redisHost\n    value: x:6379\n",
            ),
        ),
    );
    let s = mesh.sidecar("settings").resources(&res).start().await;
    let log = s.log();
    let named: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("is not a setting"))
        .collect();
    for unread in ["conectionstring", "redishost"] {
        assert!(
            named
                .iter()
                .any(|l| l.contains(&format!("spec.metadata \"{unread}\""))),
            "{unread} not named:\n{log}"
        );
    }
    assert_eq!(
        named.len(),
        2,
        "only the settings nothing reads (actorStateStore is read):\n{named:#?}"
    );
}
