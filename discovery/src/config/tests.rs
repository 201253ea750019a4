use super::*;
use serde_json::json;

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
    let ResolverConfig::Static(map) = cfg.validate("dev").unwrap().resolver else {
        panic!()
    };
    assert_eq!(map[&Target::new("b", "dev")].len(), 2);
    assert_eq!(
        map[&Target::new("c", "prod")],
        vec!["[::1]:3".parse().unwrap()]
    );
}

#[test]
fn static_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpoints.yaml");
    std::fs::write(&path, "b:\n  - 127.0.0.1:7\n").unwrap();
    let cfg = nr("static", json!({"file": path}));
    let ResolverConfig::Static(map) = cfg.validate("default").unwrap().resolver else {
        panic!()
    };
    assert_eq!(
        map[&Target::new("b", "default")],
        vec!["127.0.0.1:7".parse().unwrap()]
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
    assert_eq!(dns.name_of(&Target::new("b", "prod")), "b.prod.svc.corp.");
    let d = DnsConfig::default();
    assert_eq!(
        (
            d.srv.as_deref(),
            d.name_of(&Target::new("b", "default")).as_str()
        ),
        (Some("_mesh._tcp"), "b.default.svc.cluster.local.")
    );
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
