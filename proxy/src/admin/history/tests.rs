use super::*;

fn exposition(invocations: u32, errors: u32, state_ops: Option<u32>) -> String {
    let mut t = format!(
        "dapr_runtime_service_invocation_res_recv_total{{app_id=\"me\",destination_app_id=\"shipping\",type=\"http\",status=\"200\"}} {}\n\
         dapr_runtime_service_invocation_res_recv_total{{app_id=\"me\",destination_app_id=\"shipping\",type=\"http\",status=\"503\"}} {errors}\n\
         dapr_runtime_service_invocation_res_recv_latency_ms_bucket{{app_id=\"me\",destination_app_id=\"shipping\",type=\"http\",status=\"200\",le=\"5\"}} {invocations}\n\
         dapr_runtime_service_invocation_res_recv_latency_ms_bucket{{app_id=\"me\",destination_app_id=\"shipping\",type=\"http\",status=\"200\",le=\"+Inf\"}} {invocations}\n",
        invocations - errors
    );
    if let Some(n) = state_ops {
        t += &format!(
            "dapr_component_state_count{{app_id=\"me\",component=\"statestore\",namespace=\"default\",operation=\"get\",success=\"true\"}} {n}\n"
        );
    }
    t
}

fn at(start: Instant, secs: u64) -> (Instant, SystemTime) {
    (
        start + Duration::from_secs(secs),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs),
    )
}

#[test]
fn points_per_interval_with_new_keys_aligned() {
    let h = History::new("me");
    let start = Instant::now();
    let ticks = h.ticks();
    let (i, w) = at(start, 0);
    h.record(&exposition(0, 0, None), i, w);
    assert!(ticks.has_changed().unwrap(), "a reading wakes the streams");
    let (i, w) = at(start, 2);
    h.record(&exposition(20, 2, None), i, w);
    let (i, w) = at(start, 4);
    h.record(&exposition(30, 2, Some(8)), i, w);

    let all = h.all();
    assert_eq!(
        all["times"],
        json!([1_700_000_002_000u64, 1_700_000_004_000u64])
    );
    let series = all["series"].as_array().unwrap();
    let shipping = series.iter().find(|s| s["name"] == "shipping").unwrap();
    assert_eq!(shipping["group"], "target");
    assert_eq!(shipping["rps"], json!([10.0, 5.0]));
    assert_eq!(shipping["errors"], json!([1.0, 0.0]));
    assert!(shipping["p99"][0].as_f64().unwrap() <= 5.0);
    let store = series.iter().find(|s| s["name"] == "statestore").unwrap();
    assert_eq!(store["group"], "component");
    assert_eq!(
        store["rps"],
        json!([null, 4.0]),
        "no data before the key was seen"
    );
    assert_eq!(store["p50"], json!([null, null]), "no latency recorded");

    let latest = h.latest();
    assert_eq!(latest["times"], json!([1_700_000_004_000u64]));
    let minute = h.minute();
    let key = Key {
        group: traffic::Group::Target,
        name: "shipping".into(),
    };
    assert_eq!(minute[&key].count, 30.0);
    assert_eq!(minute[&key].errors, 2.0);
}

#[test]
fn history_is_bounded() {
    let h = History::new("me");
    let start = Instant::now();
    for n in 0..(POINTS as u64 + 40) {
        let (i, w) = at(start, 2 * n);
        h.record(&exposition(n as u32, 0, Some(n as u32)), i, w);
    }
    let all = h.all();
    assert_eq!(all["times"].as_array().unwrap().len(), POINTS);
    for s in all["series"].as_array().unwrap() {
        assert_eq!(s["rps"].as_array().unwrap().len(), POINTS);
    }
    assert_eq!(h.lock().readings.len(), MINUTE);
    // The minute spans the kept readings: 30 intervals of 2 s, one request each.
    let key = Key {
        group: traffic::Group::Target,
        name: "shipping".into(),
    };
    assert_eq!(h.minute()[&key].count, 30.0);
}

#[test]
fn gauges_of_subscriptions_and_breakers_are_read_for_this_app_only() {
    let text = "outrider_pubsub_ingress_in_flight{app_id=\"me\",component=\"pubsub\",namespace=\"default\",topic=\"orders\"} 3\n\
                outrider_pubsub_dead_letters_total{app_id=\"me\",component=\"pubsub\",namespace=\"default\",topic=\"orders\"} 7\n\
                outrider_pubsub_dead_letters_total{app_id=\"other\",component=\"pubsub\",namespace=\"default\",topic=\"orders\"} 99\n\
                dapr_resiliency_cb_state{app_id=\"me\",name=\"cb\",policy=\"circuitbreaker\",flow_direction=\"outbound\",target=\"app_billing\",status=\"closed\"} 0\n\
                dapr_resiliency_cb_state{app_id=\"me\",name=\"cb\",policy=\"circuitbreaker\",flow_direction=\"outbound\",target=\"app_billing\",status=\"open\"} 1\n\
                dapr_resiliency_cb_state{app_id=\"me\",name=\"cb\",policy=\"circuitbreaker\",flow_direction=\"outbound\",target=\"component_statestore\",status=\"open\"} 1\n";
    let h = History::new("me");
    let (i, w) = at(Instant::now(), 0);
    h.record(text, i, w);
    let g = h.gauges();
    assert_eq!(
        g.subscriptions
            .get(&("pubsub".to_owned(), "orders".to_owned())),
        Some(&(3.0, 7.0))
    );
    assert_eq!(g.breakers.get("billing").map(String::as_str), Some("open"));
    assert_eq!(g.breakers.len(), 1, "only apps' breakers: {:?}", g.breakers);
}

#[test]
fn a_late_tick_right_after_another_is_not_a_point() {
    let h = History::new("me");
    let start = Instant::now();
    for (secs_ms, n) in [(0, 0), (2000, 10), (2001, 11), (4000, 20)] {
        let i = start + Duration::from_millis(secs_ms);
        h.record(
            &exposition(n, 0, None),
            i,
            UNIX_EPOCH + Duration::from_millis(secs_ms),
        );
    }
    let all = h.all();
    let shipping = &all["series"][0];
    assert_eq!(shipping["rps"], json!([5.0, 5.0]), "{all}");
}
