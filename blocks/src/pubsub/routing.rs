//! Routing rules: which app route gets an event, decided by CEL expressions over the CloudEvent.
//!
//! Rules are tried in order; the first whose `match` is true names the route. An empty `match`
//! always matches, and the subscription's default route is a last rule of that kind. A rule
//! that does not compile is a configuration error; one that fails at run time, or yields
//! something other than a boolean, makes the delivery fail (retried, then dead-lettered), since
//! routing the event anywhere else could hand it to the wrong handler.

use serde_json::Value;

/// One rule as written: a CEL condition (empty: always) and the route it selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// The CEL expression over `event`; empty matches everything.
    pub condition: String,
    /// The app route, with a leading `/`.
    pub path: String,
}

/// Compiled rules.
pub struct Router {
    rules: Vec<(Option<cel::Program>, String)>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|(_, path)| path))
            .finish()
    }
}

/// Why a rule did not compile: its position and the parser's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule {index}: {expression}: {message}")]
pub struct RuleError {
    /// The rule's position, from 0.
    pub index: usize,
    /// The expression.
    pub expression: String,
    /// What the parser said.
    pub message: String,
}

/// Reads `[{match, path}, …]` as written in a subscription, checking that each rule has a path
/// and that every condition compiles.
pub fn parse_rules(rules: &[Value]) -> Result<Vec<RouteRule>, RuleError> {
    let mut out = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let problem = |message: &str| RuleError {
            index,
            expression: rule.to_string(),
            message: message.to_owned(),
        };
        let Some(obj) = rule.as_object() else {
            return Err(problem("a rule is an object {match, path}"));
        };
        let condition = match obj.get("match") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(c)) => c.clone(),
            Some(_) => return Err(problem("match must be a string")),
        };
        let path = obj
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        if path.is_empty() {
            return Err(problem("path is required"));
        }
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        out.push(RouteRule { condition, path });
    }
    Router::compile(&out)?;
    Ok(out)
}

impl Router {
    /// Compiles every rule, in order.
    pub fn compile(rules: &[RouteRule]) -> Result<Self, RuleError> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let condition = r.condition.trim();
                if condition.is_empty() {
                    return Ok((None, r.path.clone()));
                }
                // The parser is generated code; a panic on odd input must not take the sidecar down.
                let parsed = std::panic::catch_unwind(|| cel::Program::compile(condition));
                let program = match parsed {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        let message = format!("not a valid CEL expression: {e}");
                        return Err(RuleError {
                            index,
                            expression: r.condition.clone(),
                            message,
                        });
                    }
                    Err(_) => {
                        let message =
                            "not a valid CEL expression (the parser failed on it)".to_owned();
                        return Err(RuleError {
                            index,
                            expression: r.condition.clone(),
                            message,
                        });
                    }
                };
                Ok((Some(program), r.path.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules: compiled })
    }

    /// Whether any rule has a condition (otherwise the first route always wins).
    pub fn has_conditions(&self) -> bool {
        self.rules.iter().any(|(p, _)| p.is_some())
    }

    /// The route for `event`: `Ok(None)` when no rule matches, `Err` when a condition could not
    /// be evaluated to a boolean.
    pub fn route(&self, event: &Value) -> Result<Option<&str>, String> {
        let mut cx = None;
        for (program, path) in &self.rules {
            let Some(program) = program else {
                return Ok(Some(path));
            };
            let cx = match &mut cx {
                Some(cx) => cx,
                None => {
                    let mut c = cel::Context::default();
                    c.add_variable("event", event.clone())
                        .map_err(|e| format!("the event is not usable in CEL: {e}"))?;
                    cx.insert(c)
                }
            };
            match program.execute(cx) {
                Ok(cel::Value::Bool(true)) => return Ok(Some(path)),
                Ok(cel::Value::Bool(false)) => {}
                Ok(other) => {
                    return Err(format!(
                        "a routing rule for {path} gave {other:?}, not a boolean"
                    ));
                }
                Err(e) => return Err(format!("a routing rule for {path} failed: {e}")),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(list: &[(&str, &str)]) -> Router {
        let rules: Vec<RouteRule> = list
            .iter()
            .map(|(c, p)| RouteRule {
                condition: (*c).into(),
                path: (*p).into(),
            })
            .collect();
        Router::compile(&rules).unwrap()
    }

    #[test]
    fn first_true_rule_wins_in_order() {
        let r = rules(&[
            (
                r#"event.type == "widget" && event.data.price > 100"#,
                "/expensive",
            ),
            (r#"event.type == "widget""#, "/widgets"),
            ("", "/default"),
        ]);
        let event =
            |t: &str, price: i64| json!({"type": t, "data": {"price": price}, "topic": "orders"});
        assert_eq!(r.route(&event("widget", 500)).unwrap(), Some("/expensive"));
        assert_eq!(r.route(&event("widget", 5)).unwrap(), Some("/widgets"));
        assert_eq!(r.route(&event("gadget", 500)).unwrap(), Some("/default"));
        assert!(r.has_conditions());
    }

    #[test]
    fn no_match_without_default_is_none() {
        let r = rules(&[(r#"event.type == "a""#, "/a")]);
        assert_eq!(r.route(&json!({"type": "b"})).unwrap(), None);
    }

    #[test]
    fn non_boolean_and_failing_conditions_are_errors() {
        let r = rules(&[("event.type", "/typed"), ("", "/default")]);
        assert!(
            r.route(&json!({"type": "order"}))
                .unwrap_err()
                .contains("not a boolean")
        );
        // A missing field cannot be compared: an error, never a silent fall-through to /default.
        let r = rules(&[("event.data.missing.deeper == 1", "/x"), ("", "/default")]);
        assert!(r.route(&json!({"data": {}})).is_err());
    }

    #[test]
    fn bad_expressions_are_refused_with_their_position() {
        let bad = [
            RouteRule {
                condition: "".into(),
                path: "/a".into(),
            },
            RouteRule {
                condition: "event.type ==".into(),
                path: "/b".into(),
            },
        ];
        let e = Router::compile(&bad).unwrap_err();
        assert_eq!((e.index, e.expression.as_str()), (1, "event.type =="));
        for nonsense in ["((((", "event.type == 'x", "}{", "\u{0}"] {
            let r = [RouteRule {
                condition: nonsense.into(),
                path: "/x".into(),
            }];
            assert!(Router::compile(&r).is_err(), "{nonsense:?} compiled");
        }
    }

    #[test]
    fn rules_as_written() {
        let rules = parse_rules(&[
            json!({"match": "event.type == 'a'", "path": "a"}),
            json!({"path": "/b"}),
        ])
        .unwrap();
        assert_eq!(
            rules,
            [
                RouteRule {
                    condition: "event.type == 'a'".into(),
                    path: "/a".into()
                },
                RouteRule {
                    condition: String::new(),
                    path: "/b".into()
                },
            ]
        );
        for (bad, says) in [
            (json!("event.type == 'a'"), "object"),
            (json!({"match": "true"}), "path is required"),
            (json!({"match": 1, "path": "/x"}), "match must be a string"),
            (
                json!({"match": "event.type ==", "path": "/x"}),
                "not a valid CEL",
            ),
        ] {
            let e = parse_rules(&[json!({"path": "/ok"}), bad.clone()]).unwrap_err();
            assert!(e.index == 1 && e.message.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn only_empty_conditions_need_no_evaluation() {
        let r = rules(&[("", "/only")]);
        assert!(!r.has_conditions());
        assert_eq!(
            r.route(&json!("not even an object")).unwrap(),
            Some("/only")
        );
    }
}
