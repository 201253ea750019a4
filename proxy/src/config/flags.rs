//! The checks on flags alone, and what they decide: where the workload certificate comes from
//! and where the local registry lives.

use std::path::PathBuf;

use super::{IdentitySource, Problem};
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
        .or_else(|| env.home.as_ref().map(|h| h.join(".outrider/registry")));
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
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// App id, namespace, trust domain, log level and app protocol.
fn names(args: &RunArgs, flag: &mut impl FnMut(&str, String)) {
    for (name, value) in [("app-id", &args.app_id), ("namespace", &args.namespace)] {
        if !is_name(value) {
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
    if !["trace", "debug", "info", "warn", "error"]
        .contains(&args.log_level.to_ascii_lowercase().as_str())
    {
        flag(
            "log-level",
            format!(
                "{:?} is not one of debug, info, warn, error",
                args.log_level
            ),
        );
    }
    let protocol = args.app_protocol.to_ascii_lowercase();
    if !["http", "grpc"].contains(&protocol.as_str()) {
        let why = if ["https", "grpcs", "h2c"].contains(&protocol.as_str()) {
            "is not available yet; use http or grpc"
        } else {
            "is not one of http, grpc"
        };
        flag("app-protocol", format!("{:?} {why}", args.app_protocol));
    }
}

/// No two listeners, nor the app on loopback, on one port.
fn ports(args: &RunArgs, flag: &mut impl FnMut(&str, String)) {
    if args.app_port == Some(0) {
        flag("app-port", "0 is not a port an app can listen on".into());
    }
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
    if let (Some(app), true) = (args.app_port, args.app_channel_address == "127.0.0.1") {
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
