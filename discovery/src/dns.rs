//! The `dns` resolver: a target's endpoints are what a DNS name says, as with Kubernetes
//! services.
//!
//! The name comes from a template (`{appId}.{namespace}.svc.{clusterDomain}` by default). The
//! resolver asks first for SRV records under a prefix (`_mesh._tcp.<name>`, a Kubernetes named
//! port): each gives a host and the port to use. Without SRV records it asks for A/AAAA records
//! of the name and uses the configured mesh port. Each target followed is looked up again in the
//! background when its answer's TTL runs out (within 1 s to 5 min), so changed records move
//! traffic without a restart; a failed lookup keeps the last answer and is tried again soon.
//!
//! Which endpoints also accept HTTP/3 over QUIC (on UDP, same port number) comes from a second
//! SRV lookup under the UDP prefix (`_mesh._udp.<name>`, a Kubernetes named port with protocol
//! UDP), asked only when the TCP SRV lookup gave endpoints. Its records are read like the TCP
//! ones (best priority, targets resolved to addresses), and an endpoint offers HTTP/3 when both
//! answers list its resolved address and port. A failed or empty UDP lookup means HTTP/2 only,
//! never an error; A/AAAA answers are HTTP/2 only. The answer is looked up again when the first
//! of the records used expires.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig as HickoryConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use tokio::sync::watch;

use crate::{DnsConfig, EndpointSet, Resolve, Target, Transports};

/// Bounds on how soon an answer is looked up again, whatever its TTL says.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(300);
/// How soon a failed lookup is tried again.
const RETRY: Duration = Duration::from_secs(2);
/// One query's deadline, and how long a request waits for a target's first answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(2);

/// Resolves through DNS.
pub struct DnsResolver {
    cfg: Arc<DnsConfig>,
    resolver: TokioResolver,
    targets: Arc<Mutex<HashMap<Target, Followed>>>,
}

struct Followed {
    tx: watch::Sender<Arc<EndpointSet>>,
    /// What the last lookup found out, for errors.
    last: Arc<Mutex<String>>,
}

/// One lookup's outcome.
struct Answer {
    /// Each mesh address, with what its port offers.
    endpoints: Vec<(SocketAddr, Transports)>,
    /// When the first of the records used expires.
    valid_until: Instant,
}

impl DnsResolver {
    /// A resolver asking the configured name servers (or the system's).
    pub fn new(cfg: &DnsConfig) -> Result<Self, NetError> {
        let mut builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder_tokio()?
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|a| {
                    let conns = [ConnectionConfig::udp(), ConnectionConfig::tcp()].map(|mut c| {
                        c.port = a.port();
                        c
                    });
                    NameServerConfig::new(a.ip(), true, conns.into())
                })
                .collect();
            TokioResolver::builder_with_config(
                HickoryConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 2;
        // Re-resolution follows TTLs itself; short-lived records must not outlive them here.
        opts.positive_max_ttl = Some(MAX_REFRESH);
        opts.negative_max_ttl = Some(MIN_REFRESH);
        Ok(Self {
            cfg: Arc::new(cfg.clone()),
            resolver: builder.build()?,
            targets: Arc::default(),
        })
    }
}

impl Resolve for DnsResolver {
    fn resolve(&self, target: &Target) -> watch::Receiver<Arc<EndpointSet>> {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = targets.get(target) {
            return f.tx.subscribe();
        }
        let tx = watch::Sender::new(Arc::default());
        let rx = tx.subscribe();
        let last = Arc::new(Mutex::new("no answer yet".to_owned()));
        targets.insert(
            target.clone(),
            Followed {
                tx: tx.clone(),
                last: last.clone(),
            },
        );
        tokio::spawn(follow(
            self.resolver.clone(),
            self.cfg.clone(),
            target.clone(),
            tx,
            last,
            Arc::downgrade(&self.targets),
        ));
        rx
    }

    fn name(&self) -> &'static str {
        "dns"
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    fn why_unresolved(&self, target: &Target) -> Option<String> {
        let targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let last = targets.get(target).map(|f| {
            f.last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        });
        Some(format!(
            "DNS has no address for {} ({})",
            self.cfg.name_of(target),
            last.unwrap_or_else(|| "not looked up".into())
        ))
    }
}

type Targets = std::sync::Weak<Mutex<HashMap<Target, Followed>>>;

/// Looks `target` up whenever its answer expires, while anyone follows it.
async fn follow(
    resolver: TokioResolver,
    cfg: Arc<DnsConfig>,
    target: Target,
    tx: watch::Sender<Arc<EndpointSet>>,
    last: Arc<Mutex<String>>,
    targets: Targets,
) {
    let name = cfg.name_of(&target);
    loop {
        let wait = match lookup(&resolver, &cfg, &name).await {
            Ok(answer) => publish(&tx, &last, &target, &name, answer),
            Err(e) => {
                // Keep what was known: a resolver outage must not empty a working target.
                tracing::warn!(%target, name = %name, error = %e, "DNS lookup failed; keeping the last answer");
                *last.lock().unwrap_or_else(PoisonError::into_inner) =
                    format!("lookup failed: {e}");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
        if tx.receiver_count() == 0 {
            // Nobody follows the target any more: forget it (unless it was just asked for again).
            let Some(targets) = targets.upgrade() else {
                return;
            };
            let mut map = targets.lock().unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 {
                map.remove(&target);
                return;
            }
        }
    }
}

/// Publishes a lookup's endpoints when they changed, notes the outcome in `last`, and returns how
/// long the answer stays valid (within the refresh bounds).
fn publish(
    tx: &watch::Sender<Arc<EndpointSet>>,
    last: &Mutex<String>,
    target: &Target,
    name: &str,
    answer: Answer,
) -> Duration {
    *last.lock().unwrap_or_else(PoisonError::into_inner) = if answer.endpoints.is_empty() {
        "no SRV or A/AAAA records".to_owned()
    } else {
        format!("{} endpoint(s)", answer.endpoints.len())
    };
    let valid_until = answer.valid_until;
    let set = Arc::new(EndpointSet::with_transports(answer.endpoints));
    tx.send_if_modified(|cur| {
        let changed = **cur != *set;
        if changed {
            tracing::debug!(
                %target,
                name = %name,
                endpoints = ?set.addrs,
                h3 = ?set.h3,
                "DNS endpoints changed"
            );
            *cur = set;
        }
        changed
    });
    valid_until
        .saturating_duration_since(Instant::now())
        .clamp(MIN_REFRESH, MAX_REFRESH)
}

/// SRV first (when configured, and then the UDP SRV records for HTTP/3), then A/AAAA with the
/// configured port. "No such records" is an answer (an empty set); anything else is an error.
async fn lookup(resolver: &TokioResolver, cfg: &DnsConfig, name: &str) -> Result<Answer, NetError> {
    if let Some(prefix) = &cfg.srv {
        match resolver.srv_lookup(format!("{prefix}.{name}")).await {
            Ok(srv) => {
                if let Some(mut answer) = srv_targets(resolver, &srv).await? {
                    if let Some(udp) = &cfg.srv_udp {
                        offer_h3(resolver, &format!("{udp}.{name}"), &mut answer).await;
                    }
                    return Ok(answer);
                }
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => return Err(e),
        }
    }
    match resolver.lookup_ip(name).await {
        Ok(found) => Ok(Answer {
            endpoints: found
                .iter()
                .map(|ip| (SocketAddr::new(ip, cfg.mesh_port), Transports::H2))
                .collect(),
            valid_until: found.valid_until(),
        }),
        Err(e) if e.is_no_records_found() => Ok(Answer {
            endpoints: Vec::new(),
            valid_until: Instant::now(),
        }),
        Err(e) => Err(e),
    }
}

/// The addresses of an SRV answer's targets of the best (lowest) priority; RFC 2782's `.`
/// target ("no service here") and targets that do not resolve are left out. `None` when no
/// target is usable; an error only when every target's lookup failed.
async fn srv_targets(
    resolver: &TokioResolver,
    srv: &hickory_resolver::lookup::Lookup,
) -> Result<Option<Answer>, NetError> {
    let records: Vec<_> = srv
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(rec) if !rec.target.is_root() => Some(rec),
            _ => None,
        })
        .collect();
    let Some(best) = records.iter().map(|r| r.priority).min() else {
        return Ok(None);
    };
    let mut valid_until = srv.valid_until();
    let (mut addrs, mut last_error) = (Vec::new(), None);
    for rec in records.into_iter().filter(|r| r.priority == best) {
        // Addresses sent along with the answer save a query.
        let mut ips: Vec<IpAddr> = srv
            .additionals()
            .iter()
            .filter(|r| r.name == rec.target)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if ips.is_empty() {
            match resolver.lookup_ip(rec.target.clone()).await {
                Ok(found) => {
                    valid_until = valid_until.min(found.valid_until());
                    ips.extend(found.iter());
                }
                Err(e) if e.is_no_records_found() => {}
                Err(e) => {
                    tracing::debug!(target = %rec.target, error = %e, "an SRV target did not resolve");
                    last_error = Some(e);
                }
            }
        }
        addrs.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, rec.port)));
    }
    match (addrs.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        (true, None) => Ok(None),
        (false, _) => Ok(Some(Answer {
            endpoints: addrs.into_iter().map(|a| (a, Transports::H2)).collect(),
            valid_until,
        })),
    }
}

/// Marks the endpoints of `answer` that the SRV records of `udp_name` list too (same resolved
/// address and port) as offering HTTP/3, and shortens `valid_until` to the UDP answer's. A failed
/// or empty lookup leaves the endpoints HTTP/2 only, never an error; a failed one is asked again
/// after the retry interval.
async fn offer_h3(resolver: &TokioResolver, udp_name: &str, answer: &mut Answer) {
    let udp = match resolver.srv_lookup(udp_name).await {
        Ok(srv) => srv_targets(resolver, &srv).await,
        Err(e) if e.is_no_records_found() => Ok(None),
        Err(e) => Err(e),
    };
    let udp = match udp {
        Ok(Some(udp)) => udp,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(
                name = %udp_name,
                error = %e,
                "the UDP SRV lookup failed; offering HTTP/2 only until it is asked again"
            );
            // A failure is not an answer: ask again soon rather than at the TCP records' expiry.
            answer.valid_until = answer.valid_until.min(Instant::now() + RETRY);
            return;
        }
    };
    let quic: HashSet<SocketAddr> = udp.endpoints.iter().map(|(a, _)| *a).collect();
    for (addr, transports) in &mut answer.endpoints {
        if quic.contains(&*addr) {
            *transports = Transports::H2_H3;
        }
    }
    answer.valid_until = answer.valid_until.min(udp.valid_until);
}
