//! What an app hosting actors says of them: its answer to `GET /dapr/config`, read as daprd reads
//! it, into the settings of each actor type it hosts.
//!
//! `entities` names the hosted types; `actorIdleTimeout` (default 60m), `drainOngoingCallTimeout`
//! (default 2s), `drainRebalancedActors` (default true) and `reentrancy` (`enabled`,
//! `maxStackDepth`, default 32) apply to all of them, and an `entitiesConfig` entry overrides
//! them for the types it lists. As in daprd, a malformed duration at the top level is an error,
//! one in an `entitiesConfig` entry keeps the default with a warning, and an entry for a type the
//! app does not host is warned about. `actorScanInterval` and `remindersStoragePartitions` are
//! accepted and have no effect (daprd dropped them).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::pubsub::cloudevent::go_duration;

/// How long an idle actor stays active, unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long calls under way may finish when an actor moves, unless configured.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// The deepest reentrant call chain, unless configured.
pub const DEFAULT_MAX_STACK_DEPTH: u32 = 32;

/// The settings of one hosted actor type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeConfig {
    /// Deactivate after this long without a call.
    pub idle_timeout: Duration,
    /// How long calls under way may finish when the actor moves to another host.
    pub drain_timeout: Duration,
    /// Whether calls under way finish (up to `drain_timeout`) before an actor moves.
    pub drain_rebalanced: bool,
    /// The deepest reentrant chain, when reentrancy is enabled.
    pub reentrancy: Option<u32>,
}

/// The app's answer, as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppConfig {
    #[serde(default)]
    entities: Vec<String>,
    #[serde(flatten)]
    settings: Settings,
    #[serde(default)]
    entities_config: Vec<EntityConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityConfig {
    #[serde(default)]
    entities: Vec<String>,
    #[serde(flatten)]
    settings: Settings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    #[serde(default)]
    actor_idle_timeout: Option<String>,
    #[serde(default)]
    drain_ongoing_call_timeout: Option<String>,
    #[serde(default)]
    drain_rebalanced_actors: Option<bool>,
    #[serde(default)]
    reentrancy: Option<Reentrancy>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reentrancy {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    max_stack_depth: Option<u32>,
}

/// A duration setting: `Ok(None)` when absent or empty, the error naming `field` and the value.
fn duration(value: Option<&String>, field: &str) -> Result<Option<Duration>, String> {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => go_duration(v)
            .map(Some)
            .ok_or_else(|| format!("{field}: {v:?} is not a duration like 30s or 1h")),
    }
}

impl Settings {
    /// These settings over `base`; a malformed duration is an error naming its field.
    fn over(&self, base: TypeConfig) -> Result<TypeConfig, String> {
        Ok(TypeConfig {
            idle_timeout: duration(self.actor_idle_timeout.as_ref(), "actorIdleTimeout")?
                .unwrap_or(base.idle_timeout),
            drain_timeout: duration(
                self.drain_ongoing_call_timeout.as_ref(),
                "drainOngoingCallTimeout",
            )?
            .unwrap_or(base.drain_timeout),
            drain_rebalanced: self
                .drain_rebalanced_actors
                .unwrap_or(base.drain_rebalanced),
            reentrancy: match self.reentrancy {
                None => base.reentrancy,
                Some(r) if !r.enabled => None,
                Some(r) => Some(r.max_stack_depth.unwrap_or(DEFAULT_MAX_STACK_DEPTH)),
            },
        })
    }
}

/// The hosted actor types with their settings, and warnings for what was set aside; an error
/// for a body that is not the config document or a malformed top-level duration.
pub fn parse(body: &[u8]) -> Result<(BTreeMap<String, TypeConfig>, Vec<String>), String> {
    let app: AppConfig = serde_json::from_slice(body)
        .map_err(|e| format!("the app's /dapr/config is not its actor configuration: {e}"))?;
    let defaults = TypeConfig {
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        drain_rebalanced: true,
        reentrancy: None,
    };
    let global = app.settings.over(defaults)?;
    let mut types: BTreeMap<String, TypeConfig> = BTreeMap::new();
    for t in &app.entities {
        if t.is_empty() || t.contains("||") || t.contains('/') {
            return Err(format!("entities: {t:?} is not an actor type name"));
        }
        types.insert(t.clone(), global);
    }
    let mut warnings = Vec::new();
    for entry in &app.entities_config {
        let config = entry.settings.over(global).unwrap_or_else(|e| {
            warnings.push(format!(
                "entitiesConfig {:?}: {e}; the defaults apply",
                entry.entities
            ));
            global
        });
        for t in &entry.entities {
            match types.get_mut(t) {
                Some(slot) => *slot = config,
                None => warnings.push(format!(
                    "entitiesConfig names {t:?}, an actor type the app does not host"
                )),
            }
        }
    }
    Ok((types, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_as_daprd_reads_it() {
        let body = br#"{
            "entities": ["Counter", "Timer"],
            "actorIdleTimeout": "10m", "drainOngoingCallTimeout": "5s",
            "actorScanInterval": "30s", "remindersStoragePartitions": 0,
            "reentrancy": {"enabled": true},
            "entitiesConfig": [
                {"entities": ["Timer"], "actorIdleTimeout": "1m", "reentrancy": {"enabled": false}},
                {"entities": ["Ghost"], "actorIdleTimeout": "1m"}
            ]
        }"#;
        let (types, warnings) = parse(body).unwrap();
        let counter = types["Counter"];
        assert_eq!(counter.idle_timeout, Duration::from_secs(600));
        assert_eq!(counter.drain_timeout, Duration::from_secs(5));
        assert!(counter.drain_rebalanced);
        assert_eq!(counter.reentrancy, Some(DEFAULT_MAX_STACK_DEPTH));
        let timer = types["Timer"];
        assert_eq!(
            (timer.idle_timeout, timer.reentrancy),
            (Duration::from_secs(60), None)
        );
        assert_eq!(timer.drain_timeout, Duration::from_secs(5), "inherited");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("Ghost"), "{warnings:?}");
    }

    #[test]
    fn defaults_and_refusals() {
        let (types, warnings) = parse(br#"{"entities": ["A"]}"#).unwrap();
        assert_eq!(
            types["A"],
            TypeConfig {
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
                drain_rebalanced: true,
                reentrancy: None,
            }
        );
        assert!(warnings.is_empty());
        assert!(
            parse(b"{}").unwrap().0.is_empty(),
            "an app hosting no actors"
        );
        let e = parse(br#"{"entities": ["A"], "actorIdleTimeout": "soon"}"#).unwrap_err();
        assert!(e.contains("actorIdleTimeout") && e.contains("soon"), "{e}");
        let (types, warnings) =
            parse(br#"{"entities": ["A"], "entitiesConfig": [{"entities": ["A"], "drainOngoingCallTimeout": "x"}]}"#)
                .unwrap();
        assert_eq!(types["A"].drain_timeout, DEFAULT_DRAIN_TIMEOUT);
        assert!(
            warnings[0].contains("drainOngoingCallTimeout"),
            "{warnings:?}"
        );
        for bad in [
            &br#"{"entities": ["a||b"]}"#[..],
            br#"{"entities": [""]}"#,
            b"[]",
            b"not json",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let (types, _) =
            parse(br#"{"entities": ["A"], "reentrancy": {"enabled": true, "maxStackDepth": 4}}"#)
                .unwrap();
        assert_eq!(types["A"].reentrancy, Some(4));
    }
}
