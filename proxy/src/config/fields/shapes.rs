//! The fields each kind of resource has, as daprd's types define them (and Outrider's own:
//! `spec.mtls.mode`, `spec.meshTransport`).

use super::Shape::{self, Any, Fields, List, Map};

pub(super) const OBJECT_META: Shape = Any;

pub(super) const HANDLERS: Shape = Fields(&[(
    "handlers",
    List(&Fields(&[
        ("name", Any),
        ("type", Any),
        ("version", Any),
        ("selector", Any),
    ])),
)]);

pub(super) const CONFIGURATION: Shape = Fields(&[
    ("apiVersion", Any),
    ("kind", Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Fields(&[
            ("httpPipeline", HANDLERS),
            ("appHttpPipeline", HANDLERS),
            (
                "tracing",
                Fields(&[
                    ("samplingRate", Any),
                    ("stdout", Any),
                    ("zipkin", Fields(&[("endpointAddress", Any)])),
                    (
                        "otel",
                        Fields(&[
                            ("protocol", Any),
                            ("endpointAddress", Any),
                            ("isSecure", Any),
                            ("headers", Any),
                            ("timeout", Any),
                        ]),
                    ),
                ]),
            ),
            (
                "mtls",
                Fields(&[
                    ("enabled", Any),
                    ("workloadCertTTL", Any),
                    ("allowedClockSkew", Any),
                    ("sentryAddress", Any),
                    ("controlPlaneTrustDomain", Any),
                    ("tokenValidators", Any),
                    ("mode", Any),
                ]),
            ),
            ("metric", Any),
            ("metrics", Any),
            (
                "secrets",
                Fields(&[(
                    "scopes",
                    List(&Fields(&[
                        ("storeName", Any),
                        ("defaultAccess", Any),
                        ("allowedSecrets", Any),
                        ("deniedSecrets", Any),
                    ])),
                )]),
            ),
            ("accessControl", Any),
            (
                "nameResolution",
                Fields(&[("component", Any), ("version", Any), ("configuration", Any)]),
            ),
            ("features", Any),
            ("api", Any),
            ("components", Fields(&[("deny", Any)])),
            (
                "logging",
                Fields(&[(
                    "apiLogging",
                    Fields(&[
                        ("enabled", Any),
                        ("obfuscateURLs", Any),
                        ("omitHealthChecks", Any),
                    ]),
                )]),
            ),
            ("wasm", Any),
            ("workflow", Any),
            ("meshTransport", Any),
        ]),
    ),
]);

const NAME_VALUE: Shape = Fields(&[
    ("name", Any),
    ("value", Any),
    ("secretKeyRef", Fields(&[("name", Any), ("key", Any)])),
    ("envRef", Any),
]);

const TLS_DOCUMENT: Shape = Fields(&[
    ("value", Any),
    ("secretKeyRef", Fields(&[("name", Any), ("key", Any)])),
]);

pub(super) const HTTP_ENDPOINT: Shape = Fields(&[
    ("apiVersion", Any),
    ("kind", Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Fields(&[
            ("baseUrl", Any),
            ("headers", List(&NAME_VALUE)),
            (
                "clientTLS",
                Fields(&[
                    ("rootCA", TLS_DOCUMENT),
                    ("certificate", TLS_DOCUMENT),
                    ("privateKey", TLS_DOCUMENT),
                    ("renegotiation", Any),
                ]),
            ),
        ]),
    ),
    (
        "auth",
        Fields(&[("secretStore", Any), ("secretstore", Any)]),
    ),
    ("scopes", Any),
]);

pub(super) const COMPONENT: Shape = Fields(&[
    ("apiVersion", Any),
    ("kind", Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Fields(&[
            ("type", Any),
            ("version", Any),
            ("ignoreErrors", Any),
            ("initTimeout", Any),
            ("metadata", List(&NAME_VALUE)),
        ]),
    ),
    (
        "auth",
        Fields(&[("secretStore", Any), ("secretstore", Any)]),
    ),
    ("scopes", Any),
]);

pub(super) const POLICY_TARGET: Shape =
    Fields(&[("timeout", Any), ("retry", Any), ("circuitBreaker", Any)]);

pub(super) const RESILIENCY: Shape = Fields(&[
    ("apiVersion", Any),
    ("kind", Any),
    ("metadata", OBJECT_META),
    ("scopes", Any),
    (
        "spec",
        Fields(&[
            (
                "policies",
                Fields(&[
                    ("timeouts", Any),
                    (
                        "retries",
                        Map(&Fields(&[
                            ("policy", Any),
                            ("duration", Any),
                            ("maxInterval", Any),
                            ("maxRetries", Any),
                            ("initialInterval", Any),
                            ("maxElapsedTime", Any),
                            ("multiplier", Any),
                            ("randomizationFactor", Any),
                            (
                                "matching",
                                Fields(&[("httpStatusCodes", Any), ("gRPCStatusCodes", Any)]),
                            ),
                        ])),
                    ),
                    (
                        "circuitBreakers",
                        Map(&Fields(&[
                            ("maxRequests", Any),
                            ("interval", Any),
                            ("timeout", Any),
                            ("trip", Any),
                        ])),
                    ),
                ]),
            ),
            (
                "targets",
                Fields(&[
                    (
                        "apps",
                        Map(&Fields(&[
                            ("timeout", Any),
                            ("retry", Any),
                            ("circuitBreaker", Any),
                            ("circuitBreakerCacheSize", Any),
                        ])),
                    ),
                    (
                        "actors",
                        Map(&Fields(&[
                            ("timeout", Any),
                            ("retry", Any),
                            ("circuitBreaker", Any),
                            ("circuitBreakerScope", Any),
                            ("circuitBreakerCacheSize", Any),
                        ])),
                    ),
                    (
                        "components",
                        Map(&Fields(&[
                            ("inbound", POLICY_TARGET),
                            ("outbound", POLICY_TARGET),
                        ])),
                    ),
                ]),
            ),
        ]),
    ),
]);

pub(super) const SUBSCRIPTION: Shape = Fields(&[
    ("apiVersion", Any),
    ("kind", Any),
    ("metadata", OBJECT_META),
    ("scopes", Any),
    (
        "spec",
        Fields(&[
            ("pubsubname", Any),
            ("topic", Any),
            ("route", Any),
            (
                "routes",
                Fields(&[
                    ("rules", List(&Fields(&[("match", Any), ("path", Any)]))),
                    ("default", Any),
                ]),
            ),
            ("deadLetterTopic", Any),
            ("metadata", Any),
            (
                "bulkSubscribe",
                Fields(&[
                    ("enabled", Any),
                    ("maxMessagesCount", Any),
                    ("maxAwaitDurationMs", Any),
                ]),
            ),
        ]),
    ),
]);
