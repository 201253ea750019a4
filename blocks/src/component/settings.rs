//! A component's settings (`spec.metadata`, names lower-cased as daprd matches them) that
//! remember which were read, so that a setting the component's type never reads — a
//! misspelling, or one this build does not honour — is named instead of being ignored in
//! silence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// The settings, and the names read so far.
#[derive(Debug, Default)]
pub struct Settings {
    map: BTreeMap<String, String>,
    read: Mutex<BTreeSet<String>>,
}

impl Settings {
    pub(crate) fn new(map: BTreeMap<String, String>) -> Self {
        Self {
            map,
            read: Mutex::default(),
        }
    }

    /// The setting `key` (lower case), marked read.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned());
        self.map.get(key)
    }

    /// Every value, whatever its name (nothing is marked read).
    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.map.values()
    }

    /// The settings given that nothing read, as written in lower case.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        self.map
            .keys()
            .filter(|k| !read.contains(*k))
            .cloned()
            .collect()
    }

    /// Names each setting of `component` (of `type_`) that opening it did not read.
    pub fn warn_unread(&self, component: &str, type_: &str) {
        for key in self.unread() {
            tracing::warn!(
                component, r#type = type_, setting = %key,
                "spec.metadata {key:?} is not a setting {type_} reads in this build; ignored"
            );
        }
    }
}

impl std::ops::Index<&str> for Settings {
    type Output = String;

    fn index(&self, key: &str) -> &String {
        self.get(key).expect("a setting that is there")
    }
}

impl FromIterator<(String, String)> for Settings {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(it: I) -> Self {
        Self::new(it.into_iter().collect())
    }
}
