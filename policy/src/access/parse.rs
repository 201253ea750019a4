//! Reading one `spec.accessControl`: its global fields, its app policies and their operation
//! rules. Every problem is collected with its dotted field path and the value; a policy or rule
//! with a problem is left out. Merging the sources is [`super::merge`]'s business.

use serde_json::Value;

use super::trie::Trie;
use super::{AccessControlSpec, Action, AppPolicy, Operation, VERBS};
use crate::Problem;

impl AccessControlSpec {
    /// Reads `spec.accessControl` (the value of that key) from `origin` (a file name, used in
    /// rules and problems). Problems name the field and the value.
    pub fn parse(value: &Value, origin: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let base = "spec.accessControl";
        let mut spec = AccessControlSpec {
            origin: origin.to_owned(),
            default_action: None,
            trust_domain: None,
            policies: None,
        };
        let Some(obj) = value.as_object() else {
            if !value.is_null() {
                problems.push(Problem::new(base, format!("{value} is not a mapping")));
            }
            return if problems.is_empty() {
                Ok(spec)
            } else {
                Err(problems)
            };
        };
        spec.default_action = action_field(
            obj.get("defaultAction"),
            &format!("{base}.defaultAction"),
            &mut problems,
        );
        spec.trust_domain = string_field(
            obj.get("trustDomain"),
            &format!("{base}.trustDomain"),
            &mut problems,
        );
        let at = format!("{base}.policies");
        spec.policies = list(obj.get("policies"), &at, &mut problems).map(|items| {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    AppPolicy::parse(item, &format!("{at}[{i}]"), origin, &mut problems)
                })
                .collect()
        });
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(problems)
        }
    }
}

impl AppPolicy {
    fn parse(item: &Value, at: &str, origin: &str, problems: &mut Vec<Problem>) -> Option<Self> {
        let Some(obj) = item.as_object() else {
            problems.push(Problem::new(at, format!("{item} is not a mapping")));
            return None;
        };
        let before = problems.len();
        let mut required =
            |key: &str| match string_field(obj.get(key), &format!("{at}.{key}"), problems) {
                Some(s) if !s.is_empty() => s,
                _ => {
                    if obj.get(key).is_none_or(|v| v.as_str() == Some("")) {
                        problems.push(Problem::new(
                            format!("{at}.{key}"),
                            "is required".to_owned(),
                        ));
                    }
                    String::new()
                }
            };
        let app_id = required("appId");
        let namespace = required("namespace");
        let trust_domain = required("trustDomain");
        let default_action = action_field(
            obj.get("defaultAction"),
            &format!("{at}.defaultAction"),
            problems,
        );
        let ops_at = format!("{at}.operations");
        let operations: Vec<Operation> = list(obj.get("operations"), &ops_at, problems)
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, op)| Operation::parse(op, &format!("{ops_at}[{i}]"), problems))
            .collect();
        if problems.len() > before {
            return None;
        }
        let trie = index(&operations);
        Some(AppPolicy {
            origin: origin.to_owned(),
            app_id,
            namespace,
            trust_domain,
            default_action,
            operations,
            trie,
        })
    }
}

impl Operation {
    fn parse(item: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<Self> {
        let before = problems.len();
        let name = match item.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(v) if !v.is_null() => {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    format!("{v} is not an operation such as /orders/*"),
                ));
                String::new()
            }
            _ => {
                problems.push(Problem::new(format!("{at}.name"), "is required".to_owned()));
                String::new()
            }
        };
        let verbs = verbs(item.get("httpVerb"), &format!("{at}.httpVerb"), problems);
        // A rule without an action denies, as in daprd.
        let action = action_field(item.get("action"), &format!("{at}.action"), problems)
            .unwrap_or(Action::Deny);
        if problems.len() > before {
            return None;
        }
        let name = if name.starts_with('/') {
            name
        } else {
            format!("/{name}")
        };
        Some(Operation {
            name: name.to_lowercase(),
            verbs,
            action,
        })
    }
}

/// The trie that finds the rule for a path, by index into `operations`.
fn index(operations: &[Operation]) -> Trie {
    let mut trie = Trie::default();
    for (i, op) in operations.iter().enumerate() {
        trie.insert(&op.name, i);
    }
    trie
}

/// An operation rule's `httpVerb` list, upper-cased: standard HTTP verbs or `*`.
fn verbs(v: Option<&Value>, at: &str, problems: &mut Vec<Problem>) -> Vec<String> {
    let mut verbs = Vec::new();
    for (i, v) in list(v, at, problems).into_iter().flatten().enumerate() {
        let upper = v.as_str().map(str::to_ascii_uppercase);
        match upper {
            Some(u) if u == "*" || VERBS.contains(&u.as_str()) => verbs.push(u),
            _ => problems.push(Problem::new(
                format!("{at}[{i}]"),
                format!("{v} is not an HTTP verb ({}) or *", VERBS.join(", ")),
            )),
        }
    }
    verbs
}

/// The items of a list field; `None` when it is absent or null, or (a problem) not a list.
fn list<'a>(v: Option<&'a Value>, at: &str, problems: &mut Vec<Problem>) -> Option<&'a [Value]> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(items),
        Some(other) => {
            problems.push(Problem::new(at, format!("{other} is not a list")));
            None
        }
    }
}

fn string_field(v: Option<&Value>, at: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(other) => {
            problems.push(Problem::new(at, format!("{other} is not a string")));
            None
        }
    }
}

fn action_field(v: Option<&Value>, at: &str, problems: &mut Vec<Problem>) -> Option<Action> {
    let s = string_field(v, at, problems)?;
    if s.is_empty() {
        None
    } else if s.eq_ignore_ascii_case("allow") {
        Some(Action::Allow)
    } else if s.eq_ignore_ascii_case("deny") {
        Some(Action::Deny)
    } else {
        problems.push(Problem::new(at, format!("{s:?} is neither allow nor deny")));
        None
    }
}
