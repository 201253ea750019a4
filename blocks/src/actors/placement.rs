//! Which host owns an actor: one consistent hash over the hosts of its type, which every sidecar
//! computes alike from the same membership, with no placement service.
//!
//! Each host stands on the ring at [`VIRTUAL_NODES`] points; an actor `(type, id)` belongs to the
//! first point at or after its own hash. Points come from a 64-bit FNV-1a hash passed through a
//! mixing finaliser, so similar names (`host-1`, `host-2`) still spread evenly. When a host joins
//! or leaves, only the actors of the points it gains or loses move; every other actor keeps its
//! owner. Views of the membership may disagree for a moment: the actor lease, not the ring, is what
//! keeps an actor active on one host at a time.

use std::collections::BTreeSet;

/// Points per host: enough that each host's share stays within a few percent of its due.
pub const VIRTUAL_NODES: usize = 100;

/// The ring of one actor type's hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// `(point, host index)`, sorted by point.
    points: Vec<(u64, usize)>,
    hosts: Vec<String>,
}

/// FNV-1a (64 bits), then the SplitMix64 finaliser: every input bit moves every output bit.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Ring {
    /// A ring over `hosts` (duplicates count once; order does not matter).
    pub fn new<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(Into::into)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut points: Vec<(u64, usize)> = hosts
            .iter()
            .enumerate()
            .flat_map(|(i, host)| {
                (0..VIRTUAL_NODES).map(move |v| (hash(format!("{host}#{v}").as_bytes()), i))
            })
            .collect();
        // Equal points (vanishingly rare) go to the host that sorts first, on every sidecar.
        points.sort_unstable();
        points.dedup_by_key(|(point, _)| *point);
        Self { points, hosts }
    }

    /// The hosts on the ring, sorted.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The host owning actor `id` of `actor_type`; `None` when the ring is empty.
    pub fn owner(&self, actor_type: &str, id: &str) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        // `||` cannot appear in either part: daprd's key layout refuses it.
        let key = hash(format!("{actor_type}||{id}").as_bytes());
        let at = self.points.partition_point(|(point, _)| *point < key);
        let (_, host) = self.points[at % self.points.len()];
        Some(self.hosts[host].as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn shares(ring: &Ring, n: usize) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for i in 0..n {
            let owner = ring.owner("counter", &format!("actor-{i}")).unwrap();
            *out.entry(owner.to_owned()).or_insert(0) += 1;
        }
        out
    }

    #[test]
    fn every_sidecar_computes_the_same_owner() {
        let a = Ring::new(["10.0.0.2:3500", "10.0.0.1:3500", "10.0.0.3:3500"]);
        let b = Ring::new([
            "10.0.0.3:3500",
            "10.0.0.1:3500",
            "10.0.0.2:3500",
            "10.0.0.1:3500",
        ]);
        assert_eq!(a, b);
        for i in 0..1000 {
            let id = format!("{i}");
            assert_eq!(a.owner("t", &id), b.owner("t", &id));
        }
        assert_eq!(Ring::new(Vec::<String>::new()).owner("t", "1"), None);
    }

    #[test]
    fn hosts_share_the_actors_evenly() {
        let ring = Ring::new(["host-1", "host-2", "host-3"]);
        let n = 90_000;
        for (host, count) in shares(&ring, n) {
            let due = n / 3;
            // Within 15 % of an even share with 100 points per host.
            assert!(
                count.abs_diff(due) < due * 15 / 100,
                "{host}: {count} of {n}"
            );
        }
    }

    #[test]
    fn a_host_leaving_or_joining_moves_only_its_own_actors() {
        let three = Ring::new(["host-1", "host-2", "host-3"]);
        let two = Ring::new(["host-1", "host-3"]);
        let four = Ring::new(["host-1", "host-2", "host-3", "host-4"]);
        let mut joined = 0;
        for i in 0..20_000 {
            let id = format!("actor-{i}");
            let before = three.owner("t", &id).unwrap();
            // Leaving: only host-2's actors move.
            if before != "host-2" {
                assert_eq!(two.owner("t", &id), Some(before), "{id}");
            }
            // Joining: an actor either stays or moves to the new host.
            let after = four.owner("t", &id).unwrap();
            if after != before {
                assert_eq!(after, "host-4", "{id}");
                joined += 1;
            }
        }
        // The new host takes about a quarter.
        assert!((3_500..6_500).contains(&joined), "{joined}");
    }
}
