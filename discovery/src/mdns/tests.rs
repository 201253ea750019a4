use super::*;
use mdns_sd::ResolvedService;

#[test]
fn prefers_ipv4_and_skips_link_local() {
    let addrs =
        ["fe80::1", "2001:db8::1", "10.0.0.9", "10.0.0.3"].map(|a| a.parse::<IpAddr>().unwrap());
    assert_eq!(
        pick_address(addrs.into_iter()),
        Some("10.0.0.3".parse().unwrap())
    );
    let v6 = ["fe80::1", "2001:db8::1"].map(|a| a.parse::<IpAddr>().unwrap());
    assert_eq!(
        pick_address(v6.into_iter()),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(pick_address(["fe80::1".parse().unwrap()].into_iter()), None);
}

/// An answer as the daemon hands it over, with TXT entries `txt`.
fn answer(txt: &[(&str, &str)]) -> ResolvedService {
    ServiceInfo::new(
        SERVICE_TYPE,
        "b",
        "outrider-1.local.",
        "10.0.0.3",
        4711,
        txt,
    )
    .expect("service info")
    .as_resolved_service()
}

#[test]
fn answers_say_whether_they_offer_h3() {
    let base = [
        (TXT_APP_ID, "b"),
        (TXT_NAMESPACE, "test"),
        (TXT_MESH_PORT, "4711"),
    ];
    let addr: SocketAddr = "10.0.0.3:4711".parse().unwrap();
    let target = Target::new("b", "test");
    let instance = |transports, actors: &[&str]| Instance {
        target: target.clone(),
        addr,
        transports,
        actors: actors.iter().map(|a| (*a).to_owned()).collect(),
        admin_port: None,
    };
    assert_eq!(
        endpoint_of(&answer(&base)),
        Some(instance(Transports::H2, &[])),
        "no TXT transports: h2 only"
    );
    for (value, want) in [
        ("h2", Transports::H2),
        ("h2,h3", Transports::H2_H3),
        ("h3,h9", Transports::H2_H3),
        ("", Transports::H2),
    ] {
        let mut txt = base.to_vec();
        txt.push((TXT_TRANSPORTS, value));
        assert_eq!(
            endpoint_of(&answer(&txt)),
            Some(instance(want, &[])),
            "transports={value}"
        );
    }
    for (value, want) in [
        ("Counter", &["Counter"][..]),
        ("Counter, Timer,,", &["Counter", "Timer"][..]),
        ("", &[][..]),
    ] {
        let mut txt = base.to_vec();
        txt.push((TXT_ACTORS, value));
        assert_eq!(
            endpoint_of(&answer(&txt)),
            Some(instance(Transports::H2, want)),
            "actors={value}"
        );
    }
    assert_eq!(endpoint_of(&answer(&base[1..])), None, "no app id");
}

/// Two resolvers in a network namespace of their own (the daemon joins the mDNS group on
/// every interface it sees when it starts, so this must not run in the machine's own).
#[test]
fn finds_an_announced_sidecar_and_drops_it_on_goodbye() {
    let in_netns = std::thread::spawn(|| {
        // The namespace is this thread's, and the daemon's thread inherits it.
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            return Err(format!("unshare(CLONE_NEWNET): {e}"));
        }
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        if !up.as_ref().is_ok_and(|s| s.success()) {
            return Err(format!("ip link set lo up: {up:?}"));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(goodbye_scenario());
        Ok(())
    });
    match in_netns.join() {
        Ok(Ok(())) => {}
        Ok(Err(why)) => eprintln!("SKIPPED: needs a private network namespace: {why}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn goodbye_scenario() {
    let cfg = MdnsConfig {
        interfaces: vec!["lo".into()],
        port: 5353,
    };
    let me = Announcement {
        app_id: "b".into(),
        namespace: "test".into(),
        mesh_port: 4711,
        transports: Transports::H2_H3,
        admin_port: Some(4712),
    };
    let b = MdnsResolver::start(&cfg, Some(&me)).expect("b");
    let a = MdnsResolver::start(&cfg, None).expect("a");
    let mut rx = a.resolve(&Target::new("b", "test"));
    let found = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| !s.is_empty())).await;
    let set = found
        .expect("no answer in 10 s")
        .expect("resolver alive")
        .clone();
    let addr = SocketAddr::from(([127, 0, 0, 1], 4711));
    assert_eq!(set.addrs, vec![addr]);
    assert!(set.offers_h3(addr), "TXT transports=h2,h3 was not read");
    let peers = a.peers();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(
        (&peers[0].target, peers[0].address, peers[0].admin_port),
        (&Target::new("b", "test"), addr, Some(4712)),
        "TXT admin-port was not read"
    );
    assert!(
        a.resolve(&Target::new("b", "other")).borrow().is_empty(),
        "namespaces are apart"
    );
    // Actor types announced later reach the peer: placement hashes over the hosts it lists.
    assert!(a.actor_hosts("test", "Counter").is_empty());
    let types = vec!["Counter".to_owned(), "Timer".to_owned()];
    assert!(b.announce_actors(&types).expect("announce actors"));
    let want = vec![(Target::new("b", "test"), addr)];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.actor_hosts("test", "Timer") != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the actor types never reached the peer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.actor_hosts("test", "Counter"), want);
    assert!(
        a.actor_hosts("other", "Counter").is_empty(),
        "namespaces are apart"
    );
    assert!(a.actor_hosts("test", "Nope").is_empty());
    let too_many: Vec<String> = (0..40).map(|i| format!("ActorType{i}")).collect();
    let e = b.announce_actors(&too_many).expect_err("over 255 bytes");
    assert!(e.to_string().contains("at most 255"), "{e}");
    b.withdraw().await;
    let gone = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.is_empty())).await;
    assert!(gone.is_ok(), "the goodbye did not remove the endpoint");
}
