use super::config::{otlp_url, without_userinfo};
use super::*;
use crate::cli::OtelEnv;

fn parse(v: Value) -> Result<Option<TracingConfig>, Vec<(String, String)>> {
    TracingConfig::parse(&v, &OtelEnv::default())
}

#[test]
fn the_environment_names_a_collector_the_file_does_not() {
    let env = OtelEnv {
        endpoint: Some("collector:4318".into()),
        protocol: Some("http/protobuf".into()),
        insecure: Some(true),
        headers: Some("api-key=s%3Dcret, x=1".into()),
    };
    let c = TracingConfig::parse(&Value::Null, &env).unwrap().unwrap();
    assert_eq!(
        c.rate, 1.0,
        "an unset rate samples everything when the environment names the collector"
    );
    assert_eq!(
        c.export,
        Export::Otlp {
            url: "http://collector:4318/v1/traces".into(),
            headers: vec![
                ("api-key".into(), "s=cret".into()),
                ("x".into(), "1".into())
            ],
        }
    );
    // The file wins; a protocol we do not speak is refused.
    let file =
        json!({"samplingRate": "0.5", "zipkin": {"endpointAddress": "http://z:9411/api/v2/spans"}});
    assert!(matches!(
        TracingConfig::parse(&file, &env).unwrap().unwrap().export,
        Export::Zipkin { .. }
    ));
    let grpc = OtelEnv {
        protocol: Some("grpc".into()),
        ..env
    };
    assert!(TracingConfig::parse(&Value::Null, &grpc).is_err());
    assert!(
        TracingConfig::parse(&Value::Null, &OtelEnv::default())
            .unwrap()
            .is_none()
    );
}

#[test]
fn settings() {
    let otel = |extra: Value| {
        let mut v = json!({"samplingRate": "1", "otel": {"endpointAddress": "127.0.0.1:4318", "isSecure": false}});
        if let (Some(o), Some(e)) = (v["otel"].as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    let c = parse(otel(json!({}))).unwrap().unwrap();
    assert_eq!(
        c.export,
        Export::Otlp {
            url: "http://127.0.0.1:4318/v1/traces".into(),
            headers: vec![]
        }
    );
    assert_eq!(c.rate, 1.0);
    assert!(
        parse(json!({"samplingRate": "0", "zipkin": {"endpointAddress": "http://z:9411/api/v2/spans"}}))
            .unwrap()
            .is_none()
    );
    assert!(
        parse(json!({"samplingRate": "1"})).unwrap().is_none(),
        "no collector, nothing exported"
    );
    let z = parse(
        json!({"samplingRate": 0.5, "zipkin": {"endpointAddress": "http://z:9411/api/v2/spans"}}),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (z.rate, z.export),
        (
            0.5,
            Export::Zipkin {
                url: "http://z:9411/api/v2/spans".into()
            }
        )
    );
    assert_eq!(
        otlp_url("http://c:4318/custom/traces", true),
        "http://c:4318/custom/traces"
    );
    assert_eq!(otlp_url("http://c:4318/", true), "http://c:4318/v1/traces");
    assert_eq!(
        otlp_url("c:4318", true),
        "https://c:4318/v1/traces",
        "isSecure (Dapr's default) is TLS"
    );
    for (v, field, value) in [
        (
            json!({"samplingRate": "often", "zipkin": {"endpointAddress": "http://z"}}),
            "spec.tracing.samplingRate",
            "often",
        ),
        (
            json!({"samplingRate": "2", "zipkin": {"endpointAddress": "http://z"}}),
            "spec.tracing.samplingRate",
            "\"2\"",
        ),
        (
            otel(json!({"protocol": "grpc"})),
            "spec.tracing.otel.protocol",
            "grpc",
        ),
        (
            json!({"zipkin": {"endpointAddress": "z:9411"}}),
            "spec.tracing.zipkin.endpointAddress",
            "z:9411",
        ),
    ] {
        let errs = parse(v.clone()).unwrap_err();
        assert!(
            errs.iter().any(|(f, m)| f == field && m.contains(value)),
            "{v}: {errs:?}"
        );
    }
}

#[test]
fn the_collector_is_shown_without_credentials() {
    let e = Export::Otlp {
        url: "https://u:p4ss@c:4318/v1/traces".into(),
        headers: vec![("api-key".into(), "s3cret".into())],
    };
    let shown = e.to_string();
    assert_eq!(
        shown,
        "OTLP/HTTP to https://c:4318/v1/traces with headers api-key"
    );
    assert_eq!(
        without_userinfo("http://z:9411/a@b"),
        "http://z:9411/a@b",
        "an @ in the path is not userinfo"
    );
}

#[test]
fn zipkin_spans() {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1);
    let span = SpanRecord {
        trace_id: 0xabc,
        span_id: 0x12,
        parent_span_id: 0x34,
        name: "GET /v1.0/metadata".into(),
        kind: SpanKind::Server,
        start: t,
        end: t + Duration::from_millis(2),
        attributes: vec![("app_id", "a".into())],
        error: true,
    };
    let v = zipkin_json(&[span], "a");
    assert_eq!(v[0]["traceId"], "00000000000000000000000000000abc");
    assert_eq!(
        (v[0]["id"].as_str(), v[0]["parentId"].as_str()),
        (Some("0000000000000012"), Some("0000000000000034"))
    );
    assert_eq!(
        (v[0]["timestamp"].as_u64(), v[0]["duration"].as_u64()),
        (Some(1_000_000), Some(2000))
    );
    assert_eq!(v[0]["tags"]["error"], "true");
    assert_eq!(v[0]["localEndpoint"]["serviceName"], "a");
}
