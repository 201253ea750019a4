//! Dapr's state query language (`POST /v1.0-alpha1/state/{store}/query`): parsing, and
//! evaluation against stored JSON values, as pure functions.
//!
//! `{"filter": {"EQ": {"path": v}} | {"NEQ": …} | {"IN": {"path": [v…]}} | {"GT"|"GTE"|"LT"|"LTE": …}
//!   | {"AND": [f…]} | {"OR": [f…]}, "sort": [{"key": "path", "order": "ASC"|"DESC"}],
//!   "page": {"limit": n, "token": "t"}}`. Paths are dotted field names into the value.
//! Comparisons order numbers numerically and strings lexically; values of different kinds (or
//! missing fields) never match a comparison. The page token is opaque to clients.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde_json::Value;

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// Which values match; `None` matches all.
    pub filter: Option<Filter>,
    /// Sort keys, most significant first.
    pub sort: Vec<Sort>,
    /// At most this many results per page.
    pub limit: Option<usize>,
    /// Where the previous page ended.
    pub offset: usize,
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Field equals value.
    Eq(Vec<String>, Value),
    /// Field differs from value (or is missing).
    Neq(Vec<String>, Value),
    /// Field equals one of the values.
    In(Vec<String>, Vec<Value>),
    /// Field compares so with value.
    Cmp(Vec<String>, Ordering, bool, Value),
    /// All hold.
    And(Vec<Filter>),
    /// One holds.
    Or(Vec<Filter>),
}

/// One sort key.
#[derive(Clone, Debug, PartialEq)]
pub struct Sort {
    /// The field.
    pub path: Vec<String>,
    /// Descending order.
    pub desc: bool,
}

/// A query the parser refuses, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid query: {0}")]
pub struct QueryError(pub String);

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError(msg.into())
}

fn path(p: &str) -> Result<Vec<String>, QueryError> {
    let parts: Vec<String> = p.split('.').map(str::to_owned).collect();
    if p.is_empty() || parts.iter().any(String::is_empty) {
        return Err(bad(format!(
            "field path {p:?} is empty or has an empty segment"
        )));
    }
    Ok(parts)
}

/// The one `{"path": value}` pair of a leaf operator.
fn single(op: &str, v: &Value) -> Result<(Vec<String>, Value), QueryError> {
    match v.as_object() {
        Some(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().expect("one entry");
            Ok((path(k)?, v.clone()))
        }
        _ => Err(bad(format!("{op} takes exactly one {{\"field\": value}}"))),
    }
}

fn parse_filter(v: &Value) -> Result<Filter, QueryError> {
    let m = v
        .as_object()
        .filter(|m| m.len() == 1)
        .ok_or_else(|| bad("a filter is an object with one operator"))?;
    let (op, arg) = m.iter().next().expect("one entry");
    let list = |arg: &Value| -> Result<Vec<Filter>, QueryError> {
        let items = arg
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad(format!("{op} takes a non-empty array of filters")))?;
        items.iter().map(parse_filter).collect()
    };
    Ok(match op.as_str() {
        "EQ" => single(op, arg).map(|(p, v)| Filter::Eq(p, v))?,
        "NEQ" => single(op, arg).map(|(p, v)| Filter::Neq(p, v))?,
        "IN" => {
            let (p, v) = single(op, arg)?;
            let Value::Array(values) = v else {
                return Err(bad("IN takes {\"field\": [values]}"));
            };
            Filter::In(p, values)
        }
        "GT" => single(op, arg).map(|(p, v)| Filter::Cmp(p, Ordering::Greater, false, v))?,
        "GTE" => single(op, arg).map(|(p, v)| Filter::Cmp(p, Ordering::Greater, true, v))?,
        "LT" => single(op, arg).map(|(p, v)| Filter::Cmp(p, Ordering::Less, false, v))?,
        "LTE" => single(op, arg).map(|(p, v)| Filter::Cmp(p, Ordering::Less, true, v))?,
        "AND" => Filter::And(list(arg)?),
        "OR" => Filter::Or(list(arg)?),
        other => return Err(bad(format!("unknown operator {other:?}"))),
    })
}

impl Query {
    /// Parses a query document.
    pub fn parse(v: &Value) -> Result<Self, QueryError> {
        let m = v
            .as_object()
            .ok_or_else(|| bad("the query must be a JSON object"))?;
        let filter = match m.get("filter") {
            None | Some(Value::Null) => None,
            Some(f) if f.as_object().is_some_and(|o| o.is_empty()) => None,
            Some(f) => Some(parse_filter(f)?),
        };
        let sort = match m.get("sort") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| {
                    let key = s
                        .get("key")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("a sort entry needs \"key\""))?;
                    let desc = match s.get("order").and_then(Value::as_str).unwrap_or("ASC") {
                        o if o.eq_ignore_ascii_case("ASC") => false,
                        o if o.eq_ignore_ascii_case("DESC") => true,
                        o => return Err(bad(format!("sort order {o:?} is not ASC or DESC"))),
                    };
                    Ok(Sort {
                        path: path(key)?,
                        desc,
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("\"sort\" must be an array")),
        };
        let page = m.get("page").and_then(Value::as_object);
        let limit = match page.and_then(|p| p.get("limit")) {
            None | Some(Value::Null) => None,
            Some(l) => match l.as_u64() {
                Some(0) => None,
                Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                None => return Err(bad("page.limit must be a non-negative integer")),
            },
        };
        let offset = match page
            .and_then(|p| p.get("token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            None => 0,
            Some(t) => t
                .parse()
                .map_err(|_| bad(format!("page token {t:?} is not one this store issued")))?,
        };
        Ok(Self {
            filter,
            sort,
            limit,
            offset,
        })
    }

    /// Filters, sorts and pages `(key, value)` candidates; returns the page and the token of the
    /// next one, if any.
    pub fn run<T>(&self, rows: Vec<(T, Value)>) -> (Vec<(T, Value)>, Option<String>) {
        let mut scan = Scan::new(self, usize::MAX);
        for (key, value) in rows {
            let keep = (key, value.clone());
            if scan.offer(&value, keep, 0) == Offer::Enough {
                break;
            }
        }
        scan.finish()
    }

    /// How many matches the page needs to have seen: its end.
    fn end(&self) -> Option<usize> {
        self.limit.map(|l| self.offset.saturating_add(l))
    }
}

/// What a [`Scan`] makes of one more row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Keep offering rows.
    More,
    /// The page and whether another follows are known: stop scanning.
    Enough,
    /// The rows the page would hold take more than the scan's byte limit.
    TooLarge,
}

/// A query evaluated over rows offered one at a time, in the store's key order, keeping only the
/// rows that can still be on the page: memory follows the page, not the store. With a sort and a
/// page end, the best rows so far sit in a heap whose top is the worst of them, so each row costs
/// a logarithm of the page, never a shift of it.
pub(crate) struct Scan<'q, T> {
    query: &'q Query,
    /// Unsorted queries: the rows inside the page window, in order.
    window: Vec<T>,
    /// Sorted queries with a page end: the best `end` rows so far.
    best: BinaryHeap<Ranked<'q, T>>,
    /// Sorted queries without one: every match, sorted at the end.
    all: Vec<Ranked<'q, T>>,
    kept_bytes: usize,
    max_bytes: usize,
    /// Matches seen so far.
    matched: usize,
}

/// A matching row with its sort keys; ordered by them, then by arrival (a stable order).
struct Ranked<'q, T> {
    sort: &'q [Sort],
    keys: Vec<Option<Value>>,
    seq: usize,
    size: usize,
    row: T,
}

impl<T> Ord for Ranked<'_, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        for (s, (x, y)) in self.sort.iter().zip(self.keys.iter().zip(&other.keys)) {
            let o = order(x.as_ref(), y.as_ref());
            let o = if s.desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        self.seq.cmp(&other.seq)
    }
}

impl<T> PartialOrd for Ranked<'_, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> PartialEq for Ranked<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T> Eq for Ranked<'_, T> {}

impl<'q, T> Scan<'q, T> {
    /// A scan for `query` whose kept rows may take at most `max_bytes` (as sized by the caller).
    pub(crate) fn new(query: &'q Query, max_bytes: usize) -> Self {
        Self {
            query,
            window: Vec::new(),
            best: BinaryHeap::new(),
            all: Vec::new(),
            kept_bytes: 0,
            max_bytes,
            matched: 0,
        }
    }

    /// Offers a row whose stored value parsed as `value`; `size` is what keeping it costs.
    pub(crate) fn offer(&mut self, value: &Value, row: T, size: usize) -> Offer {
        if !self.query.filter.as_ref().is_none_or(|f| f.matches(value)) {
            return Offer::More;
        }
        self.matched += 1;
        let end = self.query.end();
        if self.query.sort.is_empty() {
            // Rows come in page order: keep the ones inside the page window.
            let index = self.matched - 1;
            if index >= self.query.offset && end.is_none_or(|e| index < e) {
                self.window.push(row);
                self.kept_bytes = self.kept_bytes.saturating_add(size);
            }
            // One match past the page says that another page follows.
            return match end {
                Some(e) if self.matched > e => Offer::Enough,
                _ if self.kept_bytes > self.max_bytes => Offer::TooLarge,
                _ => Offer::More,
            };
        }
        let keys = self
            .query
            .sort
            .iter()
            .map(|s| lookup(value, &s.path).cloned())
            .collect();
        let ranked = Ranked {
            sort: &self.query.sort,
            keys,
            seq: self.matched,
            size,
            row,
        };
        match end {
            None => {
                self.kept_bytes = self.kept_bytes.saturating_add(size);
                self.all.push(ranked);
            }
            Some(0) => {}
            Some(e) if self.best.len() < e => {
                self.kept_bytes = self.kept_bytes.saturating_add(size);
                self.best.push(ranked);
            }
            Some(_) => {
                // Full: the new row replaces the worst kept one if it ranks before it.
                if self.best.peek().is_some_and(|worst| ranked < *worst) {
                    self.kept_bytes = self.kept_bytes.saturating_add(size);
                    if let Some(out) = self.best.pop() {
                        self.kept_bytes -= out.size;
                    }
                    self.best.push(ranked);
                }
            }
        }
        if self.kept_bytes > self.max_bytes {
            Offer::TooLarge
        } else {
            Offer::More
        }
    }

    /// The page, and the token of the next one if the rows offered hold more matches.
    pub(crate) fn finish(self) -> (Vec<T>, Option<String>) {
        let page: Vec<T> = if self.query.sort.is_empty() {
            self.window
        } else {
            let mut ranked = if self.query.end().is_some() {
                self.best.into_sorted_vec()
            } else {
                self.all
            };
            ranked.sort_unstable(); // already in order from the heap; sorts the unbounded list
            ranked
                .into_iter()
                .skip(self.query.offset)
                .map(|r| r.row)
                .collect()
        };
        let end = self.query.offset + page.len();
        let token = (self.query.limit.is_some() && end < self.matched).then(|| end.to_string());
        (page, token)
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| v.get(seg))
}

/// Orders two values of the same kind; different kinds order by kind (missing first).
fn order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(_) => 4,
        }
    }
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(f64::NAN)
            .partial_cmp(&y.as_f64().unwrap_or(f64::NAN))
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Equality as JSON means it, with numbers compared by value (1 == 1.0).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl Filter {
    /// Whether `v` matches.
    pub fn matches(&self, v: &Value) -> bool {
        match self {
            Filter::Eq(p, want) => lookup(v, p).is_some_and(|x| equal(x, want)),
            Filter::Neq(p, want) => !lookup(v, p).is_some_and(|x| equal(x, want)),
            Filter::In(p, wants) => lookup(v, p).is_some_and(|x| wants.iter().any(|w| equal(x, w))),
            Filter::Cmp(p, dir, or_equal, want) => match lookup(v, p) {
                Some(x @ Value::Number(_)) if want.is_number() => {
                    cmp_ok(order(Some(x), Some(want)), *dir, *or_equal)
                }
                Some(x @ Value::String(_)) if want.is_string() => {
                    cmp_ok(order(Some(x), Some(want)), *dir, *or_equal)
                }
                _ => false,
            },
            Filter::And(fs) => fs.iter().all(|f| f.matches(v)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(v)),
        }
    }
}

fn cmp_ok(o: Ordering, dir: Ordering, or_equal: bool) -> bool {
    o == dir || (or_equal && o == Ordering::Equal)
}

#[cfg(test)]
mod tests;
