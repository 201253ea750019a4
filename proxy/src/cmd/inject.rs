//! `outrider inject`: Kubernetes YAML in, the same YAML out with Outrider added as a native
//! sidecar to every pod template whose annotations say `dapr.io/enabled: "true"`.
//!
//! Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs are looked into
//! (and the items of a `List`); every other document passes through unchanged, as does a pod
//! template without the annotation or with a sidecar already. The sidecar's flags come from
//! Dapr's `dapr.io/*` annotations ([`sidecar`]); one this sidecar has no use for is named on
//! standard error, never dropped silently. Nothing is written unless every document is read and
//! every annotation understood: a bad input leaves standard output empty and exits 1.
//!
//! The output is YAML again, the same documents in the same order: those that gain no sidecar
//! exactly as they were written, those that do written anew (keys sorted, comments gone).

mod annotations;
mod intercept;
mod sidecar;

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::cli::InjectArgs;

/// Reads, injects, writes. Exit status: 0 written, 1 refused (nothing written).
pub(crate) fn run(args: &InjectArgs) -> ExitCode {
    let mut input = String::new();
    let read = match &args.file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| input = s)
            .map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stdin()
            .read_to_string(&mut input)
            .map(|_| ())
            .map_err(|e| format!("standard input: {e}")),
    };
    let out = read.and_then(|()| inject_all(&input, args));
    match out {
        Ok((yaml, notes)) => {
            for n in notes {
                eprintln!("outrider inject: {n}");
            }
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(yaml.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outrider inject: {e}");
            ExitCode::from(1)
        }
    }
}

/// Every document of `input`, injected, as one YAML stream; and the notes for the operator.
/// A document that gains no sidecar is written as it was read, comments and all; one that does
/// is written anew (keys sorted, its comments gone).
pub(crate) fn inject_all(input: &str, args: &InjectArgs) -> Result<(String, Vec<String>), String> {
    // A byte-order mark (some editors write one) would land inside a copied document.
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(input).map_err(|e| format!("not valid YAML: {e}"))?;
    // Each document's own text, when the stream splits into exactly the documents parsed.
    let texts = split_documents(input)
        .filter(|t| t.iter().map(|(_, d)| d.is_some() as usize).sum::<usize>() == docs.len());
    let pieces: Vec<(Option<&str>, Option<Value>)> = match texts {
        Some(t) => t.into_iter().map(|(text, doc)| (Some(text), doc)).collect(),
        None => docs.into_iter().map(|d| (None, Some(d))).collect(),
    };
    let mut notes = Vec::new();
    let mut out = String::new();
    let mut i = 0;
    for (text, doc) in pieces {
        let Some(mut doc) = doc.filter(|d| !d.is_null()) else {
            out.push_str(text.unwrap_or_default());
            i += usize::from(text.is_none());
            continue;
        };
        if !doc.is_object() {
            return Err(format!(
                "document {}: not a Kubernetes object (a mapping with kind)",
                i + 1
            ));
        }
        let at = describe(&doc, i);
        i += 1;
        let before = doc.clone();
        inject_doc(&mut doc, &at, args, &mut notes)?;
        let yaml = match text {
            Some(t) if doc == before => t.to_owned(),
            _ => serde_saphyr::to_string(&doc).map_err(|e| format!("{at}: writing YAML: {e}"))?,
        };
        if !yaml.starts_with("---") {
            out.push_str("---\n");
        }
        out.push_str(&yaml);
        if !yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok((out, notes))
}

/// The stream cut at its `---` lines, each piece with the document it holds (none for a piece
/// of comments only); `None` when a piece does not read as at most one document, or the
/// stream has directives.
fn split_documents(input: &str) -> Option<Vec<(&str, Option<Value>)>> {
    if input.lines().any(|l| l.starts_with('%')) {
        return None;
    }
    let mut pieces = Vec::new();
    let (mut start, mut pos) = (0, 0);
    for line in input.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        if (l == "---" || l.starts_with("--- ")) && pos > start {
            pieces.push(&input[start..pos]);
            start = pos;
        }
        pos += line.len();
    }
    pieces.push(&input[start..]);
    pieces
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut docs: Vec<Value> = serde_saphyr::from_multiple(p).ok()?;
            match docs.len() {
                0 => Some((p, None)),
                1 => Some((p, docs.pop())),
                _ => None,
            }
        })
        .collect()
}

/// `document 2 (Deployment orders)`, for messages.
fn describe(doc: &Value, i: usize) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("document {} ({kind} {name})", i + 1)
}

fn inject_doc(
    doc: &mut Value,
    at: &str,
    args: &InjectArgs,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let template = match kind.as_str() {
        "List" => {
            if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
                for (j, item) in items.iter_mut().enumerate() {
                    let item_at = format!("{at}, item {}", j + 1);
                    inject_doc(item, &item_at, args, notes)?;
                }
            }
            return Ok(());
        }
        "Pod" => Some(doc),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            doc.pointer_mut("/spec/template")
        }
        "CronJob" => doc.pointer_mut("/spec/jobTemplate/spec/template"),
        _ => None,
    };
    let Some(template) = template else {
        return Ok(());
    };
    let annotations = template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !sidecar::enabled(&annotations, &name, notes) {
        return Ok(());
    }
    sidecar::inject(template, &annotations, &name, args, notes)
        .map_err(|e| format!("{at}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// The flags of every sidecar injected into `yaml`, as `outrider run` would parse them.
    fn injected_args(yaml: &str) -> Vec<Vec<String>> {
        let Command::Inject(args) = Cli::try_parse_from(["outrider", "inject"]).unwrap().command
        else {
            unreachable!()
        };
        let (out, _) = super::inject_all(yaml, &args).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&out).unwrap();
        docs.iter()
            .filter_map(|d| {
                let inits = d
                    .pointer("/spec/template/spec/initContainers")?
                    .as_array()?;
                inits.iter().find(|c| c["name"] == "outrider")?.get("args")
            })
            .map(|a| serde_json::from_value(a.clone()).unwrap())
            .collect()
    }

    #[test]
    fn every_annotation_becomes_a_flag_the_sidecar_accepts() {
        let yaml = r#"
kind: Deployment
metadata: {name: orders}
spec:
  template:
    metadata:
      annotations:
        dapr.io/enabled: "true"
        dapr.io/app-port: "8080"
        dapr.io/app-protocol: grpc
        dapr.io/log-level: warn
        dapr.io/enable-api-logging: "false"
        dapr.io/log-as-json: "true"
        dapr.io/graceful-shutdown-seconds: "9"
        dapr.io/app-channel-address: 127.0.0.1
        dapr.io/metrics-port: "9191"
        dapr.io/http-max-request-size: "8"
        dapr.io/grpc-port: "50011"
        dapr.io/internal-grpc-port: "50012"
        dapr.io/enable-app-health-check: "true"
        dapr.io/app-health-check-path: /health
        dapr.io/app-health-probe-interval: "3"
        dapr.io/app-health-probe-timeout: "200"
        dapr.io/app-health-threshold: "4"
        dapr.io/app-max-concurrency: "-1"
        dapr.io/block-shutdown-duration: 20s
        dapr.io/enable-metrics: "false"
        dapr.io/config: cfg
        outrider.io/resources: components
        outrider.io/intercept: "true"
    spec:
      containers: [{name: app, image: app}]
"#;
        let args = injected_args(yaml);
        assert_eq!(args.len(), 1);
        let argv: Vec<&str> = std::iter::once("outrider")
            .chain(args[0].iter().map(String::as_str))
            .collect();
        let Command::Run(run) = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
            .command
        else {
            panic!("not run")
        };
        assert_eq!(run.app_port, Some(8080));
        assert_eq!(run.app_protocol, "grpc");
        assert_eq!(run.enable_api_logging, Some(false));
        assert!(run.log_as_json);
        assert_eq!(run.graceful_shutdown_seconds, 9);
        assert_eq!(run.metrics_port, 9191);
        assert_eq!(run.max_body_size, Some(8 << 20));
        assert_eq!(run.mode, "kubernetes");
        assert_eq!(
            (run.dapr_grpc_port, run.mesh_port),
            (Some(50011), Some(50012))
        );
        assert_eq!(
            run.config.as_deref(),
            Some(std::path::Path::new("/etc/outrider/config/config.yaml"))
        );
        assert_eq!(
            run.resources_path,
            [std::path::PathBuf::from("/etc/outrider/resources")]
        );
        assert!(run.sentry_address.is_some() && run.ca_token_file.is_some());
        assert!(run.intercept);
        let d = &run.daprd;
        assert!(d.enable_app_health_check && !d.enable_metrics);
        assert_eq!(d.app_health_check_path, "/health");
        assert_eq!(
            (
                d.app_health_probe_interval,
                d.app_health_probe_timeout,
                d.app_health_threshold
            ),
            (3, 200, 4)
        );
        assert_eq!(d.app_max_concurrency, -1);
        assert_eq!(d.dapr_block_shutdown_duration.as_deref(), Some("20s"));

        // The interception init container runs first, and `outrider init` takes its flags.
        let Command::Inject(args) = Cli::try_parse_from(["outrider", "inject"]).unwrap().command
        else {
            unreachable!()
        };
        let (out, _) = super::inject_all(yaml, &args).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&out).unwrap();
        let first = &docs[0]["spec"]["template"]["spec"]["initContainers"][0];
        assert_eq!(first["name"], "outrider-init");
        let init: Vec<String> = serde_json::from_value(first["args"].clone()).unwrap();
        let argv = std::iter::once("outrider".to_owned()).chain(init);
        let Command::Init(init) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not init")
        };
        assert_eq!(
            (
                init.proxy_uid,
                init.mesh_port,
                init.dapr_grpc_port,
                init.metrics_port
            ),
            (Some(65532), 50012, 50011, 9191)
        );
    }
}
