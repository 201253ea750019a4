//! `outrider init`: the nat rules it writes for transparent interception, a dry run that changes
//! nothing, a second run that changes nothing, and an uninstall that leaves the tables exactly as
//! they were, other rules included. Each test works on a network namespace of its own (needs
//! root; skipped otherwise): the machine's own tables are never touched.

use std::time::Duration;

use outrider_testkit::intercept::{PROXY_UID, init, init_ok};
use outrider_testkit::netns::{Host, Lan};

const LIMIT: Duration = Duration::from_secs(30);
const IN: &str = "OUTRIDER_INBOUND";
const OUT: &str = "OUTRIDER_OUTPUT";

/// `<save> -t nat` in `host` (iptables-save or ip6tables-save), without its comment lines (they
/// carry the time) and chain counters.
async fn saved(host: &Host, save: &str) -> String {
    let out = host.output(save, &["-t", "nat"], LIMIT).await;
    assert!(
        out.status.success(),
        "{save}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rsplit_once(" [") {
            Some((chain, counters)) if l.starts_with(':') && counters.ends_with(']') => chain,
            _ => l,
        })
        .collect();
    lines.join("\n")
}

/// The IPv4 and IPv6 nat tables of `host`.
async fn tables(host: &Host) -> (String, String) {
    (
        saved(host, "iptables-save").await,
        saved(host, "ip6tables-save").await,
    )
}

/// The rules of `chain` in a saved table.
fn rules<'a>(table: &'a str, chain: &str) -> Vec<&'a str> {
    let prefix = format!("-A {chain} ");
    table.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// Whether a rule of `chain` has every one of `parts`.
fn has_rule(table: &str, chain: &str, parts: &[&str]) -> bool {
    rules(table, chain)
        .iter()
        .any(|r| parts.iter().all(|p| r.contains(p)))
}

/// The destination port ranges a rule matches (`--dport P`, `--dports P,Q:R`), unless negated.
fn dports(rule: &str) -> Vec<(u16, u16)> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let mut ranges = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let negated = i > 0 && words[i - 1] == "!";
        if !matches!(*w, "--dport" | "--dports") || negated {
            continue;
        }
        for p in words.get(i + 1).copied().unwrap_or_default().split(',') {
            let (lo, hi) = p.split_once(':').unwrap_or((p, p));
            if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) {
                ranges.push((lo, hi));
            }
        }
    }
    ranges
}

/// Whether `chain` lets TCP to `port` go on unredirected: a RETURN rule that names it.
fn skips_port(table: &str, chain: &str, port: u16) -> bool {
    rules(table, chain).iter().any(|r| {
        r.contains("-j RETURN") && dports(r).iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
    })
}

/// The flags of the main install: the proxy's user and group, a metrics port of its own and
/// exemptions both ways.
fn flags(uid: &str) -> Vec<&str> {
    vec![
        "--proxy-uid",
        uid,
        "--proxy-gid",
        uid,
        "--metrics-port",
        "9191",
        "--skip-outbound-ports",
        "22,80",
        "--skip-outbound-cidrs",
        "10.0.0.0/8,192.168.0.0/16",
        "--skip-inbound-ports",
        "2222",
    ]
}

/// The IPv4 table after an install with [`flags`].
fn assert_installed(t: &str) {
    for chain in [IN, OUT] {
        let declared = t.lines().any(|l| l.starts_with(&format!(":{chain} ")));
        assert!(declared, "no chain {chain}:\n{t}");
    }
    assert!(
        has_rule(t, "PREROUTING", &["-p tcp", &format!("-j {IN}")]),
        "{t}"
    );
    assert!(
        has_rule(t, "OUTPUT", &["-p tcp", &format!("-j {OUT}")]),
        "{t}"
    );
    // The proxy's own traffic is never redirected.
    let uid = format!("--uid-owner {PROXY_UID}");
    let gid = format!("--gid-owner {PROXY_UID}");
    assert!(has_rule(t, OUT, &[&uid, "-j RETURN"]), "{t}");
    assert!(has_rule(t, OUT, &[&gid, "-j RETURN"]), "{t}");
    assert!(has_rule(t, OUT, &["-j REDIRECT --to-ports 15001"]), "{t}");
    assert!(has_rule(t, IN, &["-j REDIRECT --to-ports 15006"]), "{t}");
    for cidr in ["10.0.0.0/8", "192.168.0.0/16"] {
        assert!(
            has_rule(t, OUT, &[&format!("-d {cidr}"), "-j RETURN"]),
            "{cidr}:\n{t}"
        );
    }
    for port in [22, 80] {
        assert!(skips_port(t, OUT, port), "outbound {port}:\n{t}");
    }
    // The sidecar's own listeners (mesh, API, gRPC API, metrics) and the port asked for.
    for port in [50002, 3500, 50001, 9191, 2222] {
        assert!(skips_port(t, IN, port), "inbound {port}:\n{t}");
    }
}

/// Whether this host has IPv6 (an address, loopback's included).
async fn has_ipv6(host: &Host) -> bool {
    let out = host.output("cat", &["/proc/net/if_inet6"], LIMIT).await;
    out.status.success() && !out.stdout.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_idempotent_prints_with_dry_run_and_uninstalls_exactly_its_rules() {
    let lan = match Lan::new(1) {
        Ok(lan) => lan,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let h = &lan.hosts[0];
    // Someone else's rules, which ours must leave alone.
    for tool in ["iptables", "ip6tables"] {
        let out = h
            .output(
                tool,
                &[
                    "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "RETURN",
                ],
                LIMIT,
            )
            .await;
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = tables(h).await;
    let theirs = "--dport 9999 -j RETURN";
    assert!(before.0.contains(theirs), "{}", before.0);
    let uid = PROXY_UID.to_string();
    let install = flags(&uid);

    // A dry run prints the batch and changes nothing; so does a run without the proxy's user,
    // which fails.
    let dry = init_ok(h, &[install.as_slice(), &["--dry-run"]].concat()).await;
    assert!(
        dry.contains(OUT) && dry.contains(&format!("--uid-owner {uid}")),
        "{dry}"
    );
    assert_eq!(tables(h).await, before, "a dry run changed the tables");
    let out = init(h, &[]).await;
    assert!(!out.status.success(), "init without --proxy-uid succeeded");
    assert_eq!(tables(h).await, before, "a failed init changed the tables");

    init_ok(h, &install).await;
    let installed = tables(h).await;
    assert_installed(&installed.0);
    assert!(installed.0.contains(theirs), "{}", installed.0);

    // Again with the same flags: nothing changes.
    let again = init_ok(h, &install).await;
    assert!(again.contains("already installed"), "{again}");
    assert_eq!(
        tables(h).await,
        installed,
        "a second init changed the tables"
    );

    // Uninstalled: exactly the tables from before, theirs included.
    init_ok(h, &["--uninstall"]).await;
    assert_eq!(
        tables(h).await,
        before,
        "uninstall did not restore the tables"
    );

    ipv6_on_demand(h, &uid, &before).await;
}

/// `--ipv6 on` puts the rules in the IPv6 table too, `--ipv6 off` leaves it alone; each
/// uninstall restores both tables to `before`.
async fn ipv6_on_demand(h: &Host, uid: &str, before: &(String, String)) {
    if !has_ipv6(h).await {
        return eprintln!("no IPv6 in the namespace: --ipv6 on/off not checked");
    }
    init_ok(h, &["--proxy-uid", uid, "--ipv6", "on"]).await;
    let (v4, v6) = tables(h).await;
    for t in [&v4, &v6] {
        assert!(has_rule(t, OUT, &["-j REDIRECT --to-ports 15001"]), "{t}");
        assert!(has_rule(t, IN, &["-j REDIRECT --to-ports 15006"]), "{t}");
    }
    assert!(v6.contains("--dport 9999 -j RETURN"), "{v6}");
    init_ok(h, &["--uninstall"]).await;
    assert_eq!(&tables(h).await, before, "uninstall after --ipv6 on");

    init_ok(h, &["--proxy-uid", uid, "--ipv6", "off"]).await;
    let (v4, v6) = tables(h).await;
    assert!(
        has_rule(&v4, OUT, &["-j REDIRECT --to-ports 15001"]),
        "{v4}"
    );
    assert_eq!(v6, before.1, "--ipv6 off changed the IPv6 table");
    init_ok(h, &["--uninstall"]).await;
    assert_eq!(&tables(h).await, before, "uninstall after --ipv6 off");
}
