//! The `local` resolver: every sidecar of one user on one host registers itself as a file in a
//! shared registry directory (by default `$HOME/.outrider/registry/`), and every sidecar reads
//! that directory to find its peers.
//!
//! An entry names the app id, namespace, mesh address, the transports the mesh port offers (an
//! entry written without them means HTTP/2 only) and the sidecar's pid. Entries are written
//! atomically (temporary file + rename) and removed when the sidecar stops; entries whose pid is
//! no longer alive (a sidecar killed without cleanup) are ignored and swept. The directory is
//! watched with inotify, and rescanned periodically to notice dead pids, which produce no event.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::Watcher;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::{EndpointSet, Peer, Resolve, StaticMap, Target, Transports};

/// The registry's directory under the user's home, unless configured.
pub const DEFAULT_DIR: &str = ".outrider/registry";

/// How often the directory is rescanned even without a change event.
const RESCAN: Duration = Duration::from_secs(2);

/// One sidecar's registry entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The sidecar's app id.
    pub app_id: String,
    /// Its namespace.
    pub namespace: String,
    /// Where it accepts mesh traffic.
    pub address: SocketAddr,
    /// What its mesh port offers; entries written before this field existed mean HTTP/2 only.
    #[serde(default)]
    pub transports: Transports,
    /// Its process id, to tell live entries from stale ones.
    pub pid: u32,
    /// The process's start time (clock ticks since boot, `/proc/<pid>/stat` field 22), so that
    /// an entry is not kept alive by an unrelated process that reused the pid. 0 if unknown.
    #[serde(default)]
    pub started: u64,
    /// The actor types its app hosts, once the app has said (placement reads them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actor_types: Vec<String>,
    /// Its other ports, for `outrider status` and the dashboard's links; none in entries
    /// written before this field existed.
    #[serde(default, skip_serializing_if = "Ports::is_empty")]
    pub ports: Ports,
    /// When it started, in seconds since the epoch (0 if unknown).
    #[serde(default)]
    pub started_at: u64,
}

/// A sidecar's ports other than the mesh port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// The Dapr HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<u16>,
    /// The Dapr gRPC API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<u16>,
    /// The admin port: metrics, health, the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<u16>,
    /// The app's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<u16>,
}

impl Ports {
    fn is_empty(&self) -> bool {
        *self == Ports::default()
    }
}

impl Entry {
    /// The start time of `pid`, for [`Entry::started`]; 0 if it cannot be read.
    pub fn start_time_of(pid: u32) -> u64 {
        proc_stat(pid).map_or(0, |(_, started)| started)
    }
}

impl Entry {
    fn file_name(&self) -> String {
        format!(
            "{}~{}~{}~{}.json",
            self.namespace,
            self.app_id,
            self.pid,
            self.address.port()
        )
    }
}

/// A registration that is removed when dropped (or by [`Registration::remove`]).
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
}

impl Registration {
    /// Writes `entry` into the registry `dir`, creating the directory if needed.
    pub fn create(dir: &Path, entry: &Entry) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(entry.file_name());
        let tmp = dir.join(format!(".{}.tmp", entry.file_name()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(Self { path })
    }

    /// Replaces the entry with `entry` (the same sidecar, so the same file), atomically.
    pub fn update(&self, entry: &Entry) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)
    }

    /// Removes the entry now; peers stop sending new requests here.
    pub fn remove(self) {
        drop(self)
    }

    /// The entry's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The hosts of each actor type, by namespace and type.
type ActorHosts = BTreeMap<(String, String), Vec<(Target, SocketAddr)>>;

/// What one scan of the registry found.
#[derive(Default)]
struct Found {
    endpoints: BTreeMap<Target, Arc<EndpointSet>>,
    actors: ActorHosts,
    peers: Vec<Peer>,
}

#[derive(Default)]
struct State {
    latest: BTreeMap<Target, Arc<EndpointSet>>,
    peers: Vec<Peer>,
    actors: ActorHosts,
    senders: HashMap<Target, watch::Sender<Arc<EndpointSet>>>,
}

/// Resolves from the registry directory.
pub struct LocalResolver {
    state: Arc<Mutex<State>>,
}

impl LocalResolver {
    /// Starts watching `dir` (created if missing). Must be called within a tokio runtime; the
    /// watch task runs until the runtime stops.
    pub fn start(dir: PathBuf) -> std::io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = mpsc::channel(1);
        let mut watcher = notify::recommended_watcher(move |event| {
            // A full channel already holds a wake-up: coalesce.
            if wakes(&event) {
                let _ = tx.try_send(());
            }
        })
        .map_err(std::io::Error::other)?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(std::io::Error::other)?;
        publish(&state, scan(&dir));
        tokio::spawn(watch_loop(dir, state.clone(), rx, watcher));
        Ok(Self { state })
    }
}

/// Whether a directory event may have changed the registry. Reads are not changes: a scan
/// opens every entry, and reacting to those opens (ours or another sidecar's) would rescan
/// forever, a core's worth of CPU at idle.
fn wakes(event: &notify::Result<notify::Event>) -> bool {
    event.as_ref().map_or(true, |e| !e.kind.is_access())
}

async fn watch_loop(
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    mut events: mpsc::Receiver<()>,
    _watcher: notify::RecommendedWatcher,
) {
    let mut tick = tokio::time::interval(RESCAN);
    loop {
        tokio::select! {
            _ = events.recv() => {}
            _ = tick.tick() => {}
        }
        let dir2 = dir.clone();
        match tokio::task::spawn_blocking(move || scan(&dir2)).await {
            Ok(found) => publish(&state, found),
            // The runtime is stopping.
            Err(e) if e.is_cancelled() => return,
            Err(e) => tracing::warn!(error = %e, "registry scan failed"),
        }
    }
}

/// Reads every live entry of the registry, sweeping entries of dead processes.
fn scan(dir: &Path) -> Found {
    let mut found: StaticMap = BTreeMap::new();
    let mut actors = ActorHosts::new();
    let mut peers = Vec::new();
    for entry in live_entries(dir, true) {
        let target = Target::new(entry.app_id, entry.namespace);
        peers.push(Peer {
            target: target.clone(),
            address: entry.address,
            transports: entry.transports,
            admin_port: entry.ports.admin,
        });
        for t in entry.actor_types {
            let hosts = actors.entry((target.namespace.clone(), t)).or_default();
            hosts.push((target.clone(), entry.address));
            hosts.sort();
        }
        found
            .entry(target)
            .or_default()
            .push((entry.address, entry.transports));
    }
    let endpoints = found
        .into_iter()
        .map(|(t, a)| (t, Arc::new(EndpointSet::with_transports(a))))
        .collect();
    peers.sort_by(|a, b| (&a.target, a.address).cmp(&(&b.target, b.address)));
    Found {
        endpoints,
        actors,
        peers,
    }
}

/// The entries of the registry `dir` whose sidecar still runs, in no set order; with `sweep`,
/// the entries of dead sidecars are removed.
pub fn live_entries(dir: &Path, sweep: bool) -> Vec<Entry> {
    let mut live = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return live;
    };
    for dent in rd.flatten() {
        let path = dent.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(entry) = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
        else {
            continue;
        };
        if !alive(&entry) {
            if sweep {
                tracing::debug!(path = %path.display(), "sweeping the registry entry of a dead sidecar");
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        live.push(entry);
    }
    live
}

/// The state letter and start time of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields follow the parenthesised command name, which may contain spaces: state is field 3,
    // starttime field 22.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let started = fields.nth(18)?.parse().ok()?;
    Some((state, started))
}

/// Whether the process that wrote `entry` still runs: it exists, is not a zombie, and (when
/// recorded) started when the entry says.
fn alive(entry: &Entry) -> bool {
    match proc_stat(entry.pid) {
        Some((state, started)) => state != 'Z' && (entry.started == 0 || entry.started == started),
        None => false,
    }
}

#[cfg(test)]
fn pid_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

fn publish(state: &Mutex<State>, found: Found) {
    let Found {
        endpoints: latest,
        actors,
        peers,
    } = found;
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.actors = actors;
    st.peers = peers;
    // Targets nobody follows any more are forgotten.
    st.senders.retain(|_, tx| tx.receiver_count() > 0);
    for (target, tx) in &st.senders {
        let set = latest.get(target).cloned().unwrap_or_default();
        tx.send_if_modified(|cur| {
            let changed = **cur != *set;
            if changed {
                tracing::debug!(
                    %target,
                    endpoints = ?set.addrs,
                    h3 = ?set.h3,
                    "endpoints changed"
                );
                *cur = set;
            }
            changed
        });
    }
    st.latest = latest;
}

impl Resolve for LocalResolver {
    fn resolve(&self, target: &Target) -> watch::Receiver<Arc<EndpointSet>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = st.senders.get(target) {
            return tx.subscribe();
        }
        let set = st.latest.get(target).cloned().unwrap_or_default();
        let tx = watch::Sender::new(set);
        let rx = tx.subscribe();
        st.senders.insert(target.clone(), tx);
        rx
    }

    fn name(&self) -> &'static str {
        "local"
    }

    fn actor_hosts(&self, namespace: &str, actor_type: &str) -> Vec<(Target, SocketAddr)> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.actors)
            .get(&(namespace.to_owned(), actor_type.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn peers(&self) -> Vec<Peer> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.peers.clone()
    }

    fn at_address(&self, ip: IpAddr) -> Vec<(Target, SocketAddr)> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        crate::entries_at(
            st.latest
                .iter()
                .flat_map(|(t, set)| set.addrs.iter().map(move |a| (t, a))),
            ip,
        )
    }
}

#[cfg(test)]
mod tests;
