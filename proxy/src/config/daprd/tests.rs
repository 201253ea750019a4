//! Every daprd flag `outrider run` takes: each parses with daprd's syntax and then works, is
//! noted with a warning, or is refused with the reason.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, Env, RunArgs};
use crate::config::{AllowedOrigins, Settings, load};

fn parse(extra: &[&str]) -> Result<RunArgs, String> {
    let mut v = vec!["outrider", "run"];
    if !extra.contains(&"--app-id") {
        v.extend(["--app-id", "a"]);
    }
    v.extend_from_slice(extra);
    match Cli::try_parse_from(v).map_err(|e| e.to_string())?.command {
        Command::Run(a) => Ok(*a),
        _ => Err("not run".into()),
    }
}

fn settings(extra: &[&str]) -> Result<Settings, String> {
    let env = Env {
        home: Some("/home/u".into()),
        ..Env::default()
    };
    load(&parse(extra)?, &env).map_err(|p| p.to_string())
}

/// What a flag does once given.
enum Outcome {
    /// Taken, and this holds of the settings.
    Works(fn(&Settings) -> bool),
    /// Taken, with a warning at this flag saying this.
    Warns(&'static str, &'static str),
    /// Refused, naming this flag and saying this.
    Refused(&'static str, &'static str),
}
use Outcome::{Refused, Warns, Works};

#[test]
fn every_daprd_flag_works_warns_or_is_refused() {
    let table: Vec<(&[&str], Outcome)> = vec![
        (
            &["--dapr-http-port", "3600"],
            Works(|s| s.listen.api.port() == 3600),
        ),
        (
            &["--dapr-grpc-port", "50101"],
            Works(|s| s.listen.grpc.port() == 50101),
        ),
        (
            &["--dapr-listen-addresses", "0.0.0.0"],
            Works(|s| s.listen.api.ip().is_unspecified() && s.listen.api_more.is_empty()),
        ),
        (
            &["--dapr-listen-addresses", "localhost,[::1]"],
            Works(|s| {
                s.listen.grpc.ip().is_loopback()
                    && s.listen.api_more == [IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])]
            }),
        ),
        (
            &["--dapr-listen-addresses", "nowhere"],
            Refused("--dapr-listen-addresses", "not an IP address"),
        ),
        (
            &["--dapr-public-port", "3501"],
            Works(|s| s.listen.public == Some(SocketAddr::from(([0, 0, 0, 0], 3501)))),
        ),
        (
            &[
                "--dapr-public-port",
                "3501",
                "--dapr-public-listen-address",
                "127.0.0.1",
            ],
            Works(|s| s.listen.public == Some(SocketAddr::from(([127, 0, 0, 1], 3501)))),
        ),
        (
            &["--dapr-internal-grpc-port", "50102"],
            Works(|s| s.listen.mesh.port() == 50102),
        ),
        (
            &["--dapr-internal-grpc-listen-address", "127.0.0.1"],
            Works(|s| s.listen.mesh.ip().is_loopback()),
        ),
        (&["--app-port", "0"], Works(|s| s.app_port.is_none())),
        (&["--app-port", "7001"], Works(|s| s.app_port == Some(7001))),
        (
            &["--app-protocol", "grpc"],
            Works(|s| s.app_protocol.name() == "grpc"),
        ),
        (
            &["--app-protocol", "HTTP"],
            Works(|s| s.app_protocol.name() == "http"),
        ),
        (
            &["--app-channel-address", "10.0.0.5"],
            Works(|s| s.app_channel_address == "10.0.0.5"),
        ),
        (
            &["--metrics-port", "9191"],
            Works(|s| s.listen.admin.port() == 9191),
        ),
        (
            &["--metrics-listen-address", "127.0.0.1"],
            Works(|s| s.listen.admin.ip().is_loopback()),
        ),
        (
            &["--enable-metrics=false"],
            Works(|s| !s.daprd.enable_metrics),
        ),
        (&["--enable-metrics"], Works(|s| s.daprd.enable_metrics)),
        (
            &["--mode", "kubernetes"],
            Works(|s| matches!(s.resolver, outrider_discovery::ResolverConfig::Dns(_))),
        ),
        (&["--log-level", "fatal"], Works(|_| true)),
        (&["--log-as-json"], Works(|_| true)),
        (&["--log-as-json=false"], Works(|_| true)),
        (&["--enable-api-logging"], Works(|s| s.access_log.enabled)),
        (
            &["--enable-api-logging=false"],
            Works(|s| !s.access_log.enabled),
        ),
        (
            &["--max-body-size", "8Mi"],
            Works(|s| s.max_body_size == 8 << 20),
        ),
        (
            &["--dapr-http-max-request-size", "16"],
            Works(|s| s.max_body_size == 16 << 20),
        ),
        (
            &[
                "--max-body-size",
                "2Mi",
                "--dapr-http-max-request-size",
                "16",
            ],
            Works(|s| s.max_body_size == 2 << 20),
        ),
        (
            &["--dapr-http-max-request-size", "-1"],
            Refused("--dapr-http-max-request-size", "unlimited"),
        ),
        (
            &["--read-buffer-size", "4Ki"],
            Works(|s| s.warnings.is_empty()),
        ),
        (
            &["--dapr-http-read-buffer-size", "4"],
            Works(|s| s.warnings.is_empty()),
        ),
        (
            &["--read-buffer-size", "1Mi"],
            Warns("--read-buffer-size", "64 KiB"),
        ),
        (
            &["--dapr-graceful-shutdown-seconds", "9"],
            Works(|s| s.grace == Duration::from_secs(9)),
        ),
        (
            &["--dapr-block-shutdown-duration", "30s"],
            Works(|s| s.daprd.block_shutdown == Some(Duration::from_secs(30))),
        ),
        (
            &["--dapr-block-shutdown-duration", "soon"],
            Refused("--dapr-block-shutdown-duration", "not a duration"),
        ),
        (
            &["--app-max-concurrency", "-1"],
            Works(|s| s.daprd.app_max_concurrency.is_none()),
        ),
        (
            &["--app-max-concurrency", "2"],
            Works(|s| s.daprd.app_max_concurrency == Some(2)),
        ),
        (
            &[
                "--app-port",
                "7001",
                "--enable-app-health-check",
                "--app-health-check-path",
                "health",
                "--app-health-probe-interval",
                "2",
                "--app-health-probe-timeout",
                "300",
                "--app-health-threshold",
                "4",
            ],
            Works(|s| {
                s.daprd.app_health.as_ref().is_some_and(|h| {
                    h.path == "/health"
                        && h.interval == Duration::from_secs(2)
                        && h.timeout == Duration::from_millis(300)
                        && h.threshold == 4
                })
            }),
        ),
        (
            &[
                "--app-port",
                "7001",
                "--enable-app-health-check=true",
                "--app-health-probe-interval",
                "0",
            ],
            Works(|s| {
                s.daprd
                    .app_health
                    .as_ref()
                    .is_some_and(|h| h.interval == Duration::from_secs(5) && h.path == "/healthz")
            }),
        ),
        (
            &["--enable-app-health-check"],
            Refused("--enable-app-health-check", "needs --app-port"),
        ),
        (
            &[
                "--app-port",
                "7001",
                "--enable-app-health-check",
                "--app-health-probe-timeout",
                "5000",
            ],
            Refused(
                "--app-health-probe-timeout",
                "shorter than --app-health-probe-interval",
            ),
        ),
        (
            &["--enable-app-health-check=maybe"],
            Refused("--enable-app-health-check", ""),
        ),
        (
            &["--allowed-origins", "*"],
            Works(|s| s.daprd.allowed_origins == AllowedOrigins::All),
        ),
        (
            &["--allowed-origins", ""],
            Works(|s| s.daprd.allowed_origins == AllowedOrigins::None),
        ),
        (
            &[
                "--allowed-origins",
                "https://a.example,http://localhost:8080",
            ],
            Works(|s| matches!(&s.daprd.allowed_origins, AllowedOrigins::List(l) if l.len() == 2)),
        ),
        (
            &["--allowed-origins", "not an origin"],
            Refused("--allowed-origins", "not an origin"),
        ),
        (
            &["--disable-init-endpoints", "subscribe"],
            Works(|s| s.daprd.skip_subscribe),
        ),
        (
            &["--disable-init-endpoints", "config"],
            Works(|s| !s.daprd.skip_subscribe && s.daprd.skip_config),
        ),
        (
            &["--disable-init-endpoints", "everything"],
            Refused("--disable-init-endpoints", "neither config nor subscribe"),
        ),
        (&["--app-ssl"], Works(|s| s.app_protocol.name() == "https")),
        (
            &["--app-protocol", "h2c"],
            Works(|s| s.app_protocol.name() == "h2c"),
        ),
        (
            &["--app-protocol", "grpcs"],
            Works(|s| s.app_protocol.name() == "grpcs"),
        ),
        (
            &["--app-protocol", "grpc", "--app-ssl"],
            Works(|s| s.app_protocol.name() == "grpcs"),
        ),
        (
            &["--app-protocol", "grpc2"],
            Refused(
                "--app-protocol",
                "is not one of http, https, h2c, grpc, grpcs",
            ),
        ),
        (&["--enable-mtls"], Works(|s| s.warnings.is_empty())),
        (&["--enable-mtls=false"], Warns("--enable-mtls", "always")),
        (
            &["--enable-profiling"],
            Warns("--enable-profiling", "no profiling server"),
        ),
        (&["--profile-port", "-1"], Works(|s| s.warnings.is_empty())),
        (
            &["--placement-host-address", "localhost:50005"],
            Warns("--placement-host-address", "no placement service is used"),
        ),
        (
            &["--placement-host-address", ""],
            Works(|s| s.warnings.is_empty()),
        ),
        (
            &["--scheduler-host-address", "localhost:50006"],
            Warns("--scheduler-host-address", "no scheduler service is used"),
        ),
        (
            &["--scheduler-job-streams", "3"],
            Warns("--scheduler-host-address", "reminders and jobs"),
        ),
        (
            &["--actors-disseminate-timeout", "10s"],
            Warns("--actors-disseminate-timeout", "no placement service"),
        ),
        (
            &["--actors-service", "placement:x:1"],
            Warns("--placement-host-address", "place actors"),
        ),
        (
            &["--reminders-service", "x"],
            Warns("--scheduler-host-address", "reminders and jobs"),
        ),
        (
            &["--app-binding-options-timeout", "3s"],
            Warns("--app-binding-options-timeout", "bindings"),
        ),
        (
            &["--hot-reload-reconcile-interval", "30s"],
            Warns("--hot-reload-reconcile-interval", "read once"),
        ),
        (
            &["--control-plane-address", "cp:443"],
            Warns("--control-plane-address", "no control plane"),
        ),
        (
            &["--control-plane-trust-domain", "public"],
            Works(|s| s.warnings.is_empty()),
        ),
        (
            &["--control-plane-trust-domain", "cluster.local"],
            Warns("--control-plane-trust-domain", "--trust-domain"),
        ),
        (
            &["--control-plane-namespace", "dapr-system"],
            Works(|_| true),
        ),
        (
            &["--sentry-request-jwt-audiences", "a,b"],
            Warns("--sentry-request-jwt-audiences", "join tokens"),
        ),
        (
            &["--unix-domain-socket", "/tmp/socks"],
            Warns("--unix-domain-socket", "not served yet"),
        ),
        (
            &["--disable-builtin-k8s-secret-store"],
            Works(|s| s.warnings.is_empty()),
        ),
        (
            &["--components-path", "/nonexistent"],
            Refused("--resources-path", "/nonexistent"),
        ),
        (
            &["--resources-path", "/nonexistent"],
            Refused("--resources-path", "/nonexistent"),
        ),
        (
            &["--config", "/nonexistent.yaml"],
            Refused("/nonexistent.yaml", ""),
        ),
        (
            &["--sentry-address", "ca:443"],
            Refused("--trust-anchors", "required with --sentry-address"),
        ),
        (
            &["--app-id", "b", "--namespace", "ns1"],
            Works(|s| s.app_id == "b" && s.namespace == "ns1"),
        ),
    ];
    for (flags, outcome) in table {
        let got = settings(flags);
        match (outcome, got) {
            (Works(holds), Ok(s)) => {
                assert!(holds(&s), "{flags:?}: taken, but not as daprd takes it")
            }
            (Warns(at, says), Ok(s)) => assert!(
                s.warnings
                    .iter()
                    .any(|w| w.at == at && w.message.contains(says)),
                "{flags:?}: expected a warning at {at} saying {says:?}, got {:?}",
                s.warnings
            ),
            (Refused(at, says), Err(e)) => assert!(
                e.lines().any(|l| l.contains(at) && l.contains(says)),
                "{flags:?}: expected a refusal at {at} saying {says:?}, got {e}"
            ),
            (Works(_) | Warns(..), Err(e)) => panic!("{flags:?}: refused: {e}"),
            (Refused(at, _), Ok(s)) => panic!(
                "{flags:?}: taken (warnings {:?}), expected a refusal at {at}",
                s.warnings
            ),
        }
    }
}

/// The command line the dapr CLI builds for `dapr run --app-id orders --app-port 7001 -- app`,
/// in its order and syntax (booleans bare, numbers as separate arguments, -1 for "none").
#[test]
fn the_dapr_clis_command_line_is_taken() {
    let s = settings(&[
        "--app-protocol",
        "http",
        "--log-level",
        "info",
        "--app-max-concurrency",
        "-1",
        "--placement-host-address",
        "localhost:50005",
        "--max-body-size",
        "4Mi",
        "--read-buffer-size",
        "4Ki",
        "--scheduler-host-address",
        "localhost:50006",
        "--app-id",
        "orders",
        "--app-port",
        "7001",
        "--dapr-http-port",
        "41111",
        "--dapr-grpc-port",
        "41112",
        "--profile-port",
        "-1",
        "--metrics-port",
        "41113",
        "--dapr-internal-grpc-port",
        "41114",
    ])
    .unwrap();
    assert_eq!(s.app_id, "orders");
    assert_eq!(s.app_port, Some(7001));
    assert_eq!(
        (
            s.listen.api.port(),
            s.listen.grpc.port(),
            s.listen.admin.port(),
            s.listen.mesh.port()
        ),
        (41111, 41112, 41113, 41114)
    );
    let at: Vec<&str> = s.warnings.iter().map(|w| w.at.as_str()).collect();
    assert_eq!(at, ["--placement-host-address", "--scheduler-host-address"]);
}

#[test]
fn booleans_take_gos_spellings() {
    for (v, want) in [
        ("1", true),
        ("t", true),
        ("TRUE", true),
        ("True", true),
        ("0", false),
        ("F", false),
        ("false", false),
    ] {
        let s = settings(&[&format!("--enable-metrics={v}")]).unwrap();
        assert_eq!(s.daprd.enable_metrics, want, "{v}");
    }
    assert!(parse(&["--enable-metrics=yes"]).is_err());
}
