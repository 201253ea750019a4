//! The checks on flags alone, and what they decide: where the workload certificate comes from
//! and where the local registry lives.

use std::path::PathBuf;

use super::{CaService, IdentitySource, JoinToken, Problem};
use crate::cli::{Env, RunArgs};

/// What the flags decide, once they are valid.
pub(super) struct FromFlags {
    pub(super) identity: IdentitySource,
    pub(super) registry_dir: PathBuf,
}

/// Checks every flag; `None` when a problem was pushed that leaves no usable value.
pub(super) fn check(args: &RunArgs, env: &Env, problems: &mut Vec<Problem>) -> Option<FromFlags> {
    let mut flag = |name: &str, message: String| {
        problems.push(Problem {
            at: format!("--{name}"),
            message,
        })
    };
    names(args, &mut flag);
    ports(args, &mut flag);
    let identity = identity(args, env, &mut flag);
    let registry_dir = args
        .registry_dir
        .clone()
        .or_else(|| (env.home.as_ref()).map(|h| h.join(outrider_discovery::local::DEFAULT_DIR)));
    if registry_dir.is_none() {
        flag("registry-dir", "not given and $HOME is not set".into());
    }
    Some(FromFlags {
        identity: identity?,
        registry_dir: registry_dir?,
    })
}

/// Whether `s` may be an app id or namespace: letters, digits, `-`, `_`; no dots, because
/// `app.namespace` names another namespace.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// App id, namespace, trust domain, log level and app protocol.
fn names(args: &RunArgs, flag: &mut impl FnMut(&str, String)) {
    if args.app_id.is_empty() {
        flag("app-id", "required: the app's name in the mesh".into());
    }
    for (name, value) in [("app-id", &args.app_id), ("namespace", &args.namespace)] {
        // An empty app id was reported above.
        let reported = name == "app-id" && value.is_empty();
        if !reported && !is_name(value) {
            flag(
                name,
                format!("{value:?} must be letters, digits, '-' or '_'"),
            );
        }
    }
    if outrider_certs::SpiffeId::new(&args.trust_domain, "default", "x").is_err() {
        flag(
            "trust-domain",
            format!(
                "{:?} must be lower-case letters, digits, '.', '-' or '_'",
                args.trust_domain
            ),
        );
    }
    if !["trace", "debug", "info", "warn", "error", "fatal"]
        .contains(&args.log_level.to_ascii_lowercase().as_str())
    {
        flag(
            "log-level",
            format!(
                "{:?} is not one of debug, info, warn, error, fatal",
                args.log_level
            ),
        );
    }
    let protocol = args.app_protocol_name();
    let protocol = protocol.as_str();
    if !["http", "https", "h2c", "grpc", "grpcs"].contains(&protocol) {
        let why = "is not one of http, https, h2c, grpc, grpcs";
        let with_ssl = if args.daprd.app_ssl {
            " (with --app-ssl)"
        } else {
            ""
        };
        flag("app-protocol", format!("{protocol:?}{with_ssl} {why}"));
    }
}

/// No two listeners, nor the app on loopback, on one port.
fn ports(args: &RunArgs, flag: &mut impl FnMut(&str, String)) {
    let ports = [
        ("dapr-http-port", args.dapr_http_port),
        // The default may move to a free port; only a port asked for can clash.
        ("dapr-grpc-port", args.dapr_grpc_port.unwrap_or(0)),
        ("mesh-port", args.listen().mesh.port()),
        ("metrics-port", args.metrics_port),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb && *pa != 0 {
                flag(b, format!("{pb} is already taken by --{a}"));
            }
        }
    }
    // 0 is what the dapr CLI passes for "no app port".
    let app_port = args.app_port.filter(|p| *p != 0);
    if let (Some(app), true) = (app_port, args.app_channel_address == "127.0.0.1") {
        for (name, p) in ports {
            if p == app {
                flag("app-port", format!("{app} is also --{name}"));
            }
        }
    }
}

/// The development CA's directory, or the three PEM files given together.
fn identity(
    args: &RunArgs,
    env: &Env,
    flag: &mut impl FnMut(&str, String),
) -> Option<IdentitySource> {
    if let Some(address) = &args.sentry_address {
        return ca_service(args, env, address, flag);
    }
    if args.trust_anchors.is_some() || args.ca_token_file.is_some() {
        flag(
            "trust-anchors",
            "--trust-anchors and --ca-token-file go with --sentry-address".into(),
        );
    }
    match (&args.trust_bundle, &args.cert_chain, &args.cert_key) {
        (None, None, None) => {
            let dir = args
                .ca_dir
                .clone()
                .or_else(|| env.home.as_ref().map(|h| h.join(".outrider/ca")));
            if dir.is_none() {
                flag("ca-dir", "not given and $HOME is not set".into());
            }
            Some(IdentitySource::DevCa { dir: dir? })
        }
        (Some(b), Some(c), Some(k)) => {
            for (name, p) in [("trust-bundle", b), ("cert-chain", c), ("cert-key", k)] {
                if !p.is_file() {
                    flag(name, format!("{} is not a readable file", p.display()));
                }
            }
            Some(IdentitySource::Files {
                bundle: b.clone(),
                chain: c.clone(),
                key: k.clone(),
            })
        }
        _ => {
            flag(
                "trust-bundle",
                "--trust-bundle, --cert-chain and --cert-key go together".into(),
            );
            None
        }
    }
}

/// The CA service: its address, the roots it must chain to, and the join token.
fn ca_service(
    args: &RunArgs,
    env: &Env,
    address: &str,
    flag: &mut impl FnMut(&str, String),
) -> Option<IdentitySource> {
    // An IPv6 address goes in brackets, as in a URL: [fd00::1]:50001.
    let valid = address.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty()
            && (!h.contains(':') || (h.starts_with('[') && h.ends_with(']')))
            && p.parse::<u16>().is_ok_and(|p| p != 0)
            && format!("https://{address}/").parse::<http::Uri>().is_ok()
    });
    if !valid {
        flag("sentry-address", format!("{address:?} is not host:port"));
    }
    for (name, given) in [
        ("trust-bundle", args.trust_bundle.is_some()),
        ("cert-chain", args.cert_chain.is_some()),
        ("cert-key", args.cert_key.is_some()),
        ("ca-dir", args.ca_dir.is_some()),
    ] {
        if given {
            flag(
                name,
                "the certificate comes from --sentry-address; give one source only".into(),
            );
        }
    }
    if !is_name(&args.control_plane_namespace) {
        flag(
            "control-plane-namespace",
            format!(
                "{:?} must be letters, digits, '-' or '_'",
                args.control_plane_namespace
            ),
        );
    }
    let Some(anchors) = &args.trust_anchors else {
        flag(
            "trust-anchors",
            "required with --sentry-address: the roots the CA service must chain to".into(),
        );
        return None;
    };
    if !anchors.is_file() {
        flag(
            "trust-anchors",
            format!("{} is not a readable file", anchors.display()),
        );
    }
    let token = match (&args.ca_token_file, &env.ca_token) {
        (Some(f), _) => JoinToken::File(f.clone()),
        (None, Some(t)) => JoinToken::Value(t.clone()),
        (None, None) => JoinToken::None,
    };
    Some(IdentitySource::CaService(CaService {
        address: address.to_owned(),
        anchors: anchors.clone(),
        token,
        namespace: args.control_plane_namespace.clone(),
    }))
}
