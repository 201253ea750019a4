//! Translating a [`Query`] into SQL over the `value_json` JSONB column, with the evaluator's
//! semantics: comparisons only between values of one kind (numbers numerically, strings
//! byte-wise), numbers equal by value, missing fields never equal, and sorting by kind, then
//! value, then key.

use std::cmp::Ordering;

use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::state::{Filter, Query};

/// A parameter to bind.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// Builds SQL fragments and their parameters; `$1` is reserved for the key prefix.
pub(super) struct SqlQuery {
    params: Vec<Param>,
}

impl SqlQuery {
    pub(super) fn new(prefix: String) -> Self {
        Self {
            params: vec![Box::new(prefix)],
        }
    }

    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    fn field(&mut self, path: &[String]) -> String {
        let p = self.bind(Box::new(path.to_vec()));
        format!("(value_json #> {p}::text[])")
    }

    fn json(&mut self, v: &Value) -> String {
        let p = self.bind(Box::new(v.to_string()));
        format!("({p}::text::jsonb)")
    }

    fn filter(&mut self, f: &Filter) -> String {
        match f {
            Filter::Eq(path, v) => {
                let (x, v) = (self.field(path), self.json(v));
                format!("COALESCE({x} = {v}, false)")
            }
            Filter::Neq(path, v) => {
                let (x, v) = (self.field(path), self.json(v));
                format!("NOT COALESCE({x} = {v}, false)")
            }
            Filter::In(path, vs) if vs.is_empty() => {
                let _ = path;
                "false".into()
            }
            Filter::In(path, vs) => {
                let x = self.field(path);
                let alts: Vec<String> = vs
                    .iter()
                    .map(|v| format!("{x} = {}", self.json(v)))
                    .collect();
                format!("COALESCE(({}), false)", alts.join(" OR "))
            }
            Filter::Cmp(path, dir, or_equal, v) => {
                let op = match (dir, or_equal) {
                    (Ordering::Greater, false) => ">",
                    (Ordering::Greater, true) => ">=",
                    (Ordering::Less, false) => "<",
                    _ => "<=",
                };
                // Bind the field only where it is used: PostgreSQL refuses unused parameters.
                match v {
                    Value::Number(_) => {
                        let x = self.field(path);
                        let v = self.json(v);
                        format!("COALESCE(jsonb_typeof({x}) = 'number' AND {x} {op} {v}, false)")
                    }
                    Value::String(s) => {
                        let x = self.field(path);
                        let v = self.bind(Box::new(s.clone()));
                        format!(
                            "COALESCE(jsonb_typeof({x}) = 'string' AND ({x} #>> '{{}}') COLLATE \"C\" {op} {v}::text COLLATE \"C\", false)"
                        )
                    }
                    _ => "false".into(),
                }
            }
            Filter::And(fs) => self.joined(fs, " AND "),
            Filter::Or(fs) => self.joined(fs, " OR "),
        }
    }

    /// `fs` joined by `op` (` AND ` or ` OR `), in parentheses.
    fn joined(&mut self, fs: &[Filter], op: &str) -> String {
        let parts: Vec<String> = fs.iter().map(|f| self.filter(f)).collect();
        format!("({})", parts.join(op))
    }

    /// The whole statement for `table`, fetching one row more than a page to tell whether
    /// another page follows.
    pub(super) fn statement(mut self, table: &str, q: &Query) -> (String, Vec<Param>) {
        let filter = q
            .filter
            .as_ref()
            .map_or_else(|| "true".to_owned(), |f| self.filter(f));
        let mut order = Vec::new();
        for s in &q.sort {
            let x = self.field(&s.path);
            let dir = if s.desc { "DESC" } else { "ASC" };
            order.push(format!(
                "CASE jsonb_typeof({x}) WHEN 'boolean' THEN 1 WHEN 'number' THEN 2 WHEN 'string' THEN 3 \
                 WHEN 'array' THEN 4 WHEN 'object' THEN 4 ELSE 0 END {dir}"
            ));
            order.push(format!(
                "(CASE WHEN jsonb_typeof({x}) = 'number' THEN ({x})::numeric END) {dir}"
            ));
            order.push(format!("(CASE WHEN jsonb_typeof({x}) = 'string' THEN {x} #>> '{{}}' END) COLLATE \"C\" {dir}"));
            order.push(format!(
                "(CASE WHEN jsonb_typeof({x}) = 'boolean' THEN ({x})::boolean END) {dir}"
            ));
        }
        order.push("key ASC".into());
        let limit = q
            .limit
            .map_or_else(|| "ALL".to_owned(), |l| (l + 1).to_string());
        let sql = format!(
            "SELECT key, value, etag FROM {table}
             WHERE starts_with(key, $1) AND (expires_at IS NULL OR expires_at > now()) AND value_json IS NOT NULL
               AND {filter}
             ORDER BY {} OFFSET {} LIMIT {limit}",
            order.join(", "),
            q.offset
        );
        (sql, self.params)
    }
}
