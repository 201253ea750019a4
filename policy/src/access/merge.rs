//! Merging the sources of access control (the sidecar's `--config`, then policy files by name)
//! into the one [`AccessControl`] a sidecar enforces. A global field set by two sources must
//! agree, and an app id and namespace may have one policy only; each conflict is a problem
//! naming both files.

use std::collections::HashMap;

use super::{AccessControl, AccessControlSpec, Action, AppPolicy};
use crate::Problem;

impl AccessControl {
    /// Merges sources in order (the sidecar's `--config` first, then policy files by name). A
    /// global field set by two sources must agree, and an app id and namespace may have one
    /// policy only; each conflict is a problem naming both files.
    pub fn merge(specs: impl IntoIterator<Item = AccessControlSpec>) -> Result<Self, Vec<Problem>> {
        let specs: Vec<AccessControlSpec> = specs.into_iter().filter(|s| !s.is_empty()).collect();
        if specs.is_empty() {
            return Ok(Self::open());
        }
        let mut merged = Merged::default();
        for spec in &specs {
            merged.add(spec);
        }
        merged.finish(&specs)
    }
}

/// The sources merged so far: each global field with the file that set it first.
#[derive(Default)]
struct Merged<'a> {
    problems: Vec<Problem>,
    default_action: Option<(Action, &'a str)>,
    trust_domain: Option<(&'a str, &'a str)>,
    has_policies_key: bool,
    policies: HashMap<(String, String), AppPolicy>,
}

impl<'a> Merged<'a> {
    /// Adds one source; its conflicts with earlier ones become problems.
    fn add(&mut self, spec: &'a AccessControlSpec) {
        if let Some(a) = spec.default_action {
            match self.default_action {
                Some((b, from)) if a != b => self.problems.push(Problem::new(
                    format!("{}: spec.accessControl.defaultAction", spec.origin),
                    format!("{a} conflicts with {b} in {from}"),
                )),
                Some(_) => {}
                None => self.default_action = Some((a, &spec.origin)),
            }
        }
        if let Some(td) = spec.trust_domain.as_deref().filter(|t| !t.is_empty()) {
            match self.trust_domain {
                Some((other, from)) if other != td => self.problems.push(Problem::new(
                    format!("{}: spec.accessControl.trustDomain", spec.origin),
                    format!("{td:?} conflicts with {other:?} in {from}"),
                )),
                Some(_) => {}
                None => self.trust_domain = Some((td, &spec.origin)),
            }
        }
        self.has_policies_key |= spec.policies.is_some();
        for p in spec.policies.iter().flatten() {
            let key = (p.app_id.clone(), p.namespace.clone());
            if let Some(first) = self.policies.get(&key) {
                self.problems.push(Problem::new(
                    format!("{}: spec.accessControl.policies", p.origin),
                    format!(
                        "app {:?} in namespace {:?} already has a policy in {}",
                        p.app_id, p.namespace, first.origin
                    ),
                ));
                continue;
            }
            self.policies.insert(key, p.clone());
        }
    }

    /// The access control of all `specs`, unless a conflict was found.
    fn finish(self, specs: &[AccessControlSpec]) -> Result<AccessControl, Vec<Problem>> {
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        // daprd: without a default, deny when the resource has a `policies` key at all (even
        // when only `trustDomain` is set, since its list is then nil); allow for an empty list.
        let any_policies = specs
            .iter()
            .any(|s| s.policies.as_ref().is_some_and(|p| !p.is_empty()));
        let default_action = match self.default_action {
            Some((a, _)) => a,
            None if any_policies || !self.has_policies_key => Action::Deny,
            None => Action::Allow,
        };
        Ok(AccessControl {
            enabled: true,
            default_action,
            trust_domain: self
                .trust_domain
                .map_or_else(|| "public".to_owned(), |(t, _)| t.to_owned()),
            policies: self.policies,
        })
    }
}
