//! `outrider init`: installs the nat rules that send an unmodified app's TCP through the sidecar,
//! in the current network namespace, and exits — the init-container step of a Kubernetes pod, or
//! a one-off on a host. Needs CAP_NET_ADMIN.
//!
//! The rules ([`rules`]) go in with `iptables-restore --noflush` as one batch per address family,
//! so they apply whole or not at all, and only our chains and the jumps to them are touched. A
//! second run with the same flags finds them in place and changes nothing; `--uninstall`
//! removes exactly them; `--dry-run` prints the batches. The `iptables` binaries are the ones
//! the host uses: the legacy ones only when their tables hold rules and the nf_tables ones none.

mod rules;

use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};

use crate::cli::InitArgs;
use rules::{Family, Found, Plan};

/// The `iptables` tools of one family and backend.
struct Tools {
    save: String,
    restore: String,
}

impl Tools {
    fn for_family(family: Family) -> Self {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let legacy = format!("{base}-legacy");
        let backend =
            if has_rules(&format!("{legacy}-save")) && !has_rules(&format!("{base}-nft-save")) {
                legacy
            } else {
                base.to_owned()
            };
        Self {
            save: format!("{backend}-save"),
            restore: format!("{backend}-restore"),
        }
    }

    /// What of ours the nat table holds now.
    fn found(&self) -> Result<Found, String> {
        let out = Command::new(&self.save)
            .args(["-t", "nat"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", self.save))?;
        if !out.status.success() {
            return Err(format!(
                "{} -t nat: {}",
                self.save,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(rules::found(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Applies `batch` atomically, leaving everything else in the table as it is.
    fn restore(&self, batch: &str) -> Result<(), String> {
        let mut child = Command::new(&self.restore)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.restore))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(batch.as_bytes())
                .map_err(|e| format!("writing to {}: {e}", self.restore))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {}: {e}", self.restore))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} --noflush refused the batch: {}\n{batch}",
                self.restore,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// Whether `save` runs and prints any rule: that backend is the one in use.
fn has_rules(save: &str) -> bool {
    Command::new(save)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.starts_with("-A "))
        })
}

/// Whether this network namespace has IPv6.
fn has_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|s| !s.trim().is_empty())
}

/// `outrider init`.
pub(crate) fn run(args: &InitArgs) -> ExitCode {
    match init(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outrider init: {e}");
            ExitCode::from(1)
        }
    }
}

fn init(args: &InitArgs) -> Result<(), String> {
    let families: Vec<Family> = match args.ipv6.as_str() {
        "on" => vec![Family::V4, Family::V6],
        "off" => vec![Family::V4],
        _ if has_ipv6() => vec![Family::V4, Family::V6],
        _ => vec![Family::V4],
    };
    let plan = plan(args)?;
    let mut done = Vec::new();
    for family in families {
        let tools = Tools::for_family(family);
        let found = tools.found()?;
        let (lines, what) = if args.uninstall {
            (rules::removal(&found), "removed")
        } else {
            let plan = plan
                .as_ref()
                .ok_or("--proxy-uid is required (the sidecar's uid)")?;
            let wanted = rules::ours(plan, family);
            if rules::installed(&found, &wanted) {
                done.push(format!("{}: already installed", family.name()));
                continue;
            }
            (rules::install(&found, &wanted), "installed")
        };
        if lines.is_empty() {
            done.push(format!("{}: nothing to remove", family.name()));
            continue;
        }
        let batch = rules::batch(&lines);
        if args.dry_run {
            println!("# {} ({} --noflush)\n{batch}", family.name(), tools.restore);
            continue;
        }
        tools.restore(&batch)?;
        done.push(format!("{}: {what} with {}", family.name(), tools.restore));
    }
    if !done.is_empty() {
        println!("outrider init: {}", done.join("; "));
    }
    Ok(())
}

/// The plan the flags describe; `None` without `--proxy-uid` (only `--uninstall` needs none).
fn plan(args: &InitArgs) -> Result<Option<Plan>, String> {
    let Some(proxy_uid) = args.proxy_uid else {
        return Ok(None);
    };
    let mut skip_inbound_ports = vec![
        args.mesh_port,
        args.dapr_http_port,
        args.dapr_grpc_port,
        args.metrics_port,
    ];
    skip_inbound_ports.extend(&args.skip_inbound_ports);
    let skip_outbound_cidrs = args
        .skip_outbound_cidrs
        .iter()
        .map(|c| c.parse().map_err(|e| format!("--skip-outbound-cidrs: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(Some(Plan {
        proxy_uid,
        proxy_gid: args.proxy_gid,
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_port,
        skip_inbound_ports,
        skip_outbound_ports: args.skip_outbound_ports.clone(),
        skip_outbound_cidrs,
    }))
}

/// What the running sidecar can tell of the rules in its namespace, for the metadata API and the
/// admin page: how many of ours each family holds, or why it cannot see them (reading the nat
/// table needs CAP_NET_ADMIN, which a sidecar under its own uid does not have).
pub(crate) fn rules_found() -> String {
    let mut parts = Vec::new();
    for family in [Family::V4, Family::V6] {
        if family == Family::V6 && !has_ipv6() {
            continue;
        }
        let tools = Tools::for_family(family);
        parts.push(match tools.found() {
            Ok(f) if f.is_empty() => format!("{}: none", family.name()),
            Ok(f) => format!("{}: {} rules", family.name(), f.rules.len()),
            Err(e) if e.contains("Permission denied") => {
                format!(
                    "{}: unknown (reading the nat table needs CAP_NET_ADMIN)",
                    family.name()
                )
            }
            Err(e) => format!(
                "{}: unknown ({})",
                family.name(),
                e.lines().next().unwrap_or_default()
            ),
        });
    }
    parts.join("; ")
}
