//! Every unknown or unhonoured field of a table of documents gets the warning or refusal it
//! should, and documents as Dapr writes them get none.

use serde_json::Value;

use super::check;

fn doc(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap()
}

/// The warnings, as `field: message` lines.
fn judged(kind: &str, yaml: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    check(kind, &doc(yaml), "f.yaml", &mut warnings);
    warnings.into_iter().map(|p| p.to_string()).collect()
}

#[test]
fn documents_as_dapr_writes_them_pass_quietly() {
    let cases = [
        (
            "Configuration",
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\n  namespace: default\nspec:\n  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: http://localhost:9411/api/v2/spans\n  mtls:\n    enabled: true\n    workloadCertTTL: 24h\n  accessControl:\n    defaultAction: deny\n  logging:\n    apiLogging:\n      enabled: true\n      obfuscateURLs: true\n  secrets:\n    scopes:\n    - storeName: local\n      defaultAccess: deny\n      allowedSecrets: [a]\n",
        ),
        (
            "Component",
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\n  labels: {team: a}\nspec:\n  type: state.redis\n  version: v1\n  ignoreErrors: true\n  initTimeout: 5s\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword\n    secretKeyRef:\n      name: redis\n      key: password\nauth:\n  secretStore: local\nscopes: [a]\n",
        ),
        (
            "Resiliency",
            "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nscopes: [a]\nspec:\n  policies:\n    timeouts:\n      general: 5s\n    retries:\n      pubsubRetry:\n        policy: constant\n        duration: 5s\n        maxRetries: 10\n        matching:\n          httpStatusCodes: \"500\"\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 30s\n        trip: consecutiveFailures >= 5\n  targets:\n    apps:\n      b:\n        timeout: general\n        retry: pubsubRetry\n    components:\n      statestore:\n        outbound:\n          retry: pubsubRetry\n",
        ),
        (
            "Subscription",
            "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  topic: orders\n  pubsubname: pubsub\n  routes:\n    rules:\n    - match: event.type == \"x\"\n      path: /x\n    default: /orders\n  deadLetterTopic: dead\n  bulkSubscribe:\n    enabled: true\n    maxMessagesCount: 10\nscopes: [a]\n",
        ),
    ];
    for (kind, yaml) in cases {
        assert_eq!(judged(kind, yaml), Vec::<String>::new(), "{kind}");
    }
}

#[test]
fn every_other_field_is_named() {
    let table: &[(&str, &str, &[&str])] = &[
        // Misspelt: warned of, with the value.
        (
            "Configuration",
            "spec:\n  acessControl:\n    defaultAction: deny\n  tracing:\n    samplingrate: \"1\"\n",
            &[
                "f.yaml: spec.acessControl: a mapping is not a field of a Configuration",
                "f.yaml: spec.tracing.samplingrate: \"1\" is not a field",
            ],
        ),
        // A pipeline is judged against the middleware components loaded (`config::pipeline`).
        (
            "Configuration",
            "spec:\n  httpPipeline:\n    handlers:\n    - name: auth\n      type: middleware.http.bearer\n",
            &[],
        ),
        (
            "Configuration",
            "spec:\n  appHttpPipeline:\n    handlers:\n    - name: up\n      type: middleware.http.ratelimit\n",
            &[],
        ),
        (
            "Configuration",
            "spec:\n  httpPipeline:\n    handlers:\n    - name: a\n      type: middleware.http.ratelimit\n      selector:\n        fields: [{field: x, value: y}]\n",
            &["spec.httpPipeline.handlers[0].selector: a mapping: the selector is not read"],
        ),
        // An empty pipeline asks for nothing.
        (
            "Configuration",
            "spec:\n  httpPipeline:\n    handlers: []\n",
            &[],
        ),
        (
            "Configuration",
            "spec:\n  mtls:\n    enabled: false\n    allowedClockSkew: 15m\n  metric:\n    enabled: false\n  features:\n  - name: x\n    enabled: true\n  tracing:\n    stdout: true\n",
            &[
                "spec.mtls.enabled: false: sidecars always talk mutual TLS",
                "spec.mtls.allowedClockSkew: \"15m\"",
                "spec.metric: a mapping: metrics are recorded as Outrider records them",
                "spec.features: a list of 1: preview features are not read",
                "spec.tracing.stdout: true: spans are not printed",
            ],
        ),
        (
            "Component",
            "metadata:\n  name: s\nspec:\n  type: state.redis\n  metdata:\n  - name: a\n  metadata:\n  - name: b\n    valeu: 1\n",
            &[
                "spec.metdata: a list of 1 is not a field of a Component",
                // A setting may be a secret: its value is not quoted.
                "spec.metadata[0].valeu: a value is not a field",
            ],
        ),
        (
            "Resiliency",
            "spec:\n  policies:\n    retries:\n      r:\n        maxretries: 3\n  targets:\n    actors:\n      a:\n        timout: t\n    apps:\n      b:\n        circuitBreakerCacheSize: 5000\n",
            &[
                "spec.policies.retries.r.maxretries: 3 is not a field of a Resiliency",
                "spec.targets.actors.a.timout: \"t\" is not a field",
                "spec.targets.apps.b.circuitBreakerCacheSize: 5000: one breaker per app",
            ],
        ),
        (
            "HTTPEndpoint",
            "spec:\n  baseUrl: https://h\n  baseURL: https://u:pw@h\n  headers:\n  - name: Authorization\n    Value: Bearer s3cret\n  clientTLS:\n    privatekey: {value: k}\n",
            &[
                "spec.baseURL: a value is not a field of an HTTPEndpoint",
                "spec.headers[0].Value: a value is not a field",
                "spec.clientTLS.privatekey: a mapping is not a field",
            ],
        ),
        (
            "Subscription",
            "spec:\n  topic: t\n  pubsubname: p\n  deadLettertopic: d\n",
            &["spec.deadLettertopic: \"d\" is not a field of a Subscription"],
        ),
    ];
    for (kind, yaml, warned) in table {
        let w = judged(kind, yaml);
        assert_eq!(w.len(), warned.len(), "{yaml}\nwarnings: {w:#?}");
        for want in *warned {
            assert!(
                w.iter().any(|g| g.contains(want)),
                "none of {w:#?} says {want:?}"
            );
        }
    }
}
