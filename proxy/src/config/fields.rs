//! Nothing in a resource file is ignored in silence. Every field of a `Configuration`,
//! `Component`, `Resiliency`, `Subscription` or `HTTPEndpoint` is one Outrider reads, or one
//! daprd knows that Outrider does not honour (named in a warning saying what Outrider does
//! instead; where going on without it would leave the app less protected than the file asks,
//! the code that reads the document refuses it), or not a field of the kind at all (named in a
//! warning: a typo, most likely).

use serde_json::Value;

use super::Problem;
use shapes::{COMPONENT, CONFIGURATION, HTTP_ENDPOINT, RESILIENCY, SUBSCRIPTION};

mod shapes;

/// The fields a document of one kind may have.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    /// Anything: free-form, or checked field by field by whoever reads it.
    Any,
    /// An object with these fields.
    Fields(&'static [(&'static str, Shape)]),
    /// A list of these.
    List(&'static Shape),
    /// An object keyed by names of the user's choosing, each value of this shape.
    Map(&'static Shape),
}
use Shape::{Fields, List, Map};

/// A known field Outrider does not honour: its path (`*` for any key of a map), when it
/// counts (given the value), how much it matters, and what Outrider does instead.
struct Unhonoured {
    path: &'static str,
    applies: fn(&Value) -> bool,
    instead: &'static str,
}

const fn given(_: &Value) -> bool {
    true
}

fn is_false(v: &Value) -> bool {
    v == &Value::Bool(false) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("false"))
}

fn is_true(v: &Value) -> bool {
    v == &Value::Bool(true) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

const CONFIGURATION_UNHONOURED: &[Unhonoured] = &[
    Unhonoured {
        path: "spec.httpPipeline.handlers.*.selector",
        applies: given,
        instead: "the selector is not read: the handler runs on every request",
    },
    Unhonoured {
        path: "spec.appHttpPipeline.handlers.*.selector",
        applies: given,
        instead: "the selector is not read: the handler runs on every call to the app",
    },
    Unhonoured {
        path: "spec.tracing.stdout",
        applies: is_true,
        instead: "spans are not printed; they go to the collector named in otel or zipkin",
    },
    Unhonoured {
        path: "spec.tracing.otel.timeout",
        applies: given,
        instead: "the exporter's own deadline applies",
    },
    Unhonoured {
        path: "spec.mtls.enabled",
        applies: is_false,
        instead: "sidecars always talk mutual TLS",
    },
    Unhonoured {
        path: "spec.mtls.allowedClockSkew",
        applies: given,
        instead: "certificates are checked against the clock as it is",
    },
    Unhonoured {
        path: "spec.mtls.sentryAddress",
        applies: given,
        instead: "the CA service is --sentry-address",
    },
    Unhonoured {
        path: "spec.mtls.controlPlaneTrustDomain",
        applies: given,
        instead: "the trust domain is --trust-domain",
    },
    Unhonoured {
        path: "spec.mtls.tokenValidators",
        applies: given,
        instead: "the CA service is configured by its own flags",
    },
    Unhonoured {
        path: "spec.metric",
        applies: given,
        instead: "metrics are recorded as Outrider records them (route templates as path labels)",
    },
    Unhonoured {
        path: "spec.metrics",
        applies: given,
        instead: "metrics are recorded as Outrider records them (route templates as path labels)",
    },
    Unhonoured {
        path: "spec.features",
        applies: given,
        instead: "preview features are not read",
    },
    Unhonoured {
        path: "spec.wasm",
        applies: given,
        instead: "there is no WebAssembly middleware",
    },
    Unhonoured {
        path: "spec.workflow",
        applies: given,
        instead: "workflows are not served yet",
    },
];

const RESILIENCY_UNHONOURED: &[Unhonoured] = &[Unhonoured {
    path: "spec.targets.apps.*.circuitBreakerCacheSize",
    applies: given,
    instead: "one breaker per app is kept, whatever its size",
}];

/// Checks one document of `kind` read from `at`: fields that are not the kind's are warned of;
/// known fields Outrider does not honour are warned of.
pub(super) fn check(kind: &str, doc: &Value, at: &str, warnings: &mut Vec<Problem>) {
    let (shape, unhonoured) = match kind {
        "Configuration" => (CONFIGURATION, CONFIGURATION_UNHONOURED),
        "Component" => (COMPONENT, &[][..]),
        "Resiliency" => (RESILIENCY, RESILIENCY_UNHONOURED),
        "Subscription" => (SUBSCRIPTION, &[][..]),
        "HTTPEndpoint" => (HTTP_ENDPOINT, &[][..]),
        _ => return,
    };
    let mut unknown = Vec::new();
    walk(doc, shape, "", &mut unknown);
    for (field, value) in unknown {
        // Settings, headers and TLS documents may hold secrets: their values are not quoted.
        let secretive = ["spec.metadata", "spec.headers", "spec.clientTLS"]
            .iter()
            .any(|p| field.starts_with(p));
        // A URL with credentials in it, most likely.
        let at_sign = value.as_str().is_some_and(|s| s.contains('@'));
        let shown = if (secretive || at_sign) && !value.is_object() && !value.is_array() {
            "a value".to_owned()
        } else {
            brief(value)
        };
        warnings.push(Problem {
            at: format!("{at}: {field}"),
            message: format!(
                "{shown} is not a field of {} {kind}; ignored",
                article(kind)
            ),
        });
    }
    for u in unhonoured {
        let mut found = Vec::new();
        find(
            doc,
            &u.path.split('.').collect::<Vec<_>>(),
            String::new(),
            &mut found,
        );
        for (field, value) in found.into_iter().filter(|(_, v)| (u.applies)(v)) {
            warnings.push(Problem {
                at: format!("{at}: {field}"),
                message: format!("{}: {}", brief(value), u.instead),
            });
        }
    }
}

/// Collects the fields of `v` that `shape` does not have.
fn walk<'a>(v: &'a Value, shape: Shape, path: &str, out: &mut Vec<(String, &'a Value)>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (shape, v) {
        (Fields(fields), Value::Object(map)) => {
            for (k, child) in map {
                match fields.iter().find(|(name, _)| name == k) {
                    Some((_, s)) => walk(child, *s, &join(k), out),
                    None => out.push((join(k), child)),
                }
            }
        }
        (Map(each), Value::Object(map)) => {
            for (k, child) in map {
                walk(child, *each, &join(k), out);
            }
        }
        (List(each), Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, *each, &format!("{path}[{i}]"), out);
            }
        }
        // Wrong types are the readers' to report.
        _ => {}
    }
}

/// The values at `path` (`*` for every key), with their dotted paths.
fn find<'a>(v: &'a Value, path: &[&str], at: String, out: &mut Vec<(String, &'a Value)>) {
    let Some((first, rest)) = path.split_first() else {
        if !v.is_null() {
            out.push((at, v));
        }
        return;
    };
    let join = |k: &str| {
        if at.is_empty() {
            k.to_owned()
        } else {
            format!("{at}.{k}")
        }
    };
    match (*first, v) {
        ("*", Value::Object(map)) => {
            for (k, child) in map {
                find(child, rest, join(k), out);
            }
        }
        ("*", Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                find(child, rest, format!("{at}[{i}]"), out);
            }
        }
        (k, Value::Object(map)) => {
            if let Some(child) = map.get(k) {
                find(child, rest, join(k), out);
            }
        }
        _ => {}
    }
}

fn article(kind: &str) -> &'static str {
    if kind == "HTTPEndpoint" { "an" } else { "a" }
}

/// A value as a warning quotes it: short scalars whole, the rest by kind.
fn brief(v: &Value) -> String {
    let text = match v {
        Value::Object(_) => return "a mapping".into(),
        Value::Array(a) => return format!("a list of {}", a.len()),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.len() > 60 {
        format!("{}…", &text[..text.floor_char_boundary(57)])
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
