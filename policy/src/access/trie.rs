//! Operation matching with Dapr's per-segment rules.
//!
//! An operation such as `/orders/*/items` is stored one `/`-segment per level. A request path
//! finds a rule by walking the same levels; at each level the children are tried in declaration
//! order and the first that matches wins:
//! - the identical segment;
//! - `/*`, but only for the last segment of the request;
//! - `/**`, which matches this segment and everything after it;
//! - a glob segment such as `/add*` (`*` is any run of characters, possibly empty).
//!
//! A rule on a plain segment also covers everything below it (prefix semantics): a rule on
//! `/orders` decides `/orders/1/items` unless the walk stops earlier. `/orders/*` also decides
//! `/orders` itself. These are daprd's semantics, quirks included (a wildcard declared before an
//! exact sibling shadows it), so that a policy means the same under both.

/// The rules of one app policy, by operation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trie {
    root: Node,
}

#[derive(Clone, Debug, Default)]
struct Node {
    /// `/` followed by the segment's text (`/orders`, `/*`, `/add*`).
    segment: String,
    /// The index of the rule that ends here.
    rule: Option<usize>,
    children: Vec<Node>,
}

const ONE: &str = "/*";
const ANY: &str = "/**";

impl Trie {
    /// Stores rule `rule` for `operation` (which starts with `/`). When an operation is stored
    /// twice the first rule stays, as in daprd.
    pub(crate) fn insert(&mut self, operation: &str, rule: usize) {
        let mut node = &mut self.root;
        let segments: Vec<&str> = operation.split('/').skip(1).collect();
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.into_iter().enumerate() {
            let segment = format!("/{seg}");
            let at = match node.children.iter().position(|c| c.segment == segment) {
                Some(at) => at,
                None => {
                    node.children.push(Node {
                        segment,
                        rule: None,
                        children: Vec::new(),
                    });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at];
            if i == last && node.rule.is_none() {
                node.rule = Some(rule);
            }
        }
    }

    /// The rule that decides `operation` (a canonical path starting with `/`), if any.
    pub(crate) fn find(&self, operation: &str) -> Option<usize> {
        let mut node = &self.root;
        let segments: Vec<&str> = operation.split('/').skip(1).collect();
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.into_iter().enumerate() {
            let is_end = i == last;
            node = node.child_matching(&format!("/{seg}"), is_end)?;
            if let Some(rule) = node.rule {
                // `/*` in the middle of a request path only descends: it never decides a deeper
                // path on its own.
                if !is_end && node.segment == ONE {
                    continue;
                }
                return Some(rule);
            }
            if is_end {
                return node.child_matching(ONE, true).and_then(|n| n.rule);
            }
        }
        None
    }
}

impl Node {
    fn child_matching(&self, segment: &str, is_end: bool) -> Option<&Node> {
        self.children.iter().find(|c| {
            if c.segment == segment {
                return true;
            }
            match c.segment.as_str() {
                ONE => is_end,
                ANY => true,
                pattern => glob(segment.as_bytes(), pattern.as_bytes()),
            }
        })
    }
}

/// Whether `text` matches `pattern`, where `*` in the pattern stands for any run of bytes.
fn glob(text: &[u8], pattern: &[u8]) -> bool {
    // Iterative matching with backtracking to the last star: linear in practice, no recursion.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(ops: &[&str]) -> Trie {
        let mut t = Trie::default();
        for (i, op) in ops.iter().enumerate() {
            t.insert(op, i);
        }
        t
    }

    #[test]
    fn matching_table() {
        // (stored operations, request path, rule index expected)
        let cases: &[(&[&str], &str, Option<usize>)] = &[
            (&["/api/v1/state"], "/api/v1/state", Some(0)),
            (&["/api/v1/state"], "/api/v1/other", None),
            (&["/api/v1/state"], "/api/v1", None),
            // Prefix semantics: a rule covers what lies below it.
            (&["/api/v1/state"], "/api/v1/state/key/more", Some(0)),
            (&["/api/v1/*"], "/api/v1/foo", Some(0)),
            (&["/api/v1/*"], "/api/v1/foo/bar", None),
            (&["/api/v1/*"], "/api/v1", Some(0)),
            (&["/api/**"], "/api/v1/state", Some(0)),
            (&["/api/**"], "/api/anything/nested/deep", Some(0)),
            // `/**` also covers the level it hangs from.
            (&["/api/**"], "/api", Some(0)),
            (&["/**"], "/", Some(0)),
            (&["/**"], "/x/y", Some(0)),
            // A wildcard declared before an exact sibling shadows it.
            (&["/api/v1/*", "/api/v1/state"], "/api/v1/state", Some(0)),
            (&["/api/v1/state", "/api/v1/*"], "/api/v1/state", Some(0)),
            (&["/api/v1/state", "/api/v1/*"], "/api/v1/other", Some(1)),
            // The first of two identical operations wins.
            (&["/a", "/a"], "/a", Some(0)),
            // Globs within a segment.
            (&["/add*"], "/addition", Some(0)),
            (&["/add*"], "/add", Some(0)),
            (&["/add*"], "/ad", None),
            (&["/*der*"], "/orders", Some(0)),
            (&["/a*c"], "/abbbc", Some(0)),
            (&["/a*c"], "/abbbd", None),
            (&["/orders/*/items"], "/orders/7/items", None),
            (&["/orders/**"], "/orders/7/items", Some(0)),
            // The root operation and trailing slashes are segments of their own.
            (&["/"], "/", Some(0)),
            (&["/orders"], "/orders/", Some(0)),
            (&["/orders/"], "/orders", None),
            (&[], "/anything", None),
        ];
        for (ops, path, want) in cases {
            assert_eq!(
                trie(ops).find(path),
                *want,
                "operations {ops:?}, request {path}"
            );
        }
    }

    #[test]
    fn glob_table() {
        for (text, pattern, want) in [
            ("/abc", "/abc", true),
            ("/abc", "/a*", true),
            ("/abc", "/*c", true),
            ("/abc", "/*b*", true),
            ("/abc", "/*d*", false),
            ("/", "/*", true),
            ("/ab", "/a**b", true),
            ("/aXbXc", "/a*b*c", true),
            ("/aXcXb", "/a*b*c", false),
        ] {
            assert_eq!(
                glob(text.as_bytes(), pattern.as_bytes()),
                want,
                "{text} ~ {pattern}"
            );
        }
    }
}
