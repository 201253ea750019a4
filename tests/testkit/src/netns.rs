//! Several "hosts" on one LAN, as network namespaces, for tests that need real network
//! boundaries (discovery across hosts, multicast, endpoints that vanish).
//!
//! [`Lan::new`] creates one namespace per host and a switch namespace holding a bridge; each host
//! has `lo` up and one veth, `eth0`, with an address from `10.77.0.0/24` (private, and it exists
//! only inside these namespaces). Nothing is created in the machine's own namespace, so no
//! traffic, multicast included, can leave the LAN. Everything is removed when the [`Lan`] is
//! dropped, also when the test fails. Creating namespaces needs root: [`Lan::new`] says why it
//! cannot, and the test reports itself skipped with that reason.
//!
//! A host may have its own `/etc/hosts` ([`Host::hosts`]), run programs to completion
//! ([`Host::output`], [`Host::curl`], [`Host::python`]) or in the background with their output in
//! a log ([`Host::background`], [`Host::web_server`]), and capture its traffic
//! ([`Host::capture`]).

mod capture;
mod process;
mod tools;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use capture::Capture;
pub use process::Background;

/// One host of a [`Lan`].
#[derive(Clone, Debug)]
pub struct Host {
    /// The namespace's name.
    pub netns: String,
    /// Its address on the LAN.
    pub addr: Ipv4Addr,
}

impl Host {
    /// A command that runs `program` inside this host.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, program]);
        c
    }

    /// The same, for tokio.
    pub fn tokio_command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.netns, program]);
        c
    }

    /// Gives this host its own `/etc/hosts`: `localhost` and each `(name, address)`. Programs
    /// started in the host from now on (through `ip netns exec`, as [`Host::command`] and
    /// sidecars are) resolve names from it; programs already running do not see it. The [`Lan`]
    /// removes it when dropped.
    pub fn hosts(&self, names: &[(&str, Ipv4Addr)]) {
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
        for (name, addr) in names {
            text.push_str(&format!("{addr} {name}\n"));
        }
        let dir = etc_dir(&self.netns);
        // Another LAN's drop may remove an empty `/etc/netns` between the two steps: retry.
        let made = (0..3).any(|_| std::fs::create_dir_all(&dir).is_ok());
        assert!(made, "cannot create {}", dir.display());
        std::fs::write(dir.join("hosts"), text)
            .unwrap_or_else(|e| panic!("writing {}/hosts: {e}", dir.display()));
    }
}

/// The directory whose files `ip netns exec` mounts over those of `/etc` for `netns`.
fn etc_dir(netns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(netns)
}

/// Hosts joined by a bridge; torn down on drop.
#[derive(Debug)]
pub struct Lan {
    /// The hosts, `10.77.0.1` first.
    pub hosts: Vec<Host>,
    switch: String,
    /// `/etc/netns` did not exist when this LAN was made: it is removed on drop if empty.
    made_etc_netns: bool,
}

/// Runs `ip` with `args`; its error output on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process runs with effective uid 0 (`Uid:` real, effective, … in /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

impl Lan {
    /// `n` hosts (at most 250) on a fresh LAN, or why this machine cannot make one.
    pub fn new(n: usize) -> Result<Self, String> {
        if !is_root() {
            return Err("creating network namespaces needs root".to_owned());
        }
        assert!(n <= 250, "a /24 holds at most 250 test hosts");
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Names unique per process and LAN, short enough for interface names (15 bytes).
        let tag = format!(
            "{:x}{:x}",
            std::process::id() % 0xfffff,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("orsw{tag}");
        let mut lan = Lan {
            hosts: Vec::new(),
            switch: switch.clone(),
            made_etc_netns: !std::path::Path::new("/etc/netns").exists(),
        };
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = Host {
                netns: format!("orh{tag}-{i}"),
                addr: Ipv4Addr::new(10, 77, 0, (i + 1) as u8),
            };
            ip(&["netns", "add", &host.netns])?;
            lan.hosts.push(host.clone());
            let port = format!("p{i}");
            ip(&["-n", &host.netns, "link", "set", "lo", "up"])?;
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                &host.netns,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &switch,
            ])?;
            ip(&[
                "-n",
                &host.netns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &host.netns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
        }
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth, and with it the other end.
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.netns]);
            // `ip netns del` leaves the host's files under `/etc/netns` behind.
            let _ = std::fs::remove_dir_all(etc_dir(&h.netns));
        }
        let _ = ip(&["netns", "del", &self.switch]);
        if self.made_etc_netns {
            // Fails, as it should, while another LAN still has files there.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// Writes a Configuration into `dir` whose `static` resolver knows each app at `addr:port`,
/// and returns its path.
pub fn static_config(dir: &std::path::Path, apps: &[(&str, Ipv4Addr)], port: u16) -> PathBuf {
    let apps: serde_json::Map<String, serde_json::Value> = apps
        .iter()
        .map(|(app, addr)| {
            let at = serde_json::json!([{"address": format!("{addr}:{port}")}]);
            ((*app).to_owned(), at)
        })
        .collect();
    let doc = serde_json::json!({
        "kind": "Configuration",
        "spec": {"nameResolution": {"component": "static", "configuration": {"apps": apps}}},
    });
    let path = dir.join("static.yaml");
    std::fs::write(&path, doc.to_string()).expect("writing the Configuration");
    path
}
