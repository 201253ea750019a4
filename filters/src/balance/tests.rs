use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::advance;
use tower::Service;

use super::eject::Health;
use super::*;

const BOTH: [Balancing; 2] = [Balancing::RoundRobin, Balancing::P2cPeakEwma];
const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn set(ports: &[u16]) -> Arc<EndpointSet> {
    Arc::new(EndpointSet::new(ports.iter().map(|p| addr(*p)).collect()))
}

/// A balancer whose endpoint services are never called.
fn balancer(strategy: Balancing, ports: &[u16]) -> (Balancer<()>, watch::Sender<Arc<EndpointSet>>) {
    let tx = watch::Sender::new(set(ports));
    (Balancer::new(strategy, tx.subscribe(), ()), tx)
}

/// An endpoint service that answers with its port after `delay` (of paused time).
struct Answer {
    port: u16,
    delay: Duration,
}

impl Service<()> for Answer {
    type Response = u16;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<u16, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let (port, delay) = (self.port, self.delay);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(port)
        })
    }
}

/// A p2c balancer over endpoints 1 and 2 whose services answer after `delay(port)`.
fn answering(delay: fn(u16) -> Duration) -> (Balancer<Answer>, watch::Sender<Arc<EndpointSet>>) {
    let tx = watch::Sender::new(set(&[1, 2]));
    let b = Balancer::with_new_endpoint(Balancing::P2cPeakEwma, tx.subscribe(), move |a| Answer {
        port: a.port(),
        delay: delay(a.port()),
    });
    (b, tx)
}

fn picks<S>(b: &Balancer<S>, n: usize, avoid: Option<SocketAddr>) -> Vec<u16> {
    (0..n)
        .map(|_| b.pick(avoid).expect("an endpoint").addr().port())
        .collect()
}

/// Picks until endpoint `port` comes up; returns that attempt and the ports picked before.
fn pick_until<S>(b: &Balancer<S>, port: u16) -> (Attempt<S>, Vec<u16>) {
    let mut before = Vec::new();
    for _ in 0..50 {
        let a = b.pick(None).expect("an endpoint");
        if a.addr().port() == port {
            return (a, before);
        }
        before.push(a.addr().port());
    }
    panic!("{port} never picked: {before:?}");
}

fn endpoint<S>(b: &Balancer<S>, port: u16) -> Arc<Endpoint<S>> {
    b.table()
        .endpoints
        .iter()
        .find(|e| e.addr().port() == port)
        .expect("listed")
        .clone()
}

/// The state of endpoint `port` as the admin page shows it.
fn state<S>(b: &Balancer<S>, port: u16) -> &'static str {
    let address = addr(port).to_string();
    b.view()
        .into_iter()
        .find(|v| v.address == address)
        .expect("listed")
        .state
}

#[test]
fn round_robin_takes_turns() {
    let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2, 3]);
    let mut seen = picks(&b, 6, None);
    assert_eq!(seen[..3], seen[3..], "{seen:?}");
    seen.sort_unstable();
    assert_eq!(seen, [1, 1, 2, 2, 3, 3]);
}

#[test]
fn an_attempt_never_goes_where_the_previous_one_went_when_another_exists() {
    for strategy in BOTH {
        let (b, _tx) = balancer(strategy, &[1, 2, 3]);
        let seen = picks(&b, 200, Some(addr(2)));
        assert!(!seen.contains(&2), "{strategy:?}: {seen:?}");
        if strategy == Balancing::RoundRobin {
            assert!(seen.contains(&1) && seen.contains(&3), "{seen:?}");
        }
        // With a single endpoint there is nowhere else to go.
        let (one, _tx) = balancer(strategy, &[7]);
        assert_eq!(picks(&one, 3, Some(addr(7))), [7, 7, 7]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_goes_to_the_one_endpoint_left_even_when_it_is_ejected() {
    for strategy in BOTH {
        let (b, tx) = balancer(strategy, &[1, 2]);
        tx.send_replace(set(&[1]));
        assert_eq!(picks(&b, 3, Some(addr(1))), [1, 1, 1], "{strategy:?}");
        pick_until(&b, 1).0.unreachable();
        assert_eq!(state(&b, 1), "ejected");
        // The retry is its probe.
        let retry = b.pick(Some(addr(1))).expect("an endpoint");
        assert_eq!(retry.addr(), addr(1));
        assert_eq!(state(&b, 1), "probing", "{strategy:?}");
        retry.connected();
        assert_eq!(state(&b, 1), "up", "{strategy:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_endpoint_is_ejected_then_probed_once_then_readmitted() {
    for strategy in BOTH {
        let (b, _tx) = balancer(strategy, &[1, 2]);
        pick_until(&b, 1).0.unreachable();
        assert!(
            !picks(&b, 50, None).contains(&1),
            "{strategy:?}: picked while ejected"
        );
        // The backoff ends: exactly one request probes it, the others stay away meanwhile.
        advance(SEC).await;
        let (probe, _) = pick_until(&b, 1);
        assert!(
            !picks(&b, 50, None).contains(&1),
            "{strategy:?}: a second probe"
        );
        assert_eq!(state(&b, 1), "probing");
        probe.connected();
        assert!(
            picks(&b, 50, None).contains(&1),
            "{strategy:?}: not readmitted"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_requests_from_before_an_ejection_do_not_count() {
    let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2]);
    let e1 = endpoint(&b, 1);
    let (early_ok, _) = pick_until(&b, 1);
    let (early_failed, _) = pick_until(&b, 1);
    let (late, _) = pick_until(&b, 1);
    late.unreachable();
    let Health::Ejected { until, failures: 1 } = *e1.health() else {
        panic!("not ejected once")
    };
    // A second failure of the same outage neither lengthens the ejection nor counts twice,
    // and a stale success does not readmit it.
    advance(SEC / 2).await;
    let stale = b.pick(None).expect("an endpoint");
    drop(stale);
    early_failed.unreachable();
    early_ok.connected();
    assert_eq!(*e1.health(), Health::Ejected { until, failures: 1 });
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_lets_the_next_request_probe() {
    let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2]);
    pick_until(&b, 1).0.unreachable();
    advance(SEC).await;
    pick_until(&b, 1).0.unreachable();
    advance(2 * SEC).await;
    let (probe, _) = pick_until(&b, 1);
    drop(probe);
    assert_eq!(state(&b, 1), "due for a probe");
    let (again, _) = pick_until(&b, 1);
    again.unreachable();
    let e1 = endpoint(&b, 1);
    let Health::Ejected { failures: 3, .. } = *e1.health() else {
        panic!("{:?}", *e1.health())
    };
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_ends_lets_another_go_after_a_while() {
    let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2]);
    pick_until(&b, 1).0.unreachable();
    advance(SEC).await;
    let (_hung, _) = pick_until(&b, 1);
    advance(eject::PROBE_STALE - MS).await;
    assert!(
        !picks(&b, 10, None).contains(&1),
        "a second probe too early"
    );
    advance(MS).await;
    let (second, _) = pick_until(&b, 1);
    second.connected();
    assert_eq!(state(&b, 1), "up");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_ejects_for_longer_up_to_a_limit() {
    let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2]);
    pick_until(&b, 1).0.unreachable();
    for secs in [1, 2, 4, 8, 16, 30, 30, 30] {
        // Ejected for exactly `secs`: not a millisecond less, and then its probe fails.
        advance(secs * SEC - MS).await;
        assert_eq!(state(&b, 1), "ejected", "{secs} s");
        assert!(!picks(&b, 10, None).contains(&1), "{secs} s");
        advance(MS).await;
        assert_eq!(state(&b, 1), "due for a probe", "{secs} s");
        pick_until(&b, 1).0.unreachable();
    }
}

#[test]
fn with_every_endpoint_ejected_one_is_tried_anyway() {
    let (b, _tx) = balancer(Balancing::P2cPeakEwma, &[1, 2]);
    endpoint(&b, 1).failed(false);
    endpoint(&b, 2).failed(false);
    assert_eq!(picks(&b, 5, Some(addr(1))), [2, 2, 2, 2, 2]);
}

#[test]
fn state_survives_a_change_of_the_set_and_new_endpoints_get_traffic() {
    let (b, tx) = balancer(Balancing::RoundRobin, &[1, 2]);
    endpoint(&b, 1).failed(false);
    tx.send_replace(set(&[1, 3]));
    let seen = picks(&b, 10, None);
    assert_eq!(
        seen, [3; 10],
        "the ejection was forgotten, or 2 is still used"
    );
    assert_eq!(
        b.view()
            .iter()
            .map(|v| (v.address.as_str(), v.state))
            .collect::<Vec<_>>(),
        [("127.0.0.1:1", "ejected"), ("127.0.0.1:3", "up")]
    );
    tx.send_replace(Arc::default());
    assert!(b.pick(None).is_none());
}

#[tokio::test(start_paused = true)]
async fn p2c_prefers_the_endpoint_with_fewer_requests_in_flight() {
    let (b, _tx) = answering(|_| Duration::from_secs(3600));
    let in_flight: Vec<_> = (0..3).map(|_| endpoint(&b, 1).call(())).collect();
    assert_eq!(picks(&b, 20, None), [2; 20]);
    drop(in_flight);
}

#[tokio::test(start_paused = true)]
async fn p2c_prefers_the_endpoint_that_answered_faster() {
    let (b, _tx) = answering(|port| if port == 1 { SEC } else { MS });
    // Each endpoint's call goes to the service made for its address.
    assert_eq!(endpoint(&b, 1).call(()).await, Ok(1));
    assert_eq!(endpoint(&b, 2).call(()).await, Ok(2));
    assert_eq!(picks(&b, 20, None), [2; 20]);
}
