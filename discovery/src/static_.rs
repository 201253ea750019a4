//! The `static` resolver: a fixed map of targets to addresses from the configuration, each with
//! the transports its mesh port offers and the actor types hosted there (`actors`), which actor
//! placement hashes over.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;

use crate::{EndpointSet, Resolve, StaticActors, StaticMap, Target};

/// Resolves from a fixed map; targets not in it have an empty set forever.
pub struct StaticResolver {
    sets: BTreeMap<Target, watch::Sender<Arc<EndpointSet>>>,
    empty: watch::Sender<Arc<EndpointSet>>,
    actors: StaticActors,
}

impl StaticResolver {
    /// A resolver over `map`: each target's addresses, with what each offers, and the actor
    /// types hosted behind some of them.
    pub fn new(map: StaticMap, actors: StaticActors) -> Self {
        let sets = map
            .into_iter()
            .map(|(t, endpoints)| {
                let set = EndpointSet::with_transports(endpoints);
                (t, watch::Sender::new(Arc::new(set)))
            })
            .collect();
        Self {
            sets,
            empty: watch::Sender::new(Arc::default()),
            actors,
        }
    }
}

impl Resolve for StaticResolver {
    fn resolve(&self, target: &Target) -> watch::Receiver<Arc<EndpointSet>> {
        self.sets.get(target).unwrap_or(&self.empty).subscribe()
    }

    fn name(&self) -> &'static str {
        "static"
    }

    fn actor_hosts(&self, namespace: &str, actor_type: &str) -> Vec<(Target, SocketAddr)> {
        // Keys are sorted and unique, so the hosts are too.
        (self.actors.iter())
            .filter(|((t, _), types)| {
                t.namespace == namespace && types.iter().any(|n| n == actor_type)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn peers(&self) -> Vec<crate::Peer> {
        let mut peers: Vec<crate::Peer> = (self.sets.iter())
            .flat_map(|(t, tx)| {
                let set = tx.borrow().clone();
                (set.addrs.iter())
                    .map(|a| crate::Peer {
                        target: t.clone(),
                        address: *a,
                        transports: crate::Transports {
                            h3: set.h3.contains(a),
                        },
                        admin_port: None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        peers.sort_by(|a, b| (&a.target, a.address).cmp(&(&b.target, b.address)));
        peers
    }

    fn at_address(&self, ip: IpAddr) -> Vec<(Target, SocketAddr)> {
        let sets: Vec<(&Target, Arc<EndpointSet>)> = self
            .sets
            .iter()
            .map(|(t, tx)| (t, tx.borrow().clone()))
            .collect();
        crate::entries_at(
            sets.iter()
                .flat_map(|(t, set)| set.addrs.iter().map(move |a| (*t, a))),
            ip,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transports;

    #[test]
    fn known_and_unknown_targets() {
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:10".parse().unwrap();
        let endpoints = vec![
            (a, Transports::H2),
            (b, Transports::H2),
            (a, Transports::H2_H3),
        ];
        let counter = BTreeMap::from([
            ((Target::new("b", "default"), b), vec!["Counter".to_owned()]),
            ((Target::new("c", "other"), a), vec!["Counter".to_owned()]),
        ]);
        let r = StaticResolver::new(
            BTreeMap::from([(Target::new("b", "default"), endpoints)]),
            counter,
        );
        assert_eq!(
            r.actor_hosts("default", "Counter"),
            vec![(Target::new("b", "default"), b)]
        );
        assert!(r.actor_hosts("default", "Timer").is_empty());
        let set = r.resolve(&Target::new("b", "default")).borrow().clone();
        assert_eq!(set.addrs, vec![a, b]);
        assert!(set.offers_h3(a) && !set.offers_h3(b));
        assert!(r.resolve(&Target::new("b", "other")).borrow().is_empty());
        assert_eq!(
            r.at_address(a.ip()),
            vec![
                (Target::new("b", "default"), a),
                (Target::new("b", "default"), b)
            ]
        );
        assert!(r.at_address("127.0.0.2".parse().unwrap()).is_empty());
        assert!(!r.resolve(&Target::new("b", "other")).borrow().offers_h3(a));
    }
}
