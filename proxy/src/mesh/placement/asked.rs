//! Actor hosts under the `dns` resolver. DNS lists an app's sidecars but not the actor types
//! their apps host, so each sidecar of the apps that may host actors (the resolver's
//! `actorHosts`, and this sidecar's own app) is asked over the mesh which types its app hosts:
//! a `GET` marked as an actor hop of kind `hosts`, over the same mutual TLS as any call, the
//! callee's identity checked. Every sidecar is asked again every few seconds, and one DNS lists
//! for the first time at once. One that fails to answer twice in a row stops counting as a host
//! until it answers again; one DNS no longer lists is dropped at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Request, Response};
use outrider_discovery::Target;
use tokio_util::sync::CancellationToken;

use super::Placement;
use crate::mesh::ACTOR_HOP;
use crate::mesh::outbound::Outbound;
use crate::net::http::{Body, collect_within, empty, full};

/// How often DNS's lists are read (new sidecars are asked then).
const TICK: Duration = Duration::from_secs(1);
/// Every sidecar is asked again every this many ticks.
const ASK_EVERY: u64 = 3;
/// How long one sidecar has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How many sidecars are asked at once.
const AT_ONCE: usize = 16;
/// Failed answers in a row after which a sidecar no longer counts as a host.
const MISSES: u8 = 2;
/// Bounds on an answer: its size, its number of types, and each type's length.
const MAX_ANSWER: usize = 64 << 10;
const MAX_TYPES: usize = 512;
const MAX_TYPE_LEN: usize = 256;

/// The value of [`ACTOR_HOP`] that asks a sidecar which types its app hosts.
pub(crate) const HOSTS_HOP: &str = "hosts";

/// What the sidecars asked said they host.
#[derive(Default)]
pub(crate) struct Asked {
    answers: RwLock<BTreeMap<(Target, SocketAddr), Answer>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Answer {
    types: Vec<String>,
    /// Failed answers since the last good one.
    misses: u8,
}

impl Asked {
    /// The sidecars (other than this one) that say their app hosts `actor_type`, sorted.
    pub(crate) fn actor_hosts(&self, actor_type: &str) -> Vec<(Target, SocketAddr)> {
        let answers = self.answers.read().unwrap_or_else(PoisonError::into_inner);
        (answers.iter())
            .filter(|(_, a)| a.misses < MISSES && a.types.iter().any(|t| t == actor_type))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Keeps only the sidecars in `listed`; answers which of them are due to be asked: all of
    /// them when `all`, else those never asked.
    fn due(&self, listed: &[(Target, SocketAddr)], all: bool) -> Vec<(Target, SocketAddr)> {
        let mut answers = self.answers.write().unwrap_or_else(PoisonError::into_inner);
        answers.retain(|k, _| listed.contains(k));
        (listed.iter())
            .filter(|k| all || !answers.contains_key(*k))
            .cloned()
            .collect()
    }

    /// Records one sidecar's answer: its types, or a miss.
    fn record(&self, key: (Target, SocketAddr), answer: Option<Vec<String>>) {
        let mut answers = self.answers.write().unwrap_or_else(PoisonError::into_inner);
        let entry = answers.entry(key).or_default();
        match answer {
            Some(types) => *entry = Answer { types, misses: 0 },
            None => entry.misses = entry.misses.saturating_add(1),
        }
    }
}

/// Asks the sidecars of `apps` (as DNS lists them) what they host until `stop`.
pub(crate) async fn follow(
    placement: Arc<Placement>,
    outbound: Arc<Outbound>,
    apps: Vec<Target>,
    stop: CancellationToken,
) {
    let asked = placement.asking();
    let lists: Vec<_> = (apps.iter())
        .map(|t| (t.clone(), placement.resolver.resolve(t)))
        .collect();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let me = placement.found_me();
        let mut listed = Vec::new();
        for (target, list) in &lists {
            let set = list.borrow().clone();
            (set.addrs.iter())
                .filter(|a| Some(**a) != me)
                .for_each(|a| listed.push((target.clone(), *a)));
        }
        let due = asked.due(&listed, round % ASK_EVERY == 0);
        let answers = futures_util::stream::iter(due)
            .map(|(target, addr)| {
                let outbound = outbound.clone();
                async move {
                    let answer = ask(&outbound, &target, addr).await;
                    ((target, addr), answer)
                }
            })
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<_>>();
        let answers = tokio::select! {
            () = stop.cancelled() => return,
            a = answers => a,
        };
        for (key, answer) in answers {
            if let Err(why) = &answer {
                tracing::debug!(app = %key.0, address = %key.1, %why, "a sidecar did not say which actor types it hosts");
            }
            asked.record(key, answer.ok());
        }
    }
}

/// Asks the sidecar of `target` at `addr` which actor types its app hosts.
async fn ask(
    outbound: &Outbound,
    target: &Target,
    addr: SocketAddr,
) -> Result<Vec<String>, String> {
    let mut req = Request::new(empty());
    *req.uri_mut() = http::Uri::from_static("/");
    let mut extra = HeaderMap::new();
    extra.insert(ACTOR_HOP, HeaderValue::from_static(HOSTS_HOP));
    let sent = outbound.call_at(target, addr, req, extra);
    let rsp = match tokio::time::timeout(ASK_TIMEOUT, sent).await {
        Ok(Ok(rsp)) => rsp,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {ASK_TIMEOUT:?}")),
    };
    let status = rsp.status();
    let body = tokio::time::timeout(ASK_TIMEOUT, collect_within(rsp.into_body(), MAX_ANSWER))
        .await
        .map_err(|_| "the answer stalled".to_owned())?
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    read_answer(&body)
}

/// The answer to a `hosts` hop, for the sidecar asked.
pub(crate) fn answer(app_id: &str, types: &[String]) -> Response<Body> {
    let mut rsp = Response::new(full(answer_body(app_id, types)));
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

fn answer_body(app_id: &str, types: &[String]) -> Bytes {
    serde_json::json!({"appId": app_id, "actorTypes": types})
        .to_string()
        .into()
}

/// The types an answer lists, checked: what a peer says never grows this sidecar's view
/// without bound, nor holds the key separator.
fn read_answer(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Said {
        actor_types: Vec<String>,
    }
    let said: Said = serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}"))?;
    if said.actor_types.len() > MAX_TYPES {
        return Err(format!(
            "{} actor types (at most {MAX_TYPES})",
            said.actor_types.len()
        ));
    }
    let mut types = said.actor_types;
    if let Some(bad) = types
        .iter()
        .find(|t| t.is_empty() || t.len() > MAX_TYPE_LEN || t.contains("||"))
    {
        return Err(format!("actor type {bad:?} is not a type name"));
    }
    types.sort();
    types.dedup();
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> (Target, SocketAddr) {
        (
            Target::new("counter", "prod"),
            SocketAddr::from(([10, 0, 0, 1], port)),
        )
    }

    #[test]
    fn new_sidecars_are_asked_at_once_and_all_again_later() {
        let asked = Asked::default();
        assert_eq!(asked.due(&[key(1), key(2)], false), [key(1), key(2)]);
        asked.record(key(1), Some(vec!["Counter".into()]));
        asked.record(key(2), Some(Vec::new()));
        assert!(asked.due(&[key(1), key(2)], false).is_empty());
        assert_eq!(asked.due(&[key(1), key(2), key(3)], false), [key(3)]);
        assert_eq!(asked.due(&[key(1), key(2)], true), [key(1), key(2)]);
        assert_eq!(asked.actor_hosts("Counter"), [key(1)]);
        assert!(asked.actor_hosts("Other").is_empty());
    }

    #[test]
    fn a_host_that_misses_twice_or_leaves_dns_is_no_longer_one() {
        let asked = Asked::default();
        let both = [key(1), key(2)];
        asked.due(&both, true);
        for k in both.clone() {
            asked.record(k, Some(vec!["Counter".into()]));
        }
        asked.record(key(1), None);
        assert_eq!(asked.actor_hosts("Counter"), both, "one miss is forgiven");
        asked.record(key(1), None);
        assert_eq!(asked.actor_hosts("Counter"), [key(2)]);
        asked.record(key(1), Some(vec!["Counter".into()]));
        assert_eq!(asked.actor_hosts("Counter"), both, "back once it answers");
        asked.due(&[key(1)], false);
        assert_eq!(asked.actor_hosts("Counter"), [key(1)], "gone from DNS");
    }

    #[test]
    fn answers_are_bounded_and_checked() {
        let body = answer_body("counter", &["B".into(), "A".into(), "B".into()]);
        assert_eq!(read_answer(&body).unwrap(), ["A", "B"]);
        assert_eq!(
            read_answer(br#"{"actorTypes": []}"#).unwrap(),
            Vec::<String>::new()
        );
        for bad in [
            &br#"{"actorTypes": ["a||b"]}"#[..],
            br#"{"actorTypes": [""]}"#,
            br#"{"actorTypes": "Counter"}"#,
            b"not json",
        ] {
            assert!(
                read_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: Vec<String> = (0..=MAX_TYPES).map(|i| format!("T{i}")).collect();
        assert!(read_answer(&answer_body("x", &many)).is_err());
        assert!(read_answer(&answer_body("x", &["x".repeat(MAX_TYPE_LEN + 1)])).is_err());
    }
}
