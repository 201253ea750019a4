//! From a `Component` document to a running binding.

use std::path::Path;
use std::sync::Arc;

use super::{CronBinding, InputBinding, LocalStorage, OutputBinding, RedisBinding};
use crate::component::Settings;
use crate::component::{field_error as err, unsupported_type};
use crate::state::{literal_metadata, redis_settings};
use crate::{Component, ComponentError};

/// An opened binding component.
#[derive(Clone)]
pub struct BindingComponent {
    /// Its name (`metadata.name`): the `{name}` of `/v1.0/bindings/{name}`.
    pub name: String,
    /// Its type, e.g. `bindings.redis`.
    pub type_: String,
    /// Its version, e.g. `v1`.
    pub version: String,
    /// Its output side, when it has one.
    pub output: Option<Arc<dyn OutputBinding>>,
    /// Its input side, when it has one.
    pub input: Option<Input>,
}

/// The input side of a binding component.
#[derive(Clone)]
pub struct Input {
    /// The source of events.
    pub source: Arc<dyn InputBinding>,
    /// The app's path events are posted to: `route` metadata, else `/<name>`.
    pub route: String,
    /// `direction` names `input`: events are read without asking the app first.
    pub declared: bool,
}

/// The sides `direction` asks for (both when it is absent), or why it is wrong.
fn directions(value: Option<&String>) -> Result<(bool, bool), Vec<ComponentError>> {
    let Some(v) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok((true, true));
    };
    let (mut input, mut output) = (false, false);
    for part in v.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match part.as_str() {
            "input" => input = true,
            "output" => output = true,
            bad => {
                return Err(err(
                    "spec.metadata.direction",
                    format!("{bad:?} is not input or output"),
                ));
            }
        }
    }
    Ok((input, output))
}

/// An output side this crate does not open itself: `Some` for the types it serves (the
/// sidecar's HTTP client serves `bindings.http`), `None` for the others.
pub type Outside<'a> = &'a (dyn Fn(&Component, &Settings) -> Option<OutsideOpened> + Sync);

/// What an [`Outside`] opened.
pub type OutsideOpened = Result<Arc<dyn OutputBinding>, Vec<ComponentError>>;

/// Opens a binding component. Errors name the field.
pub async fn open(c: &Component) -> Result<BindingComponent, Vec<ComponentError>> {
    open_with(c, &|_, _| None).await
}

/// Opens a binding component, asking `outside` for the types this crate does not serve.
pub async fn open_with(
    c: &Component,
    outside: Outside<'_>,
) -> Result<BindingComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    let (want_input, want_output) = directions(md.get("direction"))?;
    let (input, output) = sides(c, &md, want_input, want_output, outside).await?;
    let what = |side: &str| {
        err(
            "spec.metadata.direction",
            format!("{} has no {side} side", c.spec.type_),
        )
    };
    // A side asked for by name that the type does not have would do nothing: refused.
    let named = md.get("direction").is_some_and(|v| !v.trim().is_empty());
    if named && want_input && input.is_none() {
        return Err(what("input"));
    }
    if named && want_output && output.is_none() {
        return Err(what("output"));
    }
    let route = match md.get("route").filter(|r| !r.trim().is_empty()) {
        Some(r) if r.trim().starts_with('/') => r.trim().to_owned(),
        Some(r) => format!("/{}", r.trim()),
        None => format!("/{}", c.metadata.name),
    };
    // A path the app can be sent: visible ASCII (percent-encode the rest), no fragment.
    let sendable =
        |r: &str| r.len() <= 1024 && r.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
    if input.is_some() && !sendable(&route) {
        return Err(err(
            "spec.metadata.route",
            format!("{route:?} is not a URL path the app could be sent events on"),
        ));
    }
    md.warn_unread(&c.metadata.name, &c.spec.type_);
    Ok(BindingComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: c.spec.version_or_v1(),
        output,
        input: input.map(|source| Input {
            source,
            route,
            declared: named && want_input,
        }),
    })
}

type Sides = (
    Option<Arc<dyn InputBinding>>,
    Option<Arc<dyn OutputBinding>>,
);

/// The sides of the component's type that `want_input` and `want_output` ask for.
async fn sides(
    c: &Component,
    md: &Settings,
    want_input: bool,
    want_output: bool,
    outside: Outside<'_>,
) -> Result<Sides, Vec<ComponentError>> {
    let output: Arc<dyn OutputBinding> = match c.spec.type_.as_str() {
        "bindings.cron" => {
            let input: Arc<dyn InputBinding> = Arc::new(CronBinding::open(md)?);
            return Ok((want_input.then_some(input), None));
        }
        "bindings.mqtt3" | "bindings.rabbitmq" => {
            let binding = if c.spec.type_ == "bindings.mqtt3" {
                super::queue::open_mqtt(&c.metadata.name, md).await?
            } else {
                super::queue::open_rabbitmq(&c.metadata.name, md).await?
            };
            let binding = Arc::new(binding);
            let input: Arc<dyn InputBinding> = binding.clone();
            let output: Arc<dyn OutputBinding> = binding;
            return Ok((want_input.then_some(input), want_output.then_some(output)));
        }
        "bindings.postgresql" => Arc::new(super::postgres::open(md).await?),
        "bindings.mysql" => Arc::new(super::mysql::open(&c.metadata.name, md).await?),
        "bindings.localstorage" => {
            let root = (md.get("rootpath").filter(|v| !v.is_empty()))
                .ok_or_else(|| err("spec.metadata.rootPath", "is required"))?;
            Arc::new(
                LocalStorage::open(Path::new(root))
                    .map_err(|e| err("spec.metadata.rootPath", e))?,
            )
        }
        "bindings.redis" => {
            let settings = redis_settings(md)?;
            let binding = RedisBinding::connect(&settings).await.map_err(|e| {
                err(
                    "spec.metadata.redisHost",
                    format!("{}:{}: {e}", settings.host, settings.port),
                )
            })?;
            Arc::new(binding)
        }
        other => match outside(c, md) {
            Some(opened) => opened?,
            None => return Err(unsupported_type(other, "binding")),
        },
    };
    Ok((None, want_output.then_some(output)))
}
