//! The resources directories: every `Component`, `Subscription`, `Resiliency` and
//! `HTTPEndpoint` document that applies to this app, each validated by the code that owns its
//! kind; and the built-in components a sidecar gets when no directory is given.

use std::path::{Path, PathBuf};

use outrider_blocks::Component;
use outrider_blocks::subscription::{Declared, SubscriptionDoc};
use outrider_filters::resiliency::Resiliency;

use super::{FieldProblem, LoadedComponent, Problem, display, within};
use crate::cli::RunArgs;

/// What the resource directories hold for this app.
#[derive(Default)]
pub(super) struct Resources {
    pub(super) components: Vec<LoadedComponent>,
    pub(super) subscriptions: Vec<Declared>,
    pub(super) resiliency: Vec<Resiliency>,
    pub(super) endpoints: Vec<super::endpoints::HttpEndpointDoc>,
}

/// Loads every `--resources-path` directory in order, or the built-in components when none is
/// given.
pub(super) fn load(
    args: &RunArgs,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Resources {
    let mut found = Resources::default();
    for dir in &args.resources_path {
        load_dir(dir, &args.app_id, &mut found, (problems, warnings));
    }
    if args.resources_path.is_empty() {
        found.components = default_components();
    }
    found
}

/// What a sidecar gets when no resources are given: a durable SQLite `statestore` under the data
/// directory and an in-memory `pubsub`.
fn default_components() -> Vec<LoadedComponent> {
    use outrider_blocks::component::{ComponentSpec, MetadataItem, ObjectMeta};
    let built_in = |name: &str, type_: &str, metadata: &[(&str, &str)]| LoadedComponent {
        at: "built-in default".into(),
        component: Component {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: None,
            },
            spec: ComponentSpec {
                type_: type_.into(),
                version: "v1".into(),
                ignore_errors: false,
                init_timeout: None,
                metadata: metadata
                    .iter()
                    .map(|(k, v)| MetadataItem {
                        name: (*k).into(),
                        value: Some(serde_json::Value::from(*v)),
                        secret_key_ref: None,
                        env_ref: None,
                    })
                    .collect(),
            },
            auth: None,
            scopes: Vec::new(),
        },
    };
    vec![
        built_in(
            "statestore",
            "state.sqlite",
            &[("connectionString", "state.db")],
        ),
        built_in("pubsub", "pubsub.in-memory", &[]),
    ]
}

/// Loads every `*.yaml`/`*.yml` directly inside `dir` (not recursively), like daprd.
fn load_dir(
    dir: &Path,
    app_id: &str,
    found: &mut Resources,
    (problems, warnings): (&mut Vec<Problem>, &mut Vec<Problem>),
) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push(Problem {
                at: "--resources-path".into(),
                message: format!("{}: {e}", dir.display()),
            });
            return;
        }
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|d| d.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    for path in files {
        let at = display(&path);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem {
                    at,
                    message: e.to_string(),
                });
                continue;
            }
        };
        match serde_saphyr::from_multiple::<serde_json::Value>(&text) {
            Ok(docs) => {
                for (i, doc) in docs.into_iter().enumerate() {
                    let at = match i {
                        0 => at.clone(),
                        _ => format!("{at} (document {})", i + 1),
                    };
                    load_doc(doc, &at, app_id, found, (problems, warnings));
                }
            }
            Err(e) => problems.push(Problem {
                at,
                message: format!("not valid YAML: {e}"),
            }),
        }
    }
}

/// One document, by its kind.
fn load_doc(
    doc: serde_json::Value,
    at: &str,
    app_id: &str,
    found: &mut Resources,
    (problems, warnings): (&mut Vec<Problem>, &mut Vec<Problem>),
) {
    if let Some(kind) = doc.get("kind").and_then(|k| k.as_str()) {
        super::fields::check(kind, &doc, at, warnings);
    }
    match doc.get("kind").and_then(|k| k.as_str()) {
        Some("Component") => {
            load_component(doc, at, app_id, &mut found.components, (problems, warnings))
        }
        Some("Subscription") => {
            load_subscription(doc, at, app_id, &mut found.subscriptions, problems)
        }
        Some("Resiliency") => match Resiliency::parse(&doc) {
            Ok(r) if r.applies_to(app_id) => found.resiliency.push(r),
            Ok(_) => {}
            Err(errs) => problems.extend(within(at, errs)),
        },
        Some("HTTPEndpoint") => {
            let before = found.endpoints.len();
            super::endpoints::load(doc, at, app_id, &mut found.endpoints, (problems, warnings));
            let name = found.endpoints.get(before).map(|e| e.name.clone());
            if let Some(name) = name
                && found.endpoints[..before].iter().any(|e| e.name == name)
            {
                found.endpoints.pop();
                problems.push(Problem {
                    at: format!("{at}: metadata.name"),
                    message: format!("HTTPEndpoint {name:?} is defined twice"),
                });
            }
        }
        Some("Configuration") => warnings.push(Problem {
            at: format!("{at}: kind"),
            message: "a Configuration in a resources directory is not read (as in daprd); \
                      give its file to --config"
                .into(),
        }),
        // Documents of other kinds are skipped, as daprd does.
        _ => {}
    }
}

fn load_component(
    doc: serde_json::Value,
    at: &str,
    app_id: &str,
    out: &mut Vec<LoadedComponent>,
    (problems, warnings): (&mut Vec<Problem>, &mut Vec<Problem>),
) {
    let mut c: Component = match serde_json::from_value(doc) {
        Ok(c) => c,
        Err(e) => {
            problems.push(Problem {
                at: at.to_owned(),
                message: format!("not a valid Component: {e}"),
            });
            return;
        }
    };
    if !c.scopes.is_empty() && !c.scopes.iter().any(|s| s == app_id) {
        return;
    }
    c.canonicalize();
    let errs = c.validate();
    if errs.is_empty() {
        if out
            .iter()
            .any(|o| o.component.metadata.name == c.metadata.name)
        {
            problems.push(Problem {
                at: format!("{at}: metadata.name"),
                message: format!("{:?} is defined twice", c.metadata.name),
            });
            return;
        }
        out.push(LoadedComponent {
            at: at.to_owned(),
            component: c,
        });
    } else if c.spec.ignore_errors {
        // daprd's words, since it carries on the same way.
        let name = &c.metadata.name;
        warnings.extend(errs.into_iter().map(|e| Problem {
            at: format!("{at}: {}", e.field),
            message: format!(
                "Ignoring error processing component: process component {name} error: {} \
                 (spec.ignoreErrors: true; the sidecar starts without it)",
                e.message
            ),
        }));
    } else {
        problems.extend(within(at, errs));
    }
}

fn load_subscription(
    doc: serde_json::Value,
    at: &str,
    app_id: &str,
    out: &mut Vec<Declared>,
    problems: &mut Vec<Problem>,
) {
    let s: SubscriptionDoc = match serde_json::from_value(doc) {
        Ok(s) => s,
        Err(e) => {
            problems.push(Problem {
                at: at.to_owned(),
                message: format!("not a valid Subscription: {e}"),
            });
            return;
        }
    };
    if !s.scopes.is_empty() && !s.scopes.iter().any(|a| a == app_id) {
        return;
    }
    match s.validate() {
        Ok(d) => out.push(d),
        Err(errs) => problems.extend(within(at, errs)),
    }
}

impl FieldProblem for outrider_blocks::ComponentError {
    fn parts(self) -> (String, String) {
        (self.field, self.message)
    }
}

impl FieldProblem for outrider_filters::resiliency::FieldError {
    fn parts(self) -> (String, String) {
        (self.field, self.message)
    }
}
