//! The per-request mesh counters, kept as ready series: they are counted on every request.

use super::{MESH_REQUESTS, TRANSPORT_FALLBACKS};

/// Counts one request between sidecars (`direction`: `inbound` or `outbound`; `transport`: `h2`
/// or `h3`). Per request, so the four series are made once.
pub(crate) fn record_mesh_request(direction: &'static str, transport: &'static str) {
    static SERIES: std::sync::OnceLock<[metrics::Counter; 4]> = std::sync::OnceLock::new();
    let series = SERIES.get_or_init(|| {
        let of = |d: &str, t: &str| {
            MESH_REQUESTS.counter(&[("direction", d.to_owned()), ("transport", t.to_owned())])
        };
        [
            of("outbound", "h2"),
            of("outbound", "h3"),
            of("inbound", "h2"),
            of("inbound", "h3"),
        ]
    });
    let i = usize::from(direction == "inbound") * 2 + usize::from(transport == "h3");
    series[i].increment(1);
}

/// Counts a QUIC connection that could not be made to an endpoint advertising HTTP/3.
pub(crate) fn record_transport_fallback() {
    TRANSPORT_FALLBACKS.counter(&[]).increment(1);
}
