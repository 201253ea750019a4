//! The nat rules of `outrider init`, as text: what they are for a set of flags, what of them a
//! saved table holds, and the `iptables-restore --noflush` batches that install or remove them.
//! Pure: running the tools is `init`'s.
//!
//! Two chains of our own hold everything, each reached by one jump appended to a built-in chain:
//! `PREROUTING → OUTRIDER_INBOUND` (other hosts' TCP for this namespace) and
//! `OUTPUT → OUTRIDER_OUTPUT` (TCP its processes open). Rules are written in `iptables-save`'s
//! own spelling, so a saved table can be compared with them line by line.

use std::net::IpAddr;

/// The chain for inbound TCP.
pub(crate) const INBOUND: &str = "OUTRIDER_INBOUND";
/// The chain for outbound TCP.
pub(crate) const OUTBOUND: &str = "OUTRIDER_OUTPUT";

/// IPv4 (iptables) or IPv6 (ip6tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }
}

/// A network in CIDR form, its host bits cleared (as `iptables-save` prints it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address or a network like 10.0.0.0/8");
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?,
            None => max,
        };
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Self { addr, len })
    }
}

impl Cidr {
    fn family(&self) -> Family {
        if self.addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// What the rules redirect and what they leave alone.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Traffic of this uid (the sidecar's) is never redirected.
    pub(crate) proxy_uid: u32,
    /// Nor of this gid, when given.
    pub(crate) proxy_gid: Option<u32>,
    pub(crate) outbound_port: u16,
    pub(crate) inbound_port: u16,
    /// Inbound ports left alone: the sidecar's own (mesh, APIs, admin) and `--skip-inbound-ports`.
    pub(crate) skip_inbound_ports: Vec<u16>,
    pub(crate) skip_outbound_ports: Vec<u16>,
    pub(crate) skip_outbound_cidrs: Vec<Cidr>,
}

/// Our rules for `family`, jumps first, in `iptables-save`'s spelling.
pub(crate) fn ours(plan: &Plan, family: Family) -> Vec<String> {
    let mut r = vec![
        // Only what is addressed to this namespace: traffic it forwards (containers behind a
        // host) is not its app's.
        format!("-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -j {INBOUND}"),
        format!("-A OUTPUT -p tcp -j {OUTBOUND}"),
    ];
    let mut inbound = plan.skip_inbound_ports.clone();
    inbound.sort_unstable();
    inbound.dedup();
    for port in inbound {
        r.push(format!(
            "-A {INBOUND} -p tcp -m tcp --dport {port} -j RETURN"
        ));
    }
    r.push(format!(
        "-A {INBOUND} -p tcp -j REDIRECT --to-ports {}",
        plan.inbound_port
    ));
    r.push(format!(
        "-A {OUTBOUND} -m owner --uid-owner {} -j RETURN",
        plan.proxy_uid
    ));
    if let Some(gid) = plan.proxy_gid {
        r.push(format!(
            "-A {OUTBOUND} -m owner --gid-owner {gid} -j RETURN"
        ));
    }
    r.push(format!("-A {OUTBOUND} -o lo -j RETURN"));
    r.push(format!("-A {OUTBOUND} -d {} -j RETURN", family.loopback()));
    let mut ports = plan.skip_outbound_ports.clone();
    ports.sort_unstable();
    ports.dedup();
    for port in ports {
        r.push(format!(
            "-A {OUTBOUND} -p tcp -m tcp --dport {port} -j RETURN"
        ));
    }
    for c in plan
        .skip_outbound_cidrs
        .iter()
        .filter(|c| c.family() == family)
    {
        r.push(format!("-A {OUTBOUND} -d {}/{} -j RETURN", c.addr, c.len));
    }
    r.push(format!(
        "-A {OUTBOUND} -p tcp -j REDIRECT --to-ports {}",
        plan.outbound_port
    ));
    r
}

/// What of ours a saved nat table holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// Our chains that exist.
    pub(crate) chains: Vec<String>,
    /// The rules that jump to them, and the rules in them, as saved.
    pub(crate) rules: Vec<String>,
}

impl Found {
    pub(crate) fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.rules.is_empty()
    }
}

/// Reads our chains and rules out of `iptables-save -t nat` output.
pub(crate) fn found(saved: &str) -> Found {
    let mut f = Found::default();
    let mut in_nat = false;
    for line in saved.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table == "nat";
            continue;
        }
        if !in_nat {
            continue;
        }
        if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or_default();
            if name == INBOUND || name == OUTBOUND {
                f.chains.push(name.to_owned());
            }
        } else if is_ours(line) {
            f.rules.push(line.to_owned());
        }
    }
    f
}

/// A rule in our chains, or a jump to one of them.
fn is_ours(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let in_ours = words.first() == Some(&"-A")
        && matches!(words.get(1), Some(&c) if c == INBOUND || c == OUTBOUND);
    let jumps = words
        .windows(2)
        .any(|w| w[0] == "-j" && (w[1] == INBOUND || w[1] == OUTBOUND));
    in_ours || jumps
}

/// Whether `found` is exactly `wanted`, each chain's rules in order (a REDIRECT before the
/// sidecar's exclusion would loop): then there is nothing to do.
pub(crate) fn installed(found: &Found, wanted: &[String]) -> bool {
    let by_chain = |rules: &[String]| {
        let mut chains: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for r in rules {
            let chain = r.split_whitespace().nth(1).unwrap_or_default().to_owned();
            chains.entry(chain).or_default().push(r.clone());
        }
        chains
    };
    found.chains.len() == 2 && by_chain(&found.rules) == by_chain(wanted)
}

/// The batch that removes every jump to our chains and the chains themselves.
pub(crate) fn removal(found: &Found) -> Vec<String> {
    let mut b = Vec::new();
    for rule in &found.rules {
        if let Some(rest) = rule.strip_prefix("-A ")
            && !rest.starts_with(INBOUND)
            && !rest.starts_with(OUTBOUND)
        {
            b.push(format!("-D {rest}"));
        }
    }
    for chain in &found.chains {
        b.push(format!("-F {chain}"));
        b.push(format!("-X {chain}"));
    }
    b
}

/// The batch that replaces whatever of ours `found` holds with `wanted`, in one transaction.
pub(crate) fn install(found: &Found, wanted: &[String]) -> Vec<String> {
    let mut b = Vec::new();
    for chain in [INBOUND, OUTBOUND] {
        if !found.chains.iter().any(|c| c == chain) {
            b.push(format!(":{chain} - [0:0]"));
        }
    }
    b.extend(removal(found).into_iter().filter(|l| !l.starts_with("-X ")));
    b.extend(wanted.iter().cloned());
    b
}

/// `lines` as an `iptables-restore` input for the nat table.
pub(crate) fn batch(lines: &[String]) -> String {
    let mut s = String::from("*nat\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

#[cfg(test)]
mod tests;
