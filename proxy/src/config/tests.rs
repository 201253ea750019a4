use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn args(extra: &[&str]) -> RunArgs {
    let mut v = vec!["outrider", "run"];
    if !extra.contains(&"--app-id") {
        v.extend(["--app-id", "a"]);
    }
    v.extend_from_slice(extra);
    let Command::Run(a) = Cli::try_parse_from(v).unwrap().command else {
        panic!("not run")
    };
    *a
}

fn env() -> Env {
    Env {
        home: Some("/home/u".into()),
        ..Env::default()
    }
}

#[test]
fn defaults_are_valid() {
    let s = load(&args(&[]), &env()).unwrap();
    assert!(
        matches!(s.identity, IdentitySource::DevCa { ref dir } if dir == Path::new("/home/u/.outrider/ca"))
    );
    assert_eq!(s.registry_dir, Path::new("/home/u/.outrider/registry"));
    assert_eq!(
        (&s.resolver, s.balancing),
        (&ResolverConfig::Local, Balancing::RoundRobin)
    );
    assert_eq!(s.workload_cert_ttl, DEFAULT_CERT_TTL);
    let names: Vec<_> = s
        .components
        .iter()
        .map(|c| {
            (
                c.component.metadata.name.as_str(),
                c.component.spec.type_.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("statestore", "state.sqlite"),
            ("pubsub", "pubsub.in-memory")
        ],
        "no resources: the defaults"
    );
}

#[test]
fn reports_every_flag_problem() {
    let a = args(&[
        "--app-id",
        "a.b",
        "--namespace",
        "",
        "--app-protocol",
        "grpcx",
        "--mesh-port",
        "3500",
        "--cert-key",
        "/x",
        "--log-level",
        "chatty",
    ]);
    let errs = load(&a, &Env::default()).unwrap_err().0;
    let at: Vec<_> = errs.iter().map(|p| p.at.as_str()).collect();
    let want = [
        "--app-id",
        "--namespace",
        "--log-level",
        "--app-protocol",
        "--mesh-port",
        "--trust-bundle",
        "--registry-dir",
    ];
    assert_eq!(at, want);
    assert!(errs[0].message.contains("\"a.b\""));
}

#[test]
fn names_file_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "kind: Configuration\nspec:\n  nameResolution:\n    component: consul\n  mtls:\n    workloadCertTTL: soon\n",
    )
    .unwrap();
    let res = dir.path().join("res");
    std::fs::create_dir(&res).unwrap();
    std::fs::write(res.join("store.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.nope\n  version: v1\n---\nkind: Component\nmetadata: {name: x}\nspec: {type: bad}\n").unwrap();
    std::fs::write(res.join("broken.yml"), "kind: [unclosed\n").unwrap();
    std::fs::write(res.join("notes.txt"), "ignored").unwrap();
    let a = args(&[
        "--config",
        cfg.to_str().unwrap(),
        "--resources-path",
        res.to_str().unwrap(),
    ]);
    let errs = load(&a, &env()).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let joined = text.join("\n");
    assert_eq!(errs.len(), 5, "{joined}");
    assert!(
        joined.contains("config.yaml: spec.nameResolution.component: unknown resolver \"consul\""),
        "{joined}"
    );
    assert!(
        joined.contains("config.yaml: spec.mtls.workloadCertTTL: \"soon\""),
        "{joined}"
    );
    assert!(
        joined.contains("store.yaml: spec.type: \"state.nope\""),
        "{joined}"
    );
    assert!(
        joined.contains("store.yaml (document 2): spec.type: \"bad\""),
        "{joined}"
    );
    assert!(joined.contains("broken.yml: not valid YAML"), "{joined}");
}

#[test]
fn components_scoped_to_other_apps_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "kind: Component\nmetadata: {name: s}\nspec: {type: state.nope}\nscopes: [other]\n",
    )
    .unwrap();
    let s = load(
        &args(&["--resources-path", dir.path().to_str().unwrap()]),
        &env(),
    )
    .unwrap();
    assert!(s.components.is_empty());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    for bad in [
        "",
        "h",
        "5x",
        "-1s",
        "4000000000000000h4000000000000000h",
        "99999999999999999999999h",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
}

#[test]
fn the_mesh_transport_comes_from_the_flag_else_the_configuration() {
    use crate::mesh::outbound::transport::MeshTransport;
    assert_eq!(
        load(&args(&[]), &env()).unwrap().mesh_transport,
        MeshTransport::Auto
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "kind: Configuration\nspec:\n  meshTransport: h2\n").unwrap();
    let path = cfg.to_str().unwrap();
    let s = load(&args(&["--config", path]), &env()).unwrap();
    assert_eq!(s.mesh_transport, MeshTransport::H2);
    let s = load(&args(&["--config", path, "--mesh-transport", "H3"]), &env()).unwrap();
    assert_eq!(s.mesh_transport, MeshTransport::H3, "the flag wins");

    let errs = load(&args(&["--mesh-transport", "quic"]), &env())
        .unwrap_err()
        .0;
    assert_eq!(errs[0].at, "--mesh-transport");
    assert!(errs[0].message.contains("\"quic\""), "{}", errs[0]);
    std::fs::write(&cfg, "kind: Configuration\nspec:\n  meshTransport: udp\n").unwrap();
    let errs = load(&args(&["--config", path]), &env()).unwrap_err().0;
    assert!(
        errs[0]
            .to_string()
            .contains("config.yaml: spec.meshTransport: \"udp\""),
        "{}",
        errs[0]
    );
}

#[test]
fn kubernetes_mode_finds_pods_through_dns_unless_the_configuration_says_otherwise() {
    let s = load(&args(&["--mode", "kubernetes"]), &env()).unwrap();
    assert!(
        matches!(s.resolver, ResolverConfig::Dns(_)),
        "{:?}",
        s.resolver
    );
    let s = load(&args(&["--mode", "standalone"]), &env()).unwrap();
    assert_eq!(s.resolver, ResolverConfig::Local);
    assert!(Cli::try_parse_from(["outrider", "run", "--app-id", "a", "--mode", "cloud"]).is_err());
}

#[test]
fn the_ca_service_needs_its_anchors_and_is_the_only_source() {
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("bundle.pem");
    std::fs::write(&anchors, "x").unwrap();
    let a = anchors.to_str().unwrap();
    let s = load(
        &args(&["--sentry-address", "ca:50001", "--trust-anchors", a]),
        &env(),
    )
    .unwrap();
    let IdentitySource::CaService(cfg) = &s.identity else {
        panic!("{:?}", s.identity)
    };
    assert_eq!(
        (cfg.address.as_str(), cfg.namespace.as_str()),
        ("ca:50001", "default")
    );
    assert!(matches!(cfg.token, JoinToken::None));
    let with_token = Env {
        ca_token: Some("ojt1.x".into()),
        ..env()
    };
    let s = load(
        &args(&["--ca-address", "ca:50001", "--trust-anchors", a]),
        &with_token,
    )
    .unwrap();
    assert!(
        matches!(&s.identity, IdentitySource::CaService(c) if matches!(c.token, JoinToken::Value(_)))
    );
    for (flags, says) in [
        (vec!["--sentry-address", "ca:50001"], "--trust-anchors"),
        (
            vec!["--sentry-address", "ca", "--trust-anchors", a],
            "not host:port",
        ),
        (
            vec![
                "--sentry-address",
                "ca:1",
                "--trust-anchors",
                a,
                "--ca-dir",
                "/x",
            ],
            "one source only",
        ),
        (vec!["--trust-anchors", a], "go with --sentry-address"),
    ] {
        let problems = load(&args(&flags), &env()).unwrap_err().to_string();
        assert!(problems.contains(says), "{flags:?}: {problems}");
    }
}

/// A resources directory holding `middleware`, and a Configuration file written for each load.
struct PipelineFixture {
    dir: tempfile::TempDir,
}

impl PipelineFixture {
    fn new(middleware: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("res")).unwrap();
        std::fs::write(dir.path().join("res/mw.yaml"), middleware).unwrap();
        Self { dir }
    }

    /// Loads with the Configuration `config` and `flags`.
    fn load(&self, config: &str, flags: &[&str]) -> Result<Settings, Problems> {
        let file = self.dir.path().join("config.yaml");
        std::fs::write(&file, config).unwrap();
        let res = self.dir.path().join("res");
        let mut all = vec![
            "--resources-path",
            res.to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
        ];
        all.extend_from_slice(flags);
        load(&args(&all), &env())
    }
}

#[test]
fn the_http_pipeline_names_loaded_middleware_of_its_type() {
    let fixture = PipelineFixture::new(
        "kind: Component\nmetadata: {name: limit}\nspec: {type: middleware.http.ratelimit, version: v1}\n---\nkind: Component\nmetadata: {name: spare}\nspec: {type: middleware.http.ratelimit}\n",
    );
    let load_with = |handlers: &str| {
        let config =
            format!("kind: Configuration\nspec:\n  httpPipeline:\n    handlers:\n{handlers}");
        fixture.load(&config, &[])
    };
    let s = load_with("    - {name: limit, type: middleware.http.ratelimit}\n").unwrap();
    assert_eq!(s.http_pipeline.len(), 1);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.message.contains("\"spare\" is in no Configuration")),
        "{:?}",
        s.warnings
    );
    let err = load_with("    - {name: limit, type: middleware.http.bearer}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("handlers[0].type: \"middleware.http.bearer\", but the component \"limit\""),
        "{err}"
    );
    let err = load_with("    - {name: nope, type: middleware.http.bearer}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("handlers[0].name: \"nope\": no middleware component"),
        "{err}"
    );
}

#[test]
fn the_app_http_pipeline_is_resolved_as_the_api_one_is() {
    let fixture = PipelineFixture::new(
        "kind: Component\nmetadata: {name: limit}\nspec: {type: middleware.http.ratelimit}\n---\nkind: Component\nmetadata: {name: api-limit}\nspec: {type: middleware.http.ratelimit}\n",
    );
    let load_with = |app_handlers: &str, protocol: &str| {
        let config = format!(
            "kind: Configuration\nspec:\n  httpPipeline:\n    handlers:\n    - {{name: api-limit, type: middleware.http.ratelimit}}\n  appHttpPipeline:\n    handlers:\n{app_handlers}"
        );
        fixture.load(&config, &["--app-protocol", protocol])
    };
    let s = load_with(
        "    - {name: limit, type: middleware.http.ratelimit}\n",
        "http",
    )
    .unwrap();
    assert_eq!((s.http_pipeline.len(), s.app_http_pipeline.len()), (1, 1));
    // Each named by one pipeline: neither is unused; an HTTP app gets no warning.
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let s = load_with(
        "    - {name: limit, type: middleware.http.ratelimit}\n",
        "grpc",
    )
    .unwrap();
    assert!(
        s.warnings
            .iter()
            .any(|w| w.at.ends_with("spec.appHttpPipeline")
                && w.message.contains("the app speaks gRPC")),
        "{:?}",
        s.warnings
    );
    let err = load_with(
        "    - {name: nope, type: middleware.http.ratelimit}\n",
        "http",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("spec.appHttpPipeline.handlers[0].name: \"nope\": no middleware component")
            && err.contains("calls to the app would go without it"),
        "{err}"
    );
}
