//! `outrider policy check`: the access decision for one call, with the rule that makes it.
//!
//! It loads the same sources a sidecar in `--namespace` would (its `--config` access control,
//! then `<policies-path>/<namespace>/*.yaml`), canonicalises the operation exactly as the inbound
//! path does, and asks the same evaluator.

use std::process::ExitCode;

use outrider_certs::SpiffeId;
use outrider_filters::normalize::canonical_path;
use outrider_policy::Caller;
use outrider_policy::files::Sources;

use crate::cli::CheckArgs;
use crate::config;

/// Runs the check; see [`crate::cli::PolicyCommand::Check`] for the exit status.
pub(crate) fn run(args: &CheckArgs) -> ExitCode {
    match check(args) {
        Ok((allowed, report)) => {
            print!("{report}");
            ExitCode::from(if allowed { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("outrider policy check: {e}");
            ExitCode::from(2)
        }
    }
}

fn check(args: &CheckArgs) -> Result<(bool, String), String> {
    let config = match &args.config {
        Some(path) => {
            config::access_control_of(path).map_err(|p| config::Problems(p).to_string())?
        }
        None => None,
    };
    let sources = Sources {
        config,
        root: args.policies_path.clone(),
        namespace: args.namespace.clone(),
    };
    let acl = sources.load().map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        format!(
            "the policies have {} problem(s):\n{}",
            lines.len(),
            lines.join("\n")
        )
    })?;
    let id = caller_id(&args.caller, &args.trust_domain)?;
    let caller = Caller {
        app_id: id.app_id().to_owned(),
        namespace: id.namespace().to_owned(),
        trust_domain: id.trust_domain().to_owned(),
    };
    let op = canonical_path(&args.op).map_err(|e| format!("--op {:?}: {e}", args.op))?;
    let verb = args.verb.to_ascii_uppercase();
    let decision = acl.decide(Some(&caller), &op, &verb);
    let shown_op = if op == args.op {
        op.clone()
    } else {
        format!("{op} (canonical form of {:?})", args.op)
    };
    let report = format!(
        "{}\n  caller:    {id}\n  operation: {shown_op}\n  verb:      {verb}\n  rule:      {}\n",
        decision.action, decision.rule
    );
    Ok((decision.allowed(), report))
}

/// A SPIFFE id, `namespace/app-id`, or an app id in `default`.
fn caller_id(s: &str, trust_domain: &str) -> Result<SpiffeId, String> {
    let parsed = if s.starts_with("spiffe://") {
        s.parse::<SpiffeId>().map_err(|e| e.to_string())
    } else {
        let (ns, app) = s.split_once('/').unwrap_or(("default", s));
        SpiffeId::new(trust_domain, ns, app).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("--caller {s:?}: {e}"))
}
