//! The `mdns` resolver: sidecars on one link find each other with multicast DNS service
//! discovery (RFC 6762/6763), as Dapr's self-hosted mode does.
//!
//! Every sidecar announces one instance of `_outrider._tcp.local.`: the instance name is its app
//! id and a random suffix (`b-1f2e3d4c`), so that the instances of one app never clash (a clash
//! renamed by the daemon, as RFC 6762 §9 asks, would not survive announcing again with the actor
//! types), the SRV record carries
//! the mesh port and a host name of its own, and the TXT record carries `app-id`, `namespace`,
//! `mesh-port` and `transports` (`h2` or `h2,h3`: whether the mesh port also accepts HTTP/3 over
//! QUIC on UDP; names not known are skipped, and an answer without the key offers HTTP/2 only),
//! and, once its app has said which actor types it hosts, `actors` (their names, comma-separated):
//! the announcement is then sent again with that entry, and actor placement hashes over the
//! instances that list a type.
//! Every sidecar also browses that service type for as long as it runs, so answers
//! are cached (with their TTLs, by the daemon) before the first request needs them. A stopping
//! sidecar sends goodbye packets, which remove its endpoint from every peer at once; one that dies
//! without them stays listed until its records expire, and the proxy's outlier detection keeps
//! requests away from it meanwhile.
//!
//! Announcing and browsing happen only on the configured interfaces (all of them when none is
//! named). (When it starts, the daemon joins the mDNS group on every interface before the
//! selection applies, so the kernel may send IGMP/MLD membership reports there; no mDNS packet
//! is sent on them.)

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::watch;

use crate::{EndpointSet, MdnsConfig, Peer, Resolve, Target, Transports};

/// The DNS-SD service type every sidecar announces.
pub const SERVICE_TYPE: &str = "_outrider._tcp.local.";

/// TXT keys.
const TXT_APP_ID: &str = "app-id";
const TXT_NAMESPACE: &str = "namespace";
const TXT_MESH_PORT: &str = "mesh-port";
const TXT_TRANSPORTS: &str = "transports";
const TXT_ACTORS: &str = "actors";
const TXT_ADMIN_PORT: &str = "admin-port";
/// The most a TXT entry holds (RFC 6763 §6.1), key and `=` included.
const MAX_TXT_ENTRY: usize = 255;

/// How long a request waits for a first answer about an app not seen yet (an answer to a
/// fresh query normally comes within a second).
const PATIENCE: Duration = Duration::from_millis(1500);

/// The longest app id an instance name holds: a DNS label (63 bytes) with room for the
/// `-xxxxxxxx` suffix.
pub const MAX_APP_ID: usize = 54;
/// The longest namespace its TXT entry (`namespace=…`, at most 255 bytes) holds.
pub const MAX_NAMESPACE: usize = 245;

/// How long a stopping sidecar waits for its goodbye packets to go out.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// What this sidecar announces about itself.
#[derive(Clone, Debug)]
pub struct Announcement {
    /// Its app id.
    pub app_id: String,
    /// Its namespace.
    pub namespace: String,
    /// The port its mesh listener is bound to.
    pub mesh_port: u16,
    /// What that port offers (TXT `transports`).
    pub transports: Transports,
    /// Its admin port, for other sidecars' dashboards and `outrider status` (TXT `admin-port`).
    pub admin_port: Option<u16>,
}

/// mDNS could not start: what was being done, and the daemon's error.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct MdnsError {
    /// What failed, e.g. `starting the mDNS daemon on UDP port 5353`.
    pub doing: String,
    /// The daemon's error.
    pub source: mdns_sd::Error,
}

fn failed(doing: impl Into<String>) -> impl FnOnce(mdns_sd::Error) -> MdnsError {
    let doing = doing.into();
    move |source| MdnsError { doing, source }
}

/// Resolves through mDNS and announces this sidecar.
pub struct MdnsResolver {
    daemon: ServiceDaemon,
    state: Arc<Mutex<State>>,
    /// Our own instance, once registered: what it was registered with, to announce it again.
    announced: Mutex<Option<Announced>>,
    /// The interfaces in use, for error messages.
    scope: String,
}

/// This sidecar's registered instance.
struct Announced {
    me: Announcement,
    instance: String,
    host: String,
    kinds: Vec<IfKind>,
    fullname: String,
}

/// One sidecar an answer described.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Instance {
    target: Target,
    addr: SocketAddr,
    transports: Transports,
    /// The actor types its app hosts (TXT `actors`).
    actors: Vec<String>,
    /// Its admin port (TXT `admin-port`), when announced.
    admin_port: Option<u16>,
}

#[derive(Default)]
struct State {
    /// Instance full name → the sidecar it describes.
    instances: HashMap<String, Instance>,
    senders: HashMap<Target, watch::Sender<Arc<EndpointSet>>>,
}

impl State {
    fn set_of(&self, target: &Target) -> Arc<EndpointSet> {
        let endpoints = self
            .instances
            .values()
            .filter(|i| i.target == *target)
            .map(|i| (i.addr, i.transports))
            .collect();
        Arc::new(EndpointSet::with_transports(endpoints))
    }

    /// Sends `target`'s current set to its followers; forgets targets nobody follows.
    fn publish(&mut self, target: &Target) {
        let set = self.set_of(target);
        if let Some(tx) = self.senders.get(target) {
            if tx.receiver_count() == 0 {
                self.senders.remove(target);
            } else {
                tx.send_if_modified(|cur| {
                    let changed = **cur != *set;
                    if changed {
                        *cur = set;
                    }
                    changed
                });
            }
        }
    }
}

impl MdnsResolver {
    /// Starts the mDNS daemon on the configured interfaces, browses for sidecars and, with
    /// `me`, announces this one. Must be called within a tokio runtime.
    pub fn start(cfg: &MdnsConfig, me: Option<&Announcement>) -> Result<Self, MdnsError> {
        // The configuration's validation made sure each named interface exists.
        let daemon = ServiceDaemon::new_with_port(cfg.port).map_err(failed(format!(
            "starting the mDNS daemon on UDP port {}",
            cfg.port
        )))?;
        let kinds: Vec<IfKind> = cfg.interfaces.iter().map(IfKind::from).collect();
        let events = (|| {
            if !kinds.is_empty() {
                // Selections apply in order: none, then the named ones.
                daemon.disable_interface(IfKind::All)?;
                daemon.enable_interface(kinds.clone())?;
            }
            daemon.browse(SERVICE_TYPE)
        })();
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(failed(format!("browsing for {SERVICE_TYPE}"))(e));
            }
        };
        let scope = if cfg.interfaces.is_empty() {
            "every interface".to_owned()
        } else {
            format!("interfaces {}", cfg.interfaces.join(", "))
        };
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(follow(daemon.clone(), events, Arc::downgrade(&state)));
        // From here on, dropping the resolver shuts the daemon down.
        let resolver = Self {
            daemon,
            state,
            announced: Mutex::new(None),
            scope,
        };
        if let Some(me) = me {
            // A host name and an instance of its own per sidecar: several may share a machine
            // (and its hostname), or an app id.
            let tag = unique();
            let mut announced = Announced {
                me: me.clone(),
                instance: format!("{}-{tag:08x}", me.app_id),
                host: format!("outrider-{tag:08x}.local."),
                kinds,
                fullname: String::new(),
            };
            resolver
                .announce(&mut announced, &[])
                .map_err(failed(format!("announcing {}.{SERVICE_TYPE}", me.app_id)))?;
            *resolver
                .announced
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(announced);
        }
        Ok(resolver)
    }

    /// Registers (or registers again, which updates what peers see) this sidecar's instance,
    /// with `actors` in its TXT record when there are any.
    fn announce(&self, a: &mut Announced, actors: &[String]) -> Result<(), mdns_sd::Error> {
        let port = a.me.mesh_port.to_string();
        let types = actors.join(",");
        let admin = a.me.admin_port.map(|p| p.to_string());
        let mut txt = vec![
            (TXT_APP_ID, a.me.app_id.as_str()),
            (TXT_NAMESPACE, a.me.namespace.as_str()),
            (TXT_MESH_PORT, &port),
            (TXT_TRANSPORTS, a.me.transports.as_str()),
        ];
        if !types.is_empty() {
            txt.push((TXT_ACTORS, &types));
        }
        if let Some(admin) = &admin {
            txt.push((TXT_ADMIN_PORT, admin));
        }
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &a.instance,
            &a.host,
            (),
            a.me.mesh_port,
            &txt[..],
        )?
        // The addresses of the enabled interfaces, kept current as they change.
        .enable_addr_auto();
        if !a.kinds.is_empty() {
            info.set_interfaces(a.kinds.clone());
        }
        a.fullname = info.get_fullname().to_owned();
        self.daemon.register(info)?;
        tracing::info!(instance = %a.fullname, scope = %self.scope, actors = %types, "announcing this sidecar over mDNS");
        Ok(())
    }

    /// Announces the actor types this sidecar's app hosts (TXT `actors`), so that placement on
    /// every peer counts this sidecar among their hosts. `false` when this sidecar is not
    /// announced (it stopped, or never announced itself).
    pub fn announce_actors(&self, types: &[String]) -> Result<bool, MdnsError> {
        let joined = types.join(",");
        if let Some(t) = types.iter().find(|t| t.contains(',')) {
            return Err(MdnsError {
                doing: format!("announcing actor types {joined:?}"),
                source: mdns_sd::Error::Msg(format!(
                    "actor type {t:?} holds a comma, which separates the types of TXT `{TXT_ACTORS}`"
                )),
            });
        }
        if TXT_ACTORS.len() + 1 + joined.len() > MAX_TXT_ENTRY {
            return Err(MdnsError {
                doing: format!("announcing actor types {joined:?}"),
                source: mdns_sd::Error::Msg(format!(
                    "they take {} bytes, and an mDNS TXT entry holds at most {MAX_TXT_ENTRY} \
                     (`{TXT_ACTORS}=` included)",
                    TXT_ACTORS.len() + 1 + joined.len()
                )),
            });
        }
        // Held while registering, so a withdrawal cannot slip in between.
        let mut current = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(a) = current.as_mut() else {
            return Ok(false);
        };
        let name = a.me.app_id.clone();
        self.announce(a, types).map_err(failed(format!(
            "announcing {name}.{SERVICE_TYPE} with its actor types"
        )))?;
        Ok(true)
    }

    /// Withdraws this sidecar's announcement: goodbye packets tell every peer to drop it now.
    /// Waits (bounded) for them to be sent.
    pub async fn withdraw(&self) {
        let Some(Announced { fullname, .. }) = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        match self.daemon.unregister(&fullname) {
            Ok(rx) => {
                if tokio::time::timeout(GOODBYE_WAIT, rx.recv_async())
                    .await
                    .is_err()
                {
                    tracing::warn!(instance = %fullname, "mDNS goodbye not confirmed in time");
                }
            }
            Err(e) => {
                tracing::warn!(instance = %fullname, error = %e, "withdrawing the mDNS announcement")
            }
        }
    }
}

impl Drop for MdnsResolver {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

impl Resolve for MdnsResolver {
    fn resolve(&self, target: &Target) -> watch::Receiver<Arc<EndpointSet>> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Targets nobody follows any more (an unknown app asked for once) are forgotten.
        st.senders.retain(|_, tx| tx.receiver_count() > 0);
        if let Some(tx) = st.senders.get(target) {
            return tx.subscribe();
        }
        let tx = watch::Sender::new(st.set_of(target));
        let rx = tx.subscribe();
        st.senders.insert(target.clone(), tx);
        rx
    }

    fn name(&self) -> &'static str {
        "mdns"
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    fn peers(&self) -> Vec<Peer> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut peers: Vec<Peer> = (st.instances.values())
            .map(|i| Peer {
                target: i.target.clone(),
                address: i.addr,
                transports: i.transports,
                admin_port: i.admin_port,
            })
            .collect();
        peers.sort_by(|a, b| (&a.target, a.address).cmp(&(&b.target, b.address)));
        peers.dedup();
        peers
    }

    fn at_address(&self, ip: IpAddr) -> Vec<(Target, SocketAddr)> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        crate::entries_at(st.instances.values().map(|i| (&i.target, &i.addr)), ip)
    }

    fn actor_hosts(&self, namespace: &str, actor_type: &str) -> Vec<(Target, SocketAddr)> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hosts: Vec<(Target, SocketAddr)> = (st.instances.values())
            .filter(|i| i.target.namespace == namespace && i.actors.iter().any(|t| t == actor_type))
            .map(|i| (i.target.clone(), i.addr))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    fn why_unresolved(&self, target: &Target) -> Option<String> {
        Some(format!(
            "no mDNS answer for app {} in namespace {} within {} ms (service {SERVICE_TYPE}, {}); check that it \
             runs on this link and that multicast reaches it, or use the local, static or dns resolver",
            target.app_id,
            target.namespace,
            PATIENCE.as_millis(),
            self.scope
        ))
    }
}

/// Applies browse events until the resolver stops. The daemon ends a browse whose channel
/// overflows; it is then started again (answers come back as the daemon re-queries).
async fn follow(
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
    state: std::sync::Weak<Mutex<State>>,
) {
    let mut events = events;
    loop {
        apply(&events, &state).await;
        if state.strong_count() == 0 {
            return;
        }
        tracing::warn!("the mDNS browse stopped; browsing again");
        tokio::time::sleep(Duration::from_secs(1)).await;
        match daemon.browse(SERVICE_TYPE) {
            Ok(e) => events = e,
            Err(e) => {
                tracing::error!(error = %e, "mDNS browsing failed; endpoints are no longer updated");
                return;
            }
        }
    }
}

async fn apply(events: &mdns_sd::Receiver<ServiceEvent>, state: &std::sync::Weak<Mutex<State>>) {
    while let Ok(event) = events.recv_async().await {
        let Some(state) = state.upgrade() else { return };
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            ServiceEvent::ServiceResolved(svc) => {
                let Some(instance) = endpoint_of(&svc) else {
                    tracing::debug!(instance = %svc.fullname, "ignoring an mDNS answer without app-id, namespace and an address");
                    continue;
                };
                tracing::debug!(
                    instance = %svc.fullname,
                    target = %instance.target,
                    addr = %instance.addr,
                    transports = %instance.transports,
                    actors = ?instance.actors,
                    "mDNS endpoint"
                );
                let target = instance.target.clone();
                let old = st.instances.insert(svc.fullname.clone(), instance);
                if let Some(old) = old.filter(|i| i.target != target) {
                    st.publish(&old.target);
                }
                st.publish(&target);
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Some(gone) = st.instances.remove(&fullname) {
                    tracing::debug!(instance = %fullname, target = %gone.target, addr = %gone.addr, "mDNS endpoint gone");
                    st.publish(&gone.target);
                }
            }
            _ => {}
        }
    }
}

/// A value unlikely to repeat across sidecars: the pid and the clock.
fn unique() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id().wrapping_mul(2_654_435_761) ^ nanos
}

mod answer;
use answer::endpoint_of;
#[cfg(test)]
use answer::pick_address;

#[cfg(test)]
mod tests;
