//! Placement across hosts with the resolvers that are not the local registry: two hosts of the
//! Counter type and one caller that hosts nothing, each a network namespace of its own, their
//! actor state in a Redis on the caller's host. Hosts are announced over mDNS (TXT `actors`),
//! listed in the static map (`actors` in their entries), or found by asking the sidecars a DNS
//! server lists for the apps named in `actorHosts`. Every sidecar must place each actor
//! on the same host: the caller's calls succeed (it can only forward), calls through either host
//! find the same actor (its count goes on), and the hosts' active actors add up to the actors
//! called, spread over both.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outrider_testkit::netns::{Host, Lan};
use outrider_testkit::{Mesh, Sidecar, WELL_KNOWN_PORTS, free_port, wait_until};
use serde_json::json;

/// The mesh port of sidecars on LAN hosts.
const MESH: u16 = WELL_KNOWN_PORTS[3];
const ACTORS: usize = 40;
const REDIS_PORT: u16 = 6390;

fn config(dir: &Path, name_resolution: serde_json::Value) -> PathBuf {
    let doc = json!({
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "placement"},
        "spec": {"nameResolution": name_resolution},
    });
    let path = dir.join("placement.yaml");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// A private Redis on `host`, reachable from the LAN.
async fn redis_on(host: &Host) -> tokio::process::Child {
    let child = host
        .tokio_command("redis-server")
        .args([
            "--port",
            &REDIS_PORT.to_string(),
            "--bind",
            &host.addr.to_string(),
        ])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server");
    wait_until(
        Duration::from_secs(10),
        "the LAN's Redis to answer",
        || async {
            let out = host
                .tokio_command("redis-cli")
                .args([
                    "-h",
                    &host.addr.to_string(),
                    "-p",
                    &REDIS_PORT.to_string(),
                    "ping",
                ])
                .output()
                .await
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("PONG")
                .then_some(())
        },
    )
    .await;
    child
}

async fn sidecar(mesh: &Mesh, app: &str, host: &Host, cfg: &Path, res: Option<&str>) -> Sidecar {
    let mut b = mesh
        .sidecar(app)
        .on(host)
        .well_known_ports()
        .args(["--config", &cfg.to_string_lossy()]);
    if let Some(res) = res {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/actors/counter.py");
        b = b
            .resources(res)
            .app_port(free_port())
            .command(["python3".to_owned(), example.to_string_lossy().into_owned()]);
    }
    let mut s = b.spawn();
    if res.is_some() {
        s.wait_ready().await;
        wait_until(
            Duration::from_secs(20),
            "the actor host to be ready",
            || async {
                let m = metadata(&s).await;
                (m["actorRuntime"]["hostReady"] == true).then_some(())
            },
        )
        .await;
    } else {
        s.wait_outbound_ready().await;
    }
    s
}

/// `GET /v1.0/metadata` of a sidecar on a LAN host.
async fn metadata(s: &Sidecar) -> serde_json::Value {
    s.call("GET", "/v1.0/metadata", "")
        .await
        .expect("metadata")
        .json()
}

/// Counter actors through `via`, each incremented once; each answer's count.
async fn increment_all(via: &Sidecar, ids: &[String]) -> Vec<i64> {
    let mut counts = Vec::new();
    for id in ids {
        let path = format!("/v1.0/actors/Counter/{id}/method/increment");
        let r = via.call("POST", &path, "").await.expect("the call");
        assert_eq!(r.status, 200, "{id} through {}: {}", via.api, r.text());
        counts.push(r.json()["count"].as_i64().expect("a count"));
    }
    counts
}

fn active(meta: &serde_json::Value) -> u64 {
    meta["actorRuntime"]["activeActors"][0]["count"]
        .as_u64()
        .unwrap_or(0)
}

async fn placed_across_hosts(resolver: &str) {
    let lan = match Lan::new(3) {
        Ok(lan) => lan,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let (caller_host, h1, h2) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    let _redis = redis_on(caller_host).await;
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "store.yaml",
        &format!(
            "kind: Component\nmetadata: {{name: actorstore}}\nspec:\n  type: state.redis\n  \
             version: v1\n  metadata:\n  - {{name: redisHost, value: \"{}:{REDIS_PORT}\"}}\n  \
             - {{name: actorStateStore, value: \"true\"}}\n",
            caller_host.addr
        ),
    );
    let at = |a: Ipv4Addr| format!("{a}:{MESH}");
    // For `dns`: A records for both apps (no SRV: the configured mesh port), TTL 1 s.
    let record =
        |app: &str, a: Ipv4Addr| format!("--host-record={app}.default.svc.cluster.local,{a}");
    let _dns = (resolver == "dns").then(|| {
        caller_host.dnsmasq(&[
            record("caller", caller_host.addr),
            record("counter", h1.addr),
            record("counter", h2.addr),
        ])
    });
    let cfg = match resolver {
        "dns" => config(
            mesh.home(),
            json!({"component": "dns", "configuration": {
                "nameservers": [caller_host.addr.to_string()], "meshPort": MESH,
                "actorHosts": ["counter"],
            }}),
        ),
        "mdns" => config(
            mesh.home(),
            json!({"component": "mdns", "configuration": {"interfaces": ["eth0"]}}),
        ),
        _ => config(
            mesh.home(),
            json!({"component": "static", "configuration": {"apps": {
                "caller": at(caller_host.addr),
                "counter": [
                    {"address": at(h1.addr), "actors": ["Counter"]},
                    {"address": at(h2.addr), "actors": ["Counter"]},
                ],
            }}}),
        ),
    };
    let c1 = sidecar(&mesh, "counter", h1, &cfg, Some(&res)).await;
    let c2 = sidecar(&mesh, "counter", h2, &cfg, Some(&res)).await;
    let caller = sidecar(&mesh, "caller", caller_host, &cfg, None).await;
    let ids: Vec<String> = (0..ACTORS).map(|i| format!("{resolver}-{i}")).collect();

    // The caller hosts nothing: its calls succeed only once it sees the hosts (announced over
    // mDNS, the announcement may take a moment).
    wait_until(
        Duration::from_secs(20),
        "the caller to place a first actor",
        || async {
            let path = format!("/v1.0/actors/Counter/{}/method/get", ids[0]);
            let r = caller.call("POST", &path, "").await.ok()?;
            (r.status == 200).then_some(())
        },
    )
    .await;
    let first = increment_all(&caller, &ids).await;
    assert!(first.iter().all(|c| *c == 1), "{first:?}");
    // Through either host, each actor is the one the caller reached: its count goes on.
    assert!(increment_all(&c1, &ids).await.iter().all(|c| *c == 2));
    assert!(increment_all(&c2, &ids).await.iter().all(|c| *c == 3));
    // Each actor ends active on one host only, and both hosts got some. A host that saw the
    // other late moves the actors it no longer owns, a scan (a second) later: the counts settle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (settled, last) = loop {
        let last = (active(&metadata(&c1).await), active(&metadata(&c2).await));
        if last.0 + last.1 == ACTORS as u64 && last.0 > 0 && last.1 > 0 {
            break (true, last);
        }
        if tokio::time::Instant::now() >= deadline {
            break (false, last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        settled,
        "active on host 1: {}, host 2: {}\nhost 1:\n{}\nhost 2:\n{}",
        last.0,
        last.1,
        c1.log(),
        c2.log()
    );
    // Every claim names its holder at a LAN address the others reach, never at loopback.
    let holders = claim_addresses(caller_host).await;
    assert!(holders.len() >= ACTORS, "{holders:?}");
    let lan = [at(h1.addr), at(h2.addr)];
    assert!(holders.iter().all(|a| lan.contains(a)), "{holders:?}");
}

/// The address each actor claim in the LAN's Redis names its holder at.
async fn claim_addresses(host: &Host) -> Vec<String> {
    let redis = |args: &[&str]| {
        let mut c = host.tokio_command("redis-cli");
        c.args(["-h", &host.addr.to_string(), "-p", &REDIS_PORT.to_string()])
            .args(args);
        c
    };
    let keys = redis(&["--scan", "--pattern", "*||actors||claim||*"])
        .output()
        .await
        .expect("redis-cli --scan");
    let mut out = Vec::new();
    for key in String::from_utf8_lossy(&keys.stdout).lines() {
        let data = redis(&["hget", key, "data"]).output().await.expect("hget");
        let claim: serde_json::Value =
            serde_json::from_slice(&data.stdout).unwrap_or_else(|e| panic!("{key}: {e}"));
        out.push(claim["address"].as_str().unwrap_or_default().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_announces_actor_hosts_and_every_sidecar_places_alike() {
    placed_across_hosts("mdns").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_entries_list_actor_hosts_and_every_sidecar_places_alike() {
    placed_across_hosts("static").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_lists_sidecars_that_say_what_they_host_and_every_sidecar_places_alike() {
    placed_across_hosts("dns").await;
}
