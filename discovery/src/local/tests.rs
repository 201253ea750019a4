use super::*;

fn entry(app: &str, port: u16, pid: u32) -> Entry {
    let started = Entry::start_time_of(pid);
    Entry {
        app_id: app.into(),
        namespace: "default".into(),
        address: ([127, 0, 0, 1], port).into(),
        transports: Transports::H2,
        pid,
        started,
        actor_types: Vec::new(),
        ports: Ports::default(),
        started_at: 0,
    }
}

async fn wait_for(rx: &mut watch::Receiver<Arc<EndpointSet>>, ports: &[u16]) {
    let want: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let done = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.addrs == want))
        .await
        .is_ok();
    assert!(
        done,
        "endpoints never became {want:?}, last {:?}",
        rx.borrow().addrs
    );
}

#[tokio::test]
async fn follows_registrations_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let r = LocalResolver::start(dir.path().to_owned()).unwrap();
    let mut rx = r.resolve(&Target::new("b", "default"));
    assert!(rx.borrow().is_empty());
    let me = std::process::id();
    let one = Registration::create(dir.path(), &entry("b", 1001, me)).unwrap();
    wait_for(&mut rx, &[1001]).await;
    let two = Registration::create(dir.path(), &entry("b", 1002, me)).unwrap();
    let _other = Registration::create(dir.path(), &entry("c", 1003, me)).unwrap();
    wait_for(&mut rx, &[1001, 1002]).await;
    one.remove();
    wait_for(&mut rx, &[1002]).await;
    drop(two);
    wait_for(&mut rx, &[]).await;
}

#[tokio::test]
async fn actor_hosts_follow_what_entries_announce() {
    let dir = tempfile::tempdir().unwrap();
    let r = LocalResolver::start(dir.path().to_owned()).unwrap();
    let me = std::process::id();
    let mut first = entry("b", 1001, me);
    let one = Registration::create(dir.path(), &first).unwrap();
    let mut other_ns = entry("b", 1002, me);
    other_ns.namespace = "prod".into();
    other_ns.actor_types = vec!["Counter".into()];
    let _two = Registration::create(dir.path(), &other_ns).unwrap();
    let hosts = |t: &str| r.actor_hosts("default", t);
    let wait = |want: Vec<u16>| {
        let hosts = &hosts;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let got: Vec<u16> = hosts("Counter").iter().map(|(_, a)| a.port()).collect();
                if got == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "hosts stayed {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Announced in another namespace only: none here.
    wait(vec![]).await;
    first.actor_types = vec!["Counter".into(), "Timer".into()];
    one.update(&first).unwrap();
    wait(vec![1001]).await;
    assert_eq!(hosts("Timer").len(), 1);
    assert_eq!(r.actor_hosts("prod", "Counter").len(), 1);
    // An update replaces the entry: still one endpoint for the app.
    assert_eq!(
        r.resolve(&Target::new("b", "default")).borrow().addrs.len(),
        1
    );
    drop(one);
    wait(vec![]).await;
}

#[tokio::test]
async fn targets_nobody_follows_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let r = LocalResolver::start(dir.path().to_owned()).unwrap();
    let kept = r.resolve(&Target::new("kept", "default"));
    for i in 0..100 {
        drop(r.resolve(&Target::new(format!("random-{i}"), "default")));
    }
    publish(&r.state, Found::default());
    let st = r.state.lock().unwrap();
    assert_eq!(
        st.senders
            .keys()
            .map(|t| t.app_id.as_str())
            .collect::<Vec<_>>(),
        ["kept"]
    );
    drop(kept);
}

#[tokio::test]
async fn ignores_and_sweeps_entries_of_dead_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = Registration::create(dir.path(), &entry("b", 2001, dead)).unwrap();
    let stale_path = stale.path().to_owned();
    std::mem::forget(stale); // as if its sidecar had been killed
    let _live = Registration::create(dir.path(), &entry("b", 2002, std::process::id())).unwrap();
    let r = LocalResolver::start(dir.path().to_owned()).unwrap();
    let mut rx = r.resolve(&Target::new("b", "default"));
    wait_for(&mut rx, &[2002]).await;
    assert!(!stale_path.exists(), "stale entry was not swept");
}

#[tokio::test]
async fn entries_say_whether_they_offer_h3() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let mut quic = entry("b", 3001, me);
    quic.transports = Transports::H2_H3;
    assert_eq!(
        serde_json::to_value(&quic).unwrap()["transports"],
        serde_json::json!(["h2", "h3"])
    );
    let _quic = Registration::create(dir.path(), &quic).unwrap();
    // As written by a sidecar that predates transports.
    let old = serde_json::json!({
        "appId": "b",
        "namespace": "default",
        "address": "127.0.0.1:3002",
        "pid": me,
        "started": Entry::start_time_of(me),
    })
    .to_string();
    assert_eq!(
        serde_json::from_str::<Entry>(&old).unwrap().transports,
        Transports::H2
    );
    fs::write(dir.path().join("default~b~old~3002.json"), old).unwrap();
    let r = LocalResolver::start(dir.path().to_owned()).unwrap();
    let mut rx = r.resolve(&Target::new("b", "default"));
    wait_for(&mut rx, &[3001, 3002]).await;
    let set = rx.borrow().clone();
    assert!(set.offers_h3(([127, 0, 0, 1], 3001).into()));
    assert!(!set.offers_h3(([127, 0, 0, 1], 3002).into()));
}

#[test]
fn a_reused_pid_does_not_revive_an_entry() {
    let me = std::process::id();
    let mut e = entry("b", 1, me);
    assert!(e.started > 0 && alive(&e));
    e.started += 1; // as if written by an earlier process with the same pid
    assert!(!alive(&e));
    e.started = 0; // entries without a start time fall back to the pid alone
    assert!(alive(&e));
}

#[test]
fn zombies_are_dead() {
    let child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Not reaped yet: a zombie once it exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) {
        assert!(std::time::Instant::now() < deadline, "child never exited");
        std::thread::yield_now();
    }
    assert!(
        fs::metadata(format!("/proc/{pid}")).is_ok(),
        "zombie should still have /proc entry"
    );
    assert!(pid_alive(std::process::id()));
    drop(child);
}

#[test]
fn reading_entries_does_not_wake_the_watcher() {
    use notify::event::{AccessKind, AccessMode, CreateKind, Event, EventKind};
    let access = Event::new(EventKind::Access(AccessKind::Close(AccessMode::Read)));
    assert!(!wakes(&Ok(access)));
    assert!(!wakes(&Ok(Event::new(EventKind::Access(
        AccessKind::Open(AccessMode::Any)
    )))));
    assert!(wakes(&Ok(Event::new(EventKind::Create(CreateKind::File)))));
    assert!(
        wakes(&Err(notify::Error::generic("overflow"))),
        "an error may hide a change"
    );
}

#[tokio::test]
async fn peers_and_live_entries_carry_the_ports() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let mut with_ports = entry("b", 1001, me);
    with_ports.ports = Ports {
        http: Some(3500),
        grpc: Some(50001),
        admin: Some(9090),
        app: Some(7001),
    };
    with_ports.started_at = 1_700_000_000;
    let _b = Registration::create(dir.path(), &with_ports).unwrap();
    // An entry of an older version: none of the new fields.
    let old = r#"{"appId":"c","namespace":"default","address":"127.0.0.1:1002","pid":PID}"#
        .replace("PID", &me.to_string());
    fs::write(dir.path().join("default~c~old.json"), old).unwrap();
    let mut dead = entry("d", 1003, me);
    dead.started += 1;
    let _d = Registration::create(dir.path(), &dead).unwrap();

    let mut live = live_entries(dir.path(), false);
    live.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(live[0], with_ports);
    assert_eq!((live[1].ports, live[1].started_at), (Ports::default(), 0));
    assert!(
        dir.path().join(dead.file_name()).exists(),
        "reading without sweeping removed nothing"
    );

    let r = LocalResolver::start(dir.path().to_owned()).unwrap();
    let peers = r.peers();
    let seen: Vec<_> = peers
        .iter()
        .map(|p| (p.target.app_id.as_str(), p.admin_port))
        .collect();
    assert_eq!(seen, [("b", Some(9090)), ("c", None)]);
}
