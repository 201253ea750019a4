//! Start phase: open every component (secret stores first, then state stores, pub/subs, lock
//! and configuration stores, bindings); state stores, publishes and locks wrapped in their resiliency
//! policies.

use std::collections::BTreeMap;

use anyhow::Context as _;
use outrider_blocks::bindings::{self, BindingComponent};
use outrider_blocks::configuration::{self, ConfigurationComponent};
use outrider_blocks::lock::{self, LockComponent};
use outrider_blocks::pubsub::{self, PubSubComponent};
use outrider_blocks::secrets::{self, SecretStoreComponent};
use outrider_blocks::state::{self, OpenContext, StateComponent};
use outrider_blocks::{Component, ComponentError};

use crate::api::pipeline::Pipeline;
use crate::config::Settings;
use crate::mesh::outbound::external::{self, Externals};

/// The open components: secret, state, lock and configuration stores, pub/subs and bindings,
/// by name.
pub(super) struct Engines {
    pub(super) secret_stores: BTreeMap<String, SecretStoreComponent>,
    pub(super) stores: BTreeMap<String, StateComponent>,
    pub(super) pubsubs: BTreeMap<String, PubSubComponent>,
    pub(super) locks: BTreeMap<String, LockComponent>,
    pub(super) configurations: BTreeMap<String, ConfigurationComponent>,
    pub(super) bindings: BTreeMap<String, BindingComponent>,
    /// `spec.httpPipeline`'s middleware, open.
    pub(super) pipeline: Pipeline,
    /// `spec.appHttpPipeline`'s, open.
    pub(super) app_pipeline: Pipeline,
    /// The `HTTPEndpoint`s this app may invoke, open.
    pub(super) externals: Externals,
}

impl Engines {
    /// Opens every component, each wrapped in its resiliency policy; all failures are reported
    /// together.
    pub(super) async fn open(s: &Settings) -> anyhow::Result<Self> {
        // Secret stores first: other components' `secretKeyRef`s are read from them. A relative
        // `secretsFile` is read from the directory the sidecar was started in, as daprd does.
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let secret_stores = open_all(s, "secretstores.", async |c| secrets::open(c, &cwd)).await?;
        let ctx = OpenContext {
            app_id: s.app_id.clone(),
            namespace: s.namespace.clone(),
            data_dir: s.data_dir.clone(),
        };
        let mut stores = open_resolved(s, "state.", &secret_stores, async |c| {
            state::open(c, &ctx).await
        })
        .await?;
        for c in stores.values_mut() {
            crate::components::resiliency::layer_state(
                c,
                &s.resiliency,
                &s.app_id,
                crate::api::STORE_TIMEOUT,
            );
        }
        one_actor_store(s, &stores)?;
        let mut pubsubs = open_resolved(s, "pubsub.", &secret_stores, async |c| {
            pubsub::open(c, &s.app_id, &s.namespace).await
        })
        .await?;
        for c in pubsubs.values_mut() {
            crate::components::resiliency::layer_publish(
                c,
                &s.resiliency,
                &s.app_id,
                crate::api::STORE_TIMEOUT,
            );
        }
        let mut locks =
            open_resolved(s, "lock.", &secret_stores, async |c| lock::open(c).await).await?;
        for c in locks.values_mut() {
            crate::components::resiliency::layer_lock(
                c,
                &s.resiliency,
                &s.app_id,
                crate::api::STORE_TIMEOUT,
            );
        }
        let configurations = open_resolved(s, "configuration.", &secret_stores, async |c| {
            configuration::open(c).await
        })
        .await?;
        let bindings = open_bindings(s, &secret_stores).await?;
        let pipeline = open_pipeline(s, &s.http_pipeline, &secret_stores, "spec.httpPipeline");
        let pipeline = pipeline.await?;
        let app_pipeline = open_pipeline(
            s,
            &s.app_http_pipeline,
            &secret_stores,
            "spec.appHttpPipeline",
        );
        let app_pipeline = app_pipeline.await?;
        let externals = open_endpoints(s, &secret_stores)?;
        Ok(Self {
            secret_stores,
            stores,
            pubsubs,
            locks,
            configurations,
            bindings,
            pipeline,
            app_pipeline,
            externals,
        })
    }
}

/// At most one state store holds actors (daprd's rule): two are a start error naming both.
fn one_actor_store(s: &Settings, stores: &BTreeMap<String, StateComponent>) -> anyhow::Result<()> {
    let named: Vec<String> = stores
        .values()
        .filter(|c| c.actor_store)
        .map(|c| {
            let at = s
                .components
                .iter()
                .find(|l| l.component.metadata.name == c.name && l.component.spec.type_ == c.type_)
                .map_or_else(String::new, |l| format!("{}: ", l.at));
            format!("{at}{} (spec.metadata.actorStateStore: \"true\")", c.name)
        })
        .collect();
    if named.len() > 1 {
        anyhow::bail!(
            "only one state store may hold actors, and {} do:\n  - {}",
            named.len(),
            named.join("\n  - ")
        );
    }
    Ok(())
}

/// Reads the endpoints' secrets, then opens them; all failures are reported together.
fn open_endpoints(
    s: &Settings,
    secret_stores: &BTreeMap<String, SecretStoreComponent>,
) -> anyhow::Result<Externals> {
    let mut declared = Vec::new();
    let mut problems = Vec::new();
    for doc in &s.http_endpoints {
        let mut doc = doc.clone();
        let owner = format!("HTTPEndpoint {:?}", doc.name);
        let items = (doc.headers.iter_mut().enumerate())
            .map(|(i, h)| (format!("spec.headers[{i}] ({})", h.name), h))
            .chain((doc.tls.iter_mut()).map(|t| (format!("spec.clientTLS.{}", t.name), t)));
        let store = doc.secret_store.as_deref();
        if let Err(errs) = secrets::resolve_items(items, store, secret_stores, &owner) {
            problems.extend(errs.iter().map(|e| format!("{}: {e}", doc.at)));
            continue;
        }
        let text = |i: &outrider_blocks::MetadataItem| match &i.value {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let tls_doc = |name: &str| doc.tls.iter().find(|t| t.name == name).map(text);
        declared.push(external::Declared {
            at: doc.at.clone(),
            name: doc.name.clone(),
            base_url: doc.base_url.clone(),
            headers: doc
                .headers
                .iter()
                .map(|h| (h.name.clone(), text(h)))
                .collect(),
            tls: external::ClientTls {
                root_ca: tls_doc("rootCA"),
                certificate: tls_doc("certificate"),
                private_key: tls_doc("privateKey"),
            },
        });
    }
    if !problems.is_empty() {
        anyhow::bail!("opening the HTTP endpoints failed: {}", problems.join("; "));
    }
    Externals::open(declared, &s.app_id, &s.resiliency, s.ca_file.as_deref())
        .map_err(|p| anyhow::anyhow!("opening the HTTP endpoints failed: {}", p.join("; ")))
}

/// One pipeline's middleware, their secrets read, open.
async fn open_pipeline(
    s: &Settings,
    components: &[Component],
    secret_stores: &BTreeMap<String, SecretStoreComponent>,
    field: &str,
) -> anyhow::Result<Pipeline> {
    let mut resolved = Vec::new();
    for c in components {
        resolved.push(
            secrets::resolve_references(c, secret_stores)
                .map_err(|errs| failed(&c.metadata.name, errs))?,
        );
    }
    Pipeline::open(&resolved, s.ca_file.as_deref())
        .await
        .map_err(|errs| failed(field, errs))
}

/// The start failing on `what` (a component or the pipeline).
fn failed(what: &str, errs: Vec<ComponentError>) -> anyhow::Error {
    let all: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    anyhow::anyhow!(
        "opening the HTTP middleware {what} failed: {}",
        all.join("; ")
    )
}

/// [`open_all`] for components whose `secretKeyRef`s and `envRef`s are read first.
/// Opens every binding (`bindings.http` on the sidecar's own HTTP client), its output calls
/// wrapped in their resiliency policies.
async fn open_bindings(
    s: &Settings,
    secret_stores: &BTreeMap<String, SecretStoreComponent>,
) -> anyhow::Result<BTreeMap<String, BindingComponent>> {
    let ca_file = s.ca_file.as_deref();
    let http = |c: &Component, md: &_| external::binding::open(c, md, ca_file);
    let mut bindings = open_resolved(s, "bindings.", secret_stores, async |c| {
        bindings::open_with(c, &http).await
    })
    .await?;
    for c in bindings.values_mut() {
        crate::components::resiliency::layer_binding(
            c,
            &s.resiliency,
            &s.app_id,
            crate::api::bindings::BINDING_TIMEOUT,
        );
    }
    Ok(bindings)
}

async fn open_resolved<T>(
    s: &Settings,
    category: &str,
    secret_stores: &BTreeMap<String, SecretStoreComponent>,
    open: impl AsyncFn(&Component) -> Result<T, Vec<ComponentError>>,
) -> anyhow::Result<BTreeMap<String, T>> {
    open_all(s, category, async |c| {
        let c = secrets::resolve_references(c, secret_stores)?;
        open(&c).await
    })
    .await
}

/// Opens every component of one category (`state.`, `pubsub.`), by name; all failures are
/// reported together, naming file and field.
async fn open_all<T>(
    s: &Settings,
    category: &str,
    open: impl AsyncFn(&Component) -> Result<T, Vec<ComponentError>>,
) -> anyhow::Result<BTreeMap<String, T>> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for loaded in s
        .components
        .iter()
        .filter(|l| l.component.spec.type_.starts_with(category))
    {
        let c = &loaded.component;
        let opened = match c.spec.init_timeout() {
            Some(limit) => tokio::time::timeout(limit, open(c))
                .await
                .unwrap_or_else(|_| {
                    Err(vec![ComponentError {
                        field: "spec.initTimeout".into(),
                        message: format!("not open within {limit:?}"),
                    }])
                }),
            None => open(c).await,
        };
        match opened {
            Ok(opened) => {
                tracing::info!(name = %c.metadata.name, r#type = %c.spec.type_, "component ready");
                out.insert(c.metadata.name.clone(), opened);
            }
            // daprd's words, since it carries on the same way.
            Err(errs) if c.spec.ignore_errors => {
                for e in errs {
                    tracing::error!(
                        file = %loaded.at, field = %e.field,
                        "Ignoring error processing component: process component {} error: {} \
                         (spec.ignoreErrors: true; the sidecar starts without it)",
                        c.metadata.name, e.message
                    );
                }
            }
            Err(errs) => problems.extend(
                errs.into_iter()
                    .map(|e| format!("{}: {}: {}", loaded.at, e.field, e.message)),
            ),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        anyhow::bail!(
            "opening components failed:\n  - {}",
            problems.join("\n  - ")
        )
    }
}
