//! Reading the Prometheus text exposition back. The dashboard's history and `outrider status`
//! both turn a sidecar's `/metrics` into rates and percentiles, so they show exactly the numbers
//! a Prometheus server scraping that sidecar would compute. The text may come from another
//! process (another host's sidecar, another version): a line this reader does not understand is
//! skipped, never a panic.

use std::borrow::Cow;

/// One sample line: `name{labels} value`.
#[derive(Debug, PartialEq)]
pub(crate) struct Sample<'a> {
    pub(crate) name: &'a str,
    pub(crate) labels: Vec<(&'a str, Cow<'a, str>)>,
    pub(crate) value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, if the sample has it.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Calls `each` with every sample of `text` whose metric name `wanted` accepts. Labels are only
/// read for those, so filtering by name first keeps a large exposition cheap.
pub(crate) fn samples<'a>(
    text: &'a str,
    wanted: impl Fn(&str) -> bool,
    mut each: impl FnMut(Sample<'a>),
) {
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        let name = &line[..end];
        if !wanted(name) {
            continue;
        }
        if let Some(s) = sample(name, &line[end..]) {
            each(s);
        }
    }
}

/// The labels and value after the metric name; `None` when malformed.
fn sample<'a>(name: &'a str, mut rest: &'a str) -> Option<Sample<'a>> {
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// `key="value",...}` → the labels and what follows the closing brace.
fn label_set(mut s: &str) -> Option<(Labels<'_>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        let (value, after) = quoted(s[eq + 1..].trim_start().strip_prefix('"')?)?;
        labels.push((key, value));
        s = after;
    }
}

/// A label value after its opening quote, unescaped (`\\`, `\"`, `\n`), and what follows its
/// closing quote.
fn quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut any_escape = false;
    let mut skip_next = false;
    for (i, c) in s.char_indices() {
        if skip_next {
            skip_next = false;
            continue;
        }
        match c {
            '\\' => {
                any_escape = true;
                skip_next = true;
            }
            '"' => {
                let raw = &s[..i];
                let value = if any_escape {
                    Cow::Owned(unescape(raw))
                } else {
                    Cow::Borrowed(raw)
                };
                return Some((value, &s[i + 1..]));
            }
            _ => {}
        }
    }
    None
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<Sample<'_>> {
        let mut out = Vec::new();
        samples(text, |_| true, |s| out.push(s));
        out
    }

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP x Some help.\n# TYPE x counter\n\
                    x{app_id=\"a\",path=\"/v1.0/state/{storeName}\"} 12\n\
                    y 3.5 1700000000000\n\
                    z_bucket{le=\"+Inf\"} 7\n";
        let got = all(text);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name, "x");
        assert_eq!(got[0].label("app_id"), Some("a"));
        assert_eq!(got[0].label("path"), Some("/v1.0/state/{storeName}"));
        assert_eq!(got[0].value, 12.0);
        assert_eq!((got[1].name, got[1].value), ("y", 3.5));
        assert_eq!(got[2].label("le"), Some("+Inf"));
    }

    #[test]
    fn unescapes_label_values() {
        let got = all(r#"m{a="x\"y",b="back\\slash",c="line\nbreak",d="tail\\"} 1"#);
        assert_eq!(got[0].label("a"), Some("x\"y"));
        assert_eq!(got[0].label("b"), Some("back\\slash"));
        assert_eq!(got[0].label("c"), Some("line\nbreak"));
        assert_eq!(got[0].label("d"), Some("tail\\"));
    }

    #[test]
    fn skips_what_it_cannot_read_and_what_is_not_wanted() {
        let text = "bad{a=\"unterminated 1\nbad2{a=x} 1\nnovalue{a=\"1\"}\nok 1\nother 2\n";
        let mut got = Vec::new();
        samples(text, |n| n != "other", |s| got.push(s.name));
        assert_eq!(got, ["ok"]);
    }
}
