//! Where an actor lives, without a placement service: the hosts of its type come from discovery
//! (each sidecar announces the types its app hosts), and one consistent hash over them
//! ([`Ring`]) names the owner, the same on every sidecar that sees the same hosts. Views may
//! differ for a moment while hosts come and go; the claim in the actor store, not the ring, keeps
//! an actor on one host at a time. Under the `dns` resolver the hosts are learned by asking the
//! sidecars DNS lists ([`asked`]).

pub(crate) mod asked;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use outrider_blocks::actors::placement::Ring;
use outrider_discovery::{Resolve, Target};

/// How often this sidecar looks for itself in discovery until it finds itself there.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// A host of actors: its app and its sidecar's mesh address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) target: Target,
    pub(crate) addr: SocketAddr,
}

/// The owner of an actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// This sidecar.
    Me,
    /// Another sidecar.
    Peer(Peer),
}

/// The hosts of one type, and their ring.
struct Hosts {
    entries: Vec<(Target, SocketAddr)>,
    ring: Ring,
}

/// Actor placement from discovery.
pub(crate) struct Placement {
    resolver: Arc<dyn Resolve>,
    /// The hosts other sidecars said they are, when discovery does not carry actor types.
    asked: OnceLock<Arc<asked::Asked>>,
    /// The types this sidecar's app hosts.
    here: std::sync::RwLock<Vec<String>>,
    namespace: String,
    /// This sidecar's app.
    app: Target,
    /// This sidecar's mesh port.
    mesh_port: u16,
    /// This sidecar as discovery lists it once found there, else when it was last looked for.
    me: RwLock<Result<SocketAddr, Option<Instant>>>,
    rings: Mutex<HashMap<String, Arc<Hosts>>>,
}

impl Placement {
    pub(crate) fn new(resolver: Arc<dyn Resolve>, app: Target, mesh_port: u16) -> Self {
        Self {
            resolver,
            asked: OnceLock::new(),
            here: RwLock::default(),
            namespace: app.namespace.clone(),
            app,
            mesh_port,
            me: RwLock::new(Err(None)),
            rings: Mutex::new(HashMap::new()),
        }
    }

    /// Notes the types this sidecar's app hosts.
    pub(crate) fn host_here(&self, types: Vec<String>) {
        *self.here.write().unwrap_or_else(|p| p.into_inner()) = types;
    }

    /// The types this sidecar's app hosts, as other sidecars are told.
    pub(crate) fn hosted(&self) -> Vec<String> {
        self.here.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// From now on, the hosts of each type are those [`asked::follow`] learns, with this
    /// sidecar (once discovery lists it), rather than what the resolver says.
    pub(crate) fn asking(&self) -> Arc<asked::Asked> {
        self.asked.get_or_init(Arc::default).clone()
    }

    fn hosted_here(&self, actor_type: &str) -> bool {
        (self.here.read().unwrap_or_else(|p| p.into_inner()))
            .iter()
            .any(|t| t == actor_type)
    }

    /// This sidecar's mesh address as peers know it: its endpoint as discovery lists it (on
    /// this host, on its mesh port), found once; the loopback address until then.
    pub(crate) fn me(&self) -> SocketAddr {
        let loopback = SocketAddr::from(([127, 0, 0, 1], self.mesh_port));
        match *self.me.read().unwrap_or_else(PoisonError::into_inner) {
            Ok(me) => return me,
            // Looked for less than a second ago: not again on every call.
            Err(Some(at)) if at.elapsed() < LOOK_AGAIN => return loopback,
            Err(_) => {}
        }
        let found = outrider_discovery::own_address(&*self.resolver, &self.app, self.mesh_port);
        *self.me.write().unwrap_or_else(PoisonError::into_inner) =
            found.ok_or(Some(Instant::now()));
        found.unwrap_or(loopback)
    }

    /// This sidecar's mesh address, once discovery lists it.
    pub(crate) fn found_me(&self) -> Option<SocketAddr> {
        self.me();
        (*self.me.read().unwrap_or_else(PoisonError::into_inner)).ok()
    }

    /// Whether discovery lists this sidecar, so that what it tells others about itself (its
    /// claims' address) is what they reach it at. Over mDNS, whose announcement goes out a
    /// moment after the start, waits for it up to `limit` (or until `stop`); other resolvers
    /// list a sidecar from the start or never.
    pub(crate) async fn find_me(
        &self,
        limit: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(me) =
                outrider_discovery::own_address(&*self.resolver, &self.app, self.mesh_port)
            {
                *self.me.write().unwrap_or_else(PoisonError::into_inner) = Ok(me);
                return true;
            }
            if self.resolver.name() != "mdns" || Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// The types among `types` that discovery does not list at this sidecar's address.
    pub(crate) fn unlisted(&self, types: &[String]) -> Vec<String> {
        let me = self.me();
        (types.iter())
            .filter(|t| !(self.listed_hosts(t).iter()).any(|(_, a)| *a == me))
            .cloned()
            .collect()
    }

    /// The owner of actor `id` of `actor_type` as this sidecar sees the hosts now; `None` when
    /// no host of the type is known. A type this sidecar hosts that discovery does not list (a
    /// resolver that carries no actor types) is owned here.
    pub(crate) fn owner(&self, actor_type: &str, id: &str) -> Option<Owner> {
        let Some(hosts) = self.hosts(actor_type) else {
            return self.hosted_here(actor_type).then_some(Owner::Me);
        };
        let owner = hosts.ring.owner(actor_type, id)?;
        let (target, addr) = hosts.entries.iter().find(|(_, a)| a.to_string() == owner)?;
        Some(if *addr == self.me() {
            Owner::Me
        } else {
            Owner::Peer(Peer {
                target: target.clone(),
                addr: *addr,
            })
        })
    }

    /// Whether this sidecar fires job `name` of its app: the same hash over the app's
    /// instances as discovery lists them (this one alone when it lists none).
    pub(crate) fn owns_job(&self, app: &Target, name: &str) -> bool {
        let addrs = self.resolver.resolve(app).borrow().addrs.clone();
        let me = self.me();
        // A resolver that does not list this sidecar as it knows itself: every instance races
        // for each firing's lease (one still wins), rather than none firing at all.
        if !addrs.contains(&me) {
            return true;
        }
        let ring = Ring::new(addrs.iter().map(ToString::to_string));
        ring.owner("||jobs", name) == Some(me.to_string().as_str())
    }

    /// The hosts of `actor_type`, sorted: as discovery lists them, or as the sidecars asked said
    /// (with this one, when it hosts the type and discovery lists it).
    fn listed_hosts(&self, actor_type: &str) -> Vec<(Target, SocketAddr)> {
        let Some(asked) = self.asked.get() else {
            return self.resolver.actor_hosts(&self.namespace, actor_type);
        };
        let mut hosts = asked.actor_hosts(actor_type);
        if self.hosted_here(actor_type)
            && let Some(me) = self.found_me()
        {
            hosts.push((self.app.clone(), me));
            hosts.sort();
            hosts.dedup();
        }
        hosts
    }

    /// The hosts of `actor_type` and their ring, rebuilt only when the hosts changed.
    fn hosts(&self, actor_type: &str) -> Option<Arc<Hosts>> {
        let entries = self.listed_hosts(actor_type);
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.is_empty() {
            rings.remove(actor_type);
            return None;
        }
        if let Some(h) = rings.get(actor_type)
            && h.entries == entries
        {
            return Some(h.clone());
        }
        let ring = Ring::new(entries.iter().map(|(_, a)| a.to_string()));
        let hosts = Arc::new(Hosts { entries, ring });
        rings.insert(actor_type.to_owned(), hosts.clone());
        Some(hosts)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use outrider_discovery::{EndpointSet, StaticMap};
    use tokio::sync::watch;

    use super::*;

    /// A resolver whose actor hosts are set by the test.
    struct Hosting(Mutex<Vec<(Target, SocketAddr)>>);

    impl Resolve for Hosting {
        fn resolve(&self, _: &Target) -> watch::Receiver<Arc<EndpointSet>> {
            watch::channel(Arc::default()).1
        }
        fn name(&self) -> &'static str {
            "test"
        }
        fn actor_hosts(&self, ns: &str, t: &str) -> Vec<(Target, SocketAddr)> {
            assert_eq!((ns, t), ("prod", "Counter"));
            self.0.lock().unwrap().clone()
        }
        fn at_address(&self, _: IpAddr) -> Vec<(Target, SocketAddr)> {
            Vec::new()
        }
    }

    fn host(port: u16) -> (Target, SocketAddr) {
        (
            Target::new("app", "prod"),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    #[test]
    fn every_sidecar_names_the_same_owner_and_only_hosts_of_the_type() {
        let _unused: StaticMap = StaticMap::new();
        let hosts = vec![host(1), host(2), host(3)];
        let views: Vec<Placement> = hosts
            .iter()
            .map(|(_, me)| {
                let r = Arc::new(Hosting(Mutex::new(hosts.clone())));
                Placement::new(r, Target::new("app", "prod"), me.port())
            })
            .collect();
        let mut mine = [0usize; 3];
        for i in 0..300 {
            let id = format!("actor-{i}");
            let seen: Vec<Owner> = views
                .iter()
                .map(|p| p.owner("Counter", &id).unwrap())
                .collect();
            // Exactly one view says `Me`, and the others name that same sidecar.
            let me: Vec<usize> = (0..3).filter(|v| seen[*v] == Owner::Me).collect();
            assert_eq!(me.len(), 1, "{id}: {seen:?}");
            let owner = hosts[me[0]].1;
            for s in &seen {
                if let Owner::Peer(p) = s {
                    assert_eq!(p.addr, owner);
                }
            }
            mine[me[0]] += 1;
        }
        assert!(mine.iter().all(|n| *n > 50), "uneven: {mine:?}");
    }

    #[test]
    fn no_host_no_owner_and_the_ring_follows_the_hosts() {
        let r = Arc::new(Hosting(Mutex::new(Vec::new())));
        let p = Placement::new(r.clone(), Target::new("app", "prod"), host(1).1.port());
        assert_eq!(p.owner("Counter", "a"), None);
        *r.0.lock().unwrap() = vec![host(1)];
        assert_eq!(p.owner("Counter", "a"), Some(Owner::Me));
        *r.0.lock().unwrap() = vec![host(2)];
        assert_eq!(
            p.owner("Counter", "a"),
            Some(Owner::Peer(Peer {
                target: host(2).0,
                addr: host(2).1
            }))
        );
    }
}
