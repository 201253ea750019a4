//! One sidecar's request traffic as its metrics tell it: per route of the API its app calls,
//! per route of its app (requests the sidecar delivered: invocations from peers, events), and
//! per target app it invoked. Two scrapes a known time apart give rates, error rates and latency
//! percentiles over that time, computed as Prometheus's `rate` and `histogram_quantile` would.
//!
//! The same reading covers components (operations by component) and subscriptions (deliveries
//! by topic).
//!
//! An error is a request that got no answer, an HTTP status of 500 or more, or a gRPC status that
//! means the server failed (Unknown, DeadlineExceeded, Unimplemented, Internal, Unavailable,
//! DataLoss); client errors (4xx, NotFound, …) are answers, not failures. A component operation
//! fails when its `success` label is false, a delivery when the app asked for a retry or a drop.

use std::collections::BTreeMap;

use serde::Serialize;

use super::exposition::{self, Sample};

/// The latency buckets every request histogram of this crate uses, in ms.
const BOUNDS: &[f64] = outrider_filters::metrics::LATENCY_BUCKETS_MS;
/// Keys kept per scrape at most; label values are bounded already, this bounds the product.
pub(crate) const MAX_KEYS: usize = 256;

/// Which traffic a key counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Group {
    /// The app calls its sidecar's API (HTTP and gRPC), by route.
    Api,
    /// The sidecar calls its app, by route.
    App,
    /// The sidecar invoked another app, by app id.
    Target,
    /// The sidecar used a component (state, publishing, output bindings), by name.
    Component,
    /// The sidecar delivered messages of a subscription to its app, by `pubsub/topic`.
    Topic,
}

/// One line of traffic: a group and a name within it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub(crate) struct Key {
    pub(crate) group: Group,
    pub(crate) name: String,
}

/// What one scrape read of a key: cumulative since the sidecar started.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Totals {
    count: f64,
    errors: f64,
    /// Cumulative bucket counts at each of [`BOUNDS`], then `+Inf`.
    buckets: Vec<f64>,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            count: 0.0,
            errors: 0.0,
            buckets: vec![0.0; BOUNDS.len() + 1],
        }
    }
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.count += other.count;
        self.errors += other.errors;
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// The rates from `earlier` to `self`, `secs` apart. A counter that went down means the
    /// sidecar restarted: what it counts now is all that happened since.
    pub(crate) fn since(&self, earlier: &Totals, secs: f64) -> Rates {
        let restarted = self.count < earlier.count;
        let delta = |now: f64, then: f64| {
            if restarted {
                now
            } else {
                (now - then).max(0.0)
            }
        };
        let count = delta(self.count, earlier.count);
        let errors = delta(self.errors, earlier.errors);
        let buckets: Vec<f64> = (self.buckets.iter().zip(&earlier.buckets))
            .map(|(n, t)| delta(*n, *t))
            .collect();
        let secs = secs.max(f64::EPSILON);
        Rates {
            count,
            rps: count / secs,
            errors,
            p50: quantile(0.5, &buckets),
            p99: quantile(0.99, &buckets),
        }
    }
}

/// What happened between two scrapes of a key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Rates {
    /// Requests completed.
    pub(crate) count: f64,
    /// Requests per second.
    pub(crate) rps: f64,
    /// Of `count`, the failed.
    pub(crate) errors: f64,
    /// Latency percentiles in ms; none when no request was timed.
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
}

impl Rates {
    /// The share of requests that succeeded, none without requests.
    pub(crate) fn success(&self) -> Option<f64> {
        (self.count > 0.0).then(|| 1.0 - self.errors / self.count)
    }
}

/// The `q` quantile of cumulative bucket counts, interpolated linearly inside the bucket as
/// `histogram_quantile` does; the largest bound when it falls in the `+Inf` bucket.
fn quantile(q: f64, cumulative: &[f64]) -> Option<f64> {
    let total = *cumulative.last()?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = cumulative.iter().position(|c| *c >= rank)?;
    let Some(upper) = BOUNDS.get(i) else {
        return BOUNDS.last().copied();
    };
    let (lower, below) = match i {
        0 => (0.0, 0.0),
        _ => (BOUNDS[i - 1], cumulative[i - 1]),
    };
    let inside = cumulative[i] - below;
    if inside <= 0.0 {
        return Some(*upper);
    }
    Some(lower + (upper - lower) * (rank - below) / inside)
}

/// A metric family that counts requests, and the histogram that times them.
struct Family {
    counter: &'static str,
    histogram: &'static str,
    group: Group,
    status: &'static str,
    name: fn(&Sample<'_>) -> Option<String>,
}

fn http_route(s: &Sample<'_>) -> Option<String> {
    Some(format!("{} {}", s.label("method")?, s.label("path")?))
}

/// `/pkg.Service/Method` → `gRPC Method`.
fn grpc_method(s: &Sample<'_>, label: &str) -> Option<String> {
    let full = s.label(label)?;
    Some(format!("gRPC {}", full.rsplit('/').next().unwrap_or(full)))
}

const FAMILIES: &[Family] = &[
    Family {
        counter: "dapr_http_server_request_count",
        histogram: "dapr_http_server_latency",
        group: Group::Api,
        status: "status",
        name: http_route,
    },
    Family {
        counter: "dapr_grpc_io_server_completed_rpcs",
        histogram: "dapr_grpc_io_server_server_latency",
        group: Group::Api,
        status: "grpc_server_status",
        name: |s| grpc_method(s, "grpc_server_method"),
    },
    Family {
        counter: "dapr_http_client_completed_count",
        histogram: "dapr_http_client_roundtrip_latency",
        group: Group::App,
        status: "status",
        name: http_route,
    },
    Family {
        counter: "dapr_grpc_io_client_completed_rpcs",
        histogram: "dapr_grpc_io_client_roundtrip_latency",
        group: Group::App,
        status: "grpc_client_status",
        name: |s| grpc_method(s, "grpc_client_method"),
    },
    Family {
        counter: "dapr_runtime_service_invocation_res_recv_total",
        histogram: "dapr_runtime_service_invocation_res_recv_latency_ms",
        group: Group::Target,
        status: "status",
        name: |s| s.label("destination_app_id").map(str::to_owned),
    },
    Family {
        counter: "dapr_component_state_count",
        histogram: "dapr_component_state_latencies",
        group: Group::Component,
        status: "success",
        name: component,
    },
    Family {
        counter: "dapr_component_pubsub_egress_count",
        histogram: "dapr_component_pubsub_egress_latencies",
        group: Group::Component,
        status: "success",
        name: component,
    },
    Family {
        counter: "dapr_component_output_binding_count",
        histogram: "dapr_component_output_binding_latencies",
        group: Group::Component,
        status: "success",
        name: component,
    },
    Family {
        counter: "dapr_component_pubsub_ingress_count",
        histogram: "dapr_component_pubsub_ingress_latencies",
        group: Group::Topic,
        status: "process_status",
        name: |s| Some(format!("{}/{}", s.label("component")?, s.label("topic")?)),
    },
];

fn component(s: &Sample<'_>) -> Option<String> {
    s.label("component").map(str::to_owned)
}

/// Whether a status label value means the server failed.
fn failed(status: &str) -> bool {
    match status.parse::<u16>() {
        Ok(code) => code == 0 || code >= 500,
        Err(_) => matches!(
            status,
            "Unknown"
                | "DeadlineExceeded"
                | "Unimplemented"
                | "Internal"
                | "Unavailable"
                | "DataLoss"
                | "false"
                | "retry"
                | "drop"
        ),
    }
}

/// One scrape of a sidecar's traffic, by key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scrape {
    pub(crate) totals: BTreeMap<Key, Totals>,
    /// Keys beyond [`MAX_KEYS`] were left out.
    pub(crate) truncated: bool,
}

impl Scrape {
    /// Reads the series of `app_id` from an exposition (several sidecars of one process share
    /// one, told apart by that label).
    pub(crate) fn read(text: &str, app_id: &str) -> Self {
        let mut scrape = Scrape::default();
        let wanted = |name: &str| {
            FAMILIES.iter().any(|f| {
                name == f.counter
                    || name
                        .strip_prefix(f.histogram)
                        .is_some_and(|rest| rest == "_bucket")
            })
        };
        exposition::samples(text, wanted, |s| {
            if s.label("app_id") != Some(app_id) {
                return;
            }
            let (family, bucket) = match FAMILIES.iter().find(|f| f.counter == s.name) {
                Some(f) => (f, None),
                None => match (FAMILIES.iter())
                    .find(|f| s.name.strip_suffix("_bucket") == Some(f.histogram))
                {
                    Some(f) => (f, Some(bucket_index(s.label("le")))),
                    None => return,
                },
            };
            let Some(name) = (family.name)(&s) else {
                return;
            };
            let Some(totals) = scrape.entry(Key {
                group: family.group,
                name,
            }) else {
                return;
            };
            match bucket {
                None => {
                    totals.count += s.value;
                    if s.label(family.status).is_none_or(failed) {
                        totals.errors += s.value;
                    }
                }
                Some(Some(i)) => totals.buckets[i] += s.value,
                Some(None) => {}
            }
        });
        scrape
    }

    /// The totals of `key`. Past [`MAX_KEYS`] the first keys in order are kept, whatever order
    /// the text lists them in, so that every reading keeps the same ones.
    fn entry(&mut self, key: Key) -> Option<&mut Totals> {
        if !self.totals.contains_key(&key) && self.totals.len() >= MAX_KEYS {
            self.truncated = true;
            if self
                .totals
                .last_key_value()
                .is_none_or(|(last, _)| key > *last)
            {
                return None;
            }
            self.totals.pop_last();
        }
        Some(self.totals.entry(key).or_default())
    }

    /// The totals of every key in `groups`, added up.
    pub(crate) fn sum(&self, groups: &[Group]) -> Totals {
        let mut sum = Totals::default();
        for (_, t) in self
            .totals
            .iter()
            .filter(|(k, _)| groups.contains(&k.group))
        {
            sum.add(t);
        }
        sum
    }

    /// Each key's rates from `earlier` to this scrape, `secs` apart. A key `earlier` lacks
    /// started since, unless `earlier` left keys out: then its rates are unknown, not its
    /// whole count.
    pub(crate) fn since(&self, earlier: &Scrape, secs: f64) -> BTreeMap<Key, Rates> {
        let zero = Totals::default();
        (self.totals.iter())
            .filter_map(|(k, now)| {
                let then = match earlier.totals.get(k) {
                    Some(then) => then,
                    None if earlier.truncated => return None,
                    None => &zero,
                };
                Some((k.clone(), now.since(then, secs)))
            })
            .collect()
    }
}

/// The index of bucket `le` in [`BOUNDS`] (then `+Inf`); none for a bound this build lacks.
fn bucket_index(le: Option<&str>) -> Option<usize> {
    let le = le?;
    if le == "+Inf" {
        return Some(BOUNDS.len());
    }
    let v: f64 = le.parse().ok()?;
    BOUNDS.iter().position(|b| (b - v).abs() < 1e-9)
}

#[cfg(test)]
mod tests;
