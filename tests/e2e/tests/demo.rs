//! The shop demo as a newcomer starts it: `make demo` (examples/shop/: order, billing, shipping
//! and notification, each behind its own sidecar, from one run file) drives 100 orders through,
//! and each service sees what it should. The template is copied with free ports so the test
//! runs beside others; the registry and the CA go to a directory of the test's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use outrider_testkit::{binary, free_port, send, wait_until};
use serde_json::{Value, json};

const APPS: [&str; 4] = ["order", "billing", "shipping", "notification"];
const ORDERS: usize = 100;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "__pycache__" && e.file_name() != ".outrider" {
                copy_dir(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Ports of one app in the copied template.
struct Ports {
    app: u16,
    http: u16,
    admin: u16,
}

/// Copies examples/shop into `dir` with every fixed port replaced by a free one.
fn shop_copy(dir: &Path) -> Vec<Ports> {
    copy_dir(&repo().join("examples/shop"), dir);
    let file = dir.join("dapr.yaml");
    let mut yaml = std::fs::read_to_string(&file).unwrap();
    let ports: Vec<Ports> = (0..APPS.len())
        .map(|i| {
            let p = Ports {
                app: free_port(),
                http: free_port(),
                admin: free_port(),
            };
            let i = i as u16;
            for (key, fixed, free) in [
                ("appPort", 6001 + i, p.app),
                ("daprHTTPPort", 3500 + i, p.http),
                ("metricsPort", 9090 + i, p.admin),
            ] {
                let (from, to) = (format!("{key}: {fixed}\n"), format!("{key}: {free}\n"));
                assert!(yaml.contains(&from), "the template has no {from:?}");
                yaml = yaml.replace(&from, &to);
            }
            p
        })
        .collect();
    std::fs::write(&file, yaml).unwrap();
    ports
}

async fn stats(port: u16) -> Value {
    send("GET", &format!("http://127.0.0.1:{port}/stats"), &[], "")
        .await
        .map(|r| r.json())
        .unwrap_or(Value::Null)
}

/// The ids of `kind` an app's /stats lists.
fn ids(stats: &Value, kind: &str) -> BTreeSet<String> {
    (stats[kind]["ids"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn make_demo_runs_the_shop_and_every_service_sees_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("shop");
    let ports = shop_copy(&shop);
    // The binaries of this target dir.
    let target = binary("outrider")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let log = dir.path().join("demo.log");
    let mut make = tokio::process::Command::new("make")
        .args(["-s", "demo"])
        .arg(format!("SHOP={}", shop.join("dapr.yaml").display()))
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &target)
        .env("OUTRIDER_REGISTRY_DIR", dir.path().join("registry"))
        .env("OUTRIDER_CA_DIR", dir.path().join("ca"))
        // Only the test's orders: none placed before every subscriber listens.
        .env("ORDER_EVERY", "0")
        // `make test` built the binaries; a build here could wait on its lock.
        .env("DEMO_NO_BUILD", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("demo.err")).unwrap(),
        ))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pgid = Pid::from_raw(make.id().unwrap() as i32);
    let output = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("demo.err")).unwrap_or_default()
    };

    // Every subscriber's sidecar has its subscription, and order's sidecar is ready.
    let (order, billing, shipping, notification) = (&ports[0], &ports[1], &ports[2], &ports[3]);
    for p in [billing, shipping, notification] {
        let url = format!("http://127.0.0.1:{}/v1.0/metadata", p.http);
        wait_until(
            Duration::from_secs(120),
            "the shop's subscriptions",
            || async {
                let meta = send("GET", &url, &[], "").await.ok()?.json();
                (meta["subscriptions"][0]["status"] == "ACTIVE").then_some(())
            },
        )
        .await;
    }
    assert!(
        output().contains(&format!(
            "open the dashboard: http://127.0.0.1:{}/",
            order.admin
        )),
        "{}",
        output()
    );

    // 100 orders, placed through order's sidecar as a client would.
    let placed: BTreeSet<String> = (1..=ORDERS).map(|i| format!("test-{i}")).collect();
    let invoke = format!(
        "http://127.0.0.1:{}/v1.0/invoke/order/method/orders",
        order.http
    );
    for id in &placed {
        let body = json!({"id": id, "item": "book", "qty": 1}).to_string();
        let r = send(
            "POST",
            &invoke,
            &[("content-type", "application/json")],
            body,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "order {id}: {}\n{}", r.text(), output());
    }

    let all = |seen: BTreeSet<String>| placed.is_subset(&seen);
    wait_until(
        Duration::from_secs(60),
        "every order to reach every service",
        || async {
            let (b, s, n) = (
                stats(billing.app).await,
                stats(shipping.app).await,
                stats(notification.app).await,
            );
            (all(ids(&b, "charged"))
                && all(ids(&b, "shipRequested"))
                && all(ids(&s, "prepared"))
                && all(ids(&s, "shipped"))
                && all(ids(&n, "notified"))
                && all(ids(&n, "billingDenied")))
            .then_some(())
        },
    )
    .await;
    let (o, n) = (stats(order.app).await, stats(notification.app).await);
    assert!(all(ids(&o, "placed")), "{o}");
    let answered = ids(&n, "billingAnswered");
    assert!(
        placed.is_disjoint(&answered),
        "billing answered notification: {n}"
    );

    // Billing's sidecar refused them, and its dashboard says by which rule.
    let overview = send(
        "GET",
        &format!("http://127.0.0.1:{}/api/overview", billing.admin),
        &[],
        "",
    )
    .await
    .unwrap()
    .json();
    let denials = &overview["denials"];
    assert!(
        denials["total"].as_u64().unwrap() >= ORDERS as u64,
        "{denials}"
    );
    let latest = &denials["latest"][0];
    assert!(
        latest["caller"]
            .as_str()
            .unwrap()
            .ends_with("/default/notification"),
        "{latest}"
    );
    assert!(
        latest["rule"]
            .as_str()
            .unwrap()
            .contains("policy for app \"notification\""),
        "{latest}"
    );

    // Ctrl-C stops the shop.
    killpg(pgid, Signal::SIGINT).unwrap();
    // Its status is the apps' (stopped by the signal), so only the stop itself is checked.
    tokio::time::timeout(Duration::from_secs(30), make.wait())
        .await
        .expect("the shop stopped within 30 s after Ctrl-C")
        .unwrap();
    for p in &ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p.http)).is_err(),
            "a sidecar still serves after Ctrl-C:\n{}",
            output()
        );
    }
}
