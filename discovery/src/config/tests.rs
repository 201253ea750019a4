use super::*;
use serde_json::json;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn nr(component: &str, configuration: serde_json::Value) -> NameResolution {
    NameResolution {
        component: component.into(),
        version: "v1".into(),
        configuration,
    }
}

#[test]
fn defaults_to_local() {
    let local = Resolution {
        resolver: ResolverConfig::Local,
        balancing: Balancing::RoundRobin,
    };
    assert_eq!(
        NameResolution::default().validate("default"),
        Ok(local.clone())
    );
    assert_eq!(nr("Local", json!(null)).validate("default"), Ok(local));
}

#[test]
fn static_inline_with_namespaces() {
    let cfg = nr(
        "static",
        json!({"apps": {"b": ["127.0.0.1:1", "127.0.0.1:2"], "c.prod": "[::1]:3"}}),
    );
    let ResolverConfig::Static(map, _) = cfg.validate("dev").unwrap().resolver else {
        panic!()
    };
    assert_eq!(map[&Target::new("b", "dev")].len(), 2);
    assert_eq!(
        map[&Target::new("c", "prod")],
        vec![(addr("[::1]:3"), Transports::H2)]
    );
}

#[test]
fn static_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpoints.yaml");
    let yaml = "b:\n  - 127.0.0.1:7\n  - address: 127.0.0.1:8\n    transports: [h2, h3]\n";
    std::fs::write(&path, yaml).unwrap();
    let cfg = nr("static", json!({"file": path}));
    let ResolverConfig::Static(map, _) = cfg.validate("default").unwrap().resolver else {
        panic!()
    };
    assert_eq!(
        map[&Target::new("b", "default")],
        vec![
            (addr("127.0.0.1:7"), Transports::H2),
            (addr("127.0.0.1:8"), Transports::H2_H3)
        ]
    );
}

#[test]
fn reports_every_problem_with_its_field() {
    let cfg = nr(
        "static",
        json!({"apps": {"b": ["nope", "127.0.0.1:1", 5], "a.b.c": ["127.0.0.1:1"]}}),
    );
    let errs = cfg.validate("default").unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.nameResolution.configuration.apps.a.b.c",
            "spec.nameResolution.configuration.apps.b[0]",
            "spec.nameResolution.configuration.apps.b[2]"
        ]
    );
    assert!(errs[1].message.contains("\"nope\""));
}

#[test]
fn static_addresses_may_offer_h3() {
    let cfg = nr(
        "static",
        json!({"apps": {"b": [
            "10.0.0.1:50002",
            {"address": "10.0.0.2:50002", "transports": ["h2", "h3"]},
            {"address": "10.0.0.3:50002", "transports": "h2,h3"},
            {"address": "10.0.0.4:50002", "transports": ["h2"]},
            {"address": "10.0.0.5:50002"}
        ], "c": {"address": "10.0.0.6:50002", "transports": "h3"}}}),
    );
    let ResolverConfig::Static(map, _) = cfg.validate("default").unwrap().resolver else {
        panic!()
    };
    let h3: Vec<bool> = map[&Target::new("b", "default")]
        .iter()
        .map(|(_, t)| t.h3)
        .collect();
    assert_eq!(h3, [false, true, true, false, false]);
    assert_eq!(
        map[&Target::new("c", "default")],
        [(addr("10.0.0.6:50002"), Transports::H2_H3)]
    );
}

#[test]
fn static_address_maps_report_every_problem() {
    let cfg = nr(
        "static",
        json!({"apps": {"b": [
            "10.0.0.1:50002",
            {"address": "10.0.0.2:50002", "transports": ["h2", "h4"]},
            {"address": "nope", "transports": "h2,"},
            {"addr": "10.0.0.4:50002"},
            {"address": "10.0.0.5:50002", "transports": [3]}
        ]}}),
    );
    let errs = cfg.validate("default").unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.nameResolution.configuration.apps.b[1].transports",
            "spec.nameResolution.configuration.apps.b[2].address",
            "spec.nameResolution.configuration.apps.b[2].transports",
            "spec.nameResolution.configuration.apps.b[3].addr",
            "spec.nameResolution.configuration.apps.b[3].address",
            "spec.nameResolution.configuration.apps.b[4].transports"
        ]
    );
    assert!(errs[0].message.contains("\"h4\""), "{errs:?}");
    assert!(errs[1].message.contains("\"nope\""), "{errs:?}");
    assert!(errs[2].message.contains("empty"), "{errs:?}");
    assert!(errs[3].message.contains("\"addr\""), "{errs:?}");
}

#[test]
fn unknown_components_are_errors() {
    for c in ["consul", "kubernetes"] {
        let e = nr(c, json!(null)).validate("default").unwrap_err();
        assert_eq!(e[0].field, "spec.nameResolution.component");
        assert!(e[0].message.contains(c), "{e:?}");
    }
    assert!(nr("static", json!({})).validate("default").is_err());
    let e = nr("Consul", json!(null)).validate("default").unwrap_err();
    assert!(
        e[0].message.contains("\"Consul\""),
        "the value as written: {e:?}"
    );
}

#[test]
fn misspelled_settings_are_errors_for_every_resolver() {
    for (component, cfg) in [
        ("local", json!({"loadBalance": "p2c"})),
        ("static", json!({"apps": {}, "loadBalance": "p2c"})),
    ] {
        let e = nr(component, cfg).validate("default").unwrap_err();
        assert_eq!(
            e[0].field, "spec.nameResolution.configuration.loadBalance",
            "{component}: {e:?}"
        );
    }
    let e = nr("dns", json!({"template": "{appId}.{ns}.svc"}))
        .validate("default")
        .unwrap_err();
    assert_eq!(e[0].field, "spec.nameResolution.configuration.template");
    assert!(e[0].message.contains("{ns}"), "{e:?}");
}

#[test]
fn mdns_settings() {
    let r = nr(
        "mdns",
        json!({"interfaces": ["lo"], "port": 5399, "loadBalancing": "p2c"}),
    )
    .validate("default")
    .unwrap();
    assert_eq!(
        r.resolver,
        ResolverConfig::Mdns(MdnsConfig {
            interfaces: vec!["lo".into()],
            port: 5399
        })
    );
    assert_eq!(r.balancing, Balancing::P2cPeakEwma);
    assert_eq!(
        nr("mdns", json!(null)).validate("x").unwrap().resolver,
        ResolverConfig::Mdns(MdnsConfig::default())
    );
    let errs = nr(
        "mdns",
        json!({"interfaces": ["", "nosuch0"], "port": 70000, "ttl": 3, "loadBalancing": "random"}),
    )
    .validate("default")
    .unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.nameResolution.configuration.loadBalancing",
            "spec.nameResolution.configuration.ttl",
            "spec.nameResolution.configuration.interfaces[0]",
            "spec.nameResolution.configuration.interfaces[1]",
            "spec.nameResolution.configuration.port"
        ]
    );
    assert!(errs[0].message.contains("\"random\""), "{errs:?}");
    assert!(
        errs[3].message.contains("no interface \"nosuch0\""),
        "{errs:?}"
    );
    assert!(errs[4].message.contains("70000"), "{errs:?}");
}

#[test]
fn dns_settings_and_names() {
    let r = nr(
        "dns",
        json!({"nameservers": ["10.0.0.10", "127.0.0.1:5353"], "srv": "", "meshPort": 4000, "clusterDomain": "corp"}),
    )
    .validate("default")
    .unwrap();
    let ResolverConfig::Dns(dns) = r.resolver else {
        panic!("{r:?}")
    };
    assert_eq!(
        dns.nameservers,
        [
            "10.0.0.10:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        ]
    );
    assert_eq!((dns.srv.as_deref(), dns.mesh_port), (None, 4000));
    assert_eq!(dns.srv_udp.as_deref(), Some("_mesh._udp"));
    assert_eq!(dns.name_of(&Target::new("b", "prod")), "b.prod.svc.corp.");
    assert!(
        dns.actor_hosts.is_empty(),
        "no actor host apps unless named"
    );
    let d = DnsConfig::default();
    assert_eq!(
        (
            d.srv.as_deref(),
            d.name_of(&Target::new("b", "default")).as_str()
        ),
        (Some("_mesh._tcp"), "b.default.svc.cluster.local.")
    );
    let udp = |v: serde_json::Value| {
        nr("dns", json!({ "srvUdp": v }))
            .validate("d")
            .map(|r| r.resolver)
    };
    let off = udp(json!("")).unwrap();
    assert!(matches!(off, ResolverConfig::Dns(d) if d.srv_udp.is_none()));
    let own = udp(json!("_quic._udp.")).unwrap();
    assert!(matches!(own, ResolverConfig::Dns(d) if d.srv_udp.as_deref() == Some("_quic._udp")));
    let bad = udp(json!(5)).unwrap_err();
    assert_eq!(bad[0].field, "spec.nameResolution.configuration.srvUdp");
    assert!(bad[0].message.contains('5'), "{bad:?}");
    let errs = nr(
        "dns",
        json!({"nameservers": ["dns.example"], "template": "{namespace}.x"}),
    )
    .validate("d")
    .unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.nameResolution.configuration.template",
            "spec.nameResolution.configuration.nameservers[0]"
        ]
    );
}

#[test]
fn dns_actor_hosts_are_app_ids_of_the_namespace() {
    let hosts = |v: serde_json::Value| {
        nr("dns", json!({ "actorHosts": v }))
            .validate("d")
            .map(|r| match r.resolver {
                ResolverConfig::Dns(d) => d.actor_hosts,
                other => panic!("{other:?}"),
            })
    };
    assert_eq!(
        hosts(json!(["counter", "shop", "counter"])).unwrap(),
        ["counter", "shop"]
    );
    let errs = hosts(json!(["ok", "a.b", "", 7, "x y"])).unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    let f = "spec.nameResolution.configuration.actorHosts";
    assert_eq!(
        fields,
        [
            format!("{f}[1]"),
            format!("{f}[2]"),
            format!("{f}[3]"),
            format!("{f}[4]")
        ]
    );
    assert!(errs[0].message.contains("\"a.b\""), "{errs:?}");
    let one = hosts(json!("counter")).unwrap_err();
    assert_eq!(one[0].field, f);
    assert!(one[0].message.contains("\"counter\""), "{one:?}");
}

#[test]
fn static_addresses_may_list_actor_types() {
    let cfg = nr(
        "static",
        json!({"apps": {"b": [
            {"address": "10.0.0.1:50002", "actors": ["Counter", "Timer"]},
            "10.0.0.2:50002"
        ], "c.prod": {"address": "10.0.0.3:50002", "actors": []}}}),
    );
    let ResolverConfig::Static(map, actors) = cfg.validate("default").unwrap().resolver else {
        panic!()
    };
    assert_eq!(map[&Target::new("b", "default")].len(), 2);
    let b1 = (Target::new("b", "default"), addr("10.0.0.1:50002"));
    assert_eq!(actors.len(), 1, "only entries that list types: {actors:?}");
    assert_eq!(actors[&b1], ["Counter", "Timer"]);

    let bad = nr(
        "static",
        json!({"apps": {"b": [
            {"address": "10.0.0.1:50002", "actors": "Counter"},
            {"address": "10.0.0.2:50002", "actors": ["a||b"]},
            {"address": "10.0.0.3:50002", "actors": [""]}
        ]}}),
    );
    let errs = bad.validate("default").unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.nameResolution.configuration.apps.b[0].actors",
            "spec.nameResolution.configuration.apps.b[1].actors",
            "spec.nameResolution.configuration.apps.b[2].actors"
        ]
    );
    assert!(
        errs[0].message.contains("\"Counter\""),
        "{}",
        errs[0].message
    );
}
