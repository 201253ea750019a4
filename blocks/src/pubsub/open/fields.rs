//! Typed reads of a broker component's metadata: durations, counts, flags and required
//! strings, each error naming the field and quoting the value.

use std::time::Duration;

use super::err;
use crate::ComponentError;
use crate::component::metadata_duration;

/// Reads typed metadata fields (keys lower-cased); errors name the field and the value.
pub(crate) struct Fields<'a>(pub(crate) &'a crate::component::Settings);

impl Fields<'_> {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(&name.to_ascii_lowercase())
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    pub(crate) fn required(
        &self,
        name: &str,
        example: &str,
    ) -> Result<String, Vec<ComponentError>> {
        self.string(name).ok_or_else(|| {
            err(
                &format!("spec.metadata.{name}"),
                format!("is required (e.g. {example})"),
            )
        })
    }

    pub(crate) fn duration(
        &self,
        name: &str,
        bare: Duration,
        default: Duration,
    ) -> Result<Duration, Vec<ComponentError>> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => metadata_duration(v, bare).ok_or_else(|| {
                err(
                    &format!("spec.metadata.{name}"),
                    format!("{v:?} is not a duration (e.g. 30s or 500ms)"),
                )
            }),
        }
    }

    pub(crate) fn count(&self, name: &str) -> Result<Option<u64>, Vec<ComponentError>> {
        self.parsed(name, "a whole number")
    }

    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, Vec<ComponentError>> {
        self.parsed(name, "a whole number")
    }

    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, Vec<ComponentError>> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(v) => Err(err(
                &format!("spec.metadata.{name}"),
                format!("{v:?} is not true or false"),
            )),
        }
    }

    pub(crate) fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, Vec<ComponentError>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                err(
                    &format!("spec.metadata.{name}"),
                    format!("{v:?} is not {what}"),
                )
            }),
        }
    }
}
