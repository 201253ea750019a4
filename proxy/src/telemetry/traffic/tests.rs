use super::*;

/// An exposition with `ok` 200s and `bad` 503s of one HTTP route of app `a`, each timed in the
/// bucket `le`, and a series of app `b` that must not count.
fn text(ok: u32, bad: u32, le_count: &[(&str, u32)]) -> String {
    let mut t = String::from("# TYPE dapr_http_server_request_count counter\n");
    t += &format!(
        "dapr_http_server_request_count{{app_id=\"a\",method=\"GET\",path=\"/v1.0/state/{{storeName}}/{{key}}\",status=\"200\"}} {ok}\n"
    );
    t += &format!(
        "dapr_http_server_request_count{{app_id=\"a\",method=\"GET\",path=\"/v1.0/state/{{storeName}}/{{key}}\",status=\"503\"}} {bad}\n"
    );
    t += "dapr_http_server_request_count{app_id=\"b\",method=\"GET\",path=\"/x\",status=\"200\"} 1000\n";
    for (le, n) in le_count {
        t += &format!(
            "dapr_http_server_latency_bucket{{app_id=\"a\",method=\"GET\",path=\"/v1.0/state/{{storeName}}/{{key}}\",status=\"200\",le=\"{le}\"}} {n}\n"
        );
    }
    t
}

fn route() -> Key {
    Key {
        group: Group::Api,
        name: "GET /v1.0/state/{storeName}/{key}".into(),
    }
}

#[test]
fn rates_errors_and_percentiles_between_two_scrapes() {
    let before = Scrape::read(&text(10, 0, &[("1", 10), ("2", 10), ("+Inf", 10)]), "a");
    // 100 more: 50 under 1 ms, 50 between 1 and 2 ms; 4 of them answered 503.
    let after = Scrape::read(
        &text(106, 4, &[("1", 60), ("2", 110), ("3", 110), ("+Inf", 110)]),
        "a",
    );
    let rates = after.since(&before, 2.0);
    let r = rates[&route()];
    assert_eq!(r.count, 100.0);
    assert_eq!(r.rps, 50.0);
    assert_eq!(r.errors, 4.0);
    assert_eq!(r.success(), Some(0.96));
    // Rank 50 of 100 is the top of the first bucket; rank 99 is 49/50 into (1, 2].
    assert_eq!(r.p50, Some(1.0));
    assert!((r.p99.unwrap() - 1.98).abs() < 1e-9, "{:?}", r.p99);
    assert_eq!(rates.len(), 1, "app b's series counted: {rates:?}");
}

#[test]
fn nothing_happened_means_no_percentiles() {
    let a = Scrape::read(&text(5, 0, &[("1", 5), ("+Inf", 5)]), "a");
    let r = a.since(&a, 1.0)[&route()];
    assert_eq!((r.count, r.rps, r.p50, r.p99), (0.0, 0.0, None, None));
    assert_eq!(r.success(), None);
}

#[test]
fn the_inf_bucket_answers_the_largest_bound() {
    let a = Scrape::default();
    let b = Scrape::read(&text(1, 0, &[("+Inf", 1)]), "a");
    assert_eq!(b.since(&a, 1.0)[&route()].p99, BOUNDS.last().copied());
}

#[test]
fn a_restart_counts_from_zero() {
    let before = Scrape::read(&text(500, 0, &[("+Inf", 500)]), "a");
    let after = Scrape::read(&text(7, 1, &[("1", 7), ("+Inf", 7)]), "a");
    let r = after.since(&before, 1.0)[&route()];
    assert_eq!((r.count, r.errors), (8.0, 1.0));
}

#[test]
fn grpc_targets_and_app_routes_have_their_groups() {
    let t = "dapr_grpc_io_server_completed_rpcs{app_id=\"a\",grpc_server_method=\"/dapr.proto.runtime.v1.Dapr/SaveState\",grpc_server_status=\"OK\"} 3\n\
             dapr_grpc_io_server_completed_rpcs{app_id=\"a\",grpc_server_method=\"/dapr.proto.runtime.v1.Dapr/SaveState\",grpc_server_status=\"Unavailable\"} 1\n\
             dapr_grpc_io_server_completed_rpcs{app_id=\"a\",grpc_server_method=\"/dapr.proto.runtime.v1.Dapr/GetState\",grpc_server_status=\"NotFound\"} 2\n\
             dapr_runtime_service_invocation_res_recv_total{app_id=\"a\",destination_app_id=\"shipping\",type=\"http\",status=\"200\"} 4\n\
             dapr_http_client_completed_count{app_id=\"a\",method=\"POST\",path=\"other\",status=\"0\"} 1\n";
    let now = Scrape::read(t, "a");
    let r = now.since(&Scrape::default(), 1.0);
    let get = |group, name: &str| {
        r[&Key {
            group,
            name: name.into(),
        }]
    };
    assert_eq!(get(Group::Api, "gRPC SaveState").errors, 1.0);
    assert_eq!(
        get(Group::Api, "gRPC GetState").errors,
        0.0,
        "NotFound is an answer"
    );
    assert_eq!(get(Group::Target, "shipping").count, 4.0);
    assert_eq!(
        get(Group::App, "POST other").errors,
        1.0,
        "no answer is an error"
    );
    let served = now
        .sum(&[Group::Api, Group::App])
        .since(&Totals::default(), 1.0);
    assert_eq!((served.count, served.errors), (7.0, 2.0));
}

#[test]
fn keys_are_bounded() {
    let mut t = String::new();
    for i in 0..MAX_KEYS + 10 {
        t += &format!(
            "dapr_runtime_service_invocation_res_recv_total{{app_id=\"a\",destination_app_id=\"t{i}\",type=\"http\",status=\"200\"}} 1\n"
        );
    }
    let s = Scrape::read(&t, "a");
    assert_eq!(s.totals.len(), MAX_KEYS);
    assert!(s.truncated);
    // The same keys whatever order the text lists them in.
    let reversed: String = t.lines().rev().map(|l| format!("{l}\n")).collect();
    let r = Scrape::read(&reversed, "a");
    assert!(
        s.totals.keys().eq(r.totals.keys()),
        "another order kept other keys"
    );
    // A key the earlier reading left out has no rates (not its whole count as one interval).
    let mut more = t.clone();
    more += "dapr_runtime_service_invocation_res_recv_total{app_id=\"a\",destination_app_id=\"a0\",type=\"http\",status=\"200\"} 1000\n";
    let later = Scrape::read(&more, "a");
    let rates = later.since(&s, 1.0);
    assert!(
        later.totals.keys().any(|k| k.name == "a0"),
        "a0 sorts first: kept"
    );
    assert!(!rates.keys().any(|k| k.name == "a0"), "{rates:?}");
}
