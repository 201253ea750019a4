//! One canonical request form, computed once at the edge (security rule 1).
//!
//! Two forms exist because the Dapr API needs both:
//! - [`route_path`] is what the API router matches on. It removes dot segments, turns `\` into
//!   `/` and merges repeated slashes, but leaves percent-escapes alone: a state key containing
//!   `/` is sent as `%2F` and must stay one path segment.
//! - [`canonical_path`] is the form of an invocation's method path: what access policy checks,
//!   what metrics label, and exactly what the target app receives. It additionally decodes
//!   `%2F`, `%5C` and escaped unreserved characters (letters, digits, `-._~`) once, then removes
//!   dot segments, so `admin%2F..%2Fpublic` is `/public` for everyone. Other escapes stay
//!   escaped, with upper-case hex. The result is a fixed point: normalising it again changes
//!   nothing.
//!
//! Both refuse NUL and other control characters, raw or escaped, and a `#` (the HTTP parser
//! already cuts a raw fragment off the request target; an escaped one stays escaped and is data).
//! [`method_ok`] refuses methods that are not upper-case tokens.

use std::fmt;

/// Why a request is refused at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A NUL or other control character, raw or percent-escaped.
    ControlChar,
    /// A `#` in the path.
    Fragment,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The method is not an upper-case token.
    BadMethod,
    /// The path does not start with `/`.
    NotAbsolute,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ControlChar => "control character in the request path",
            Self::Fragment => "'#' in the request path",
            Self::BadEscape => "malformed percent-escape in the request path",
            Self::BadMethod => "the method must be an upper-case token",
            Self::NotAbsolute => "the request path must start with '/'",
        })
    }
}

impl std::error::Error for Rejection {}

/// Whether `m` is an upper-case HTTP token (e.g. `GET`, `MKCOL`), as methods must be here.
pub fn method_ok(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// The form the API router matches on (see the module docs).
pub fn route_path(raw: &str) -> Result<String, Rejection> {
    let mut s = String::with_capacity(raw.len());
    check_escapes(raw)?;
    for c in raw.chars() {
        s.push(if c == '\\' { '/' } else { c });
    }
    finish(&s)
}

/// The canonical form of an invocation's method path (see the module docs). The result always
/// starts with `/`.
pub fn canonical_path(raw: &str) -> Result<String, Rejection> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len() + 1);
    out.push('/');
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let v = hex_pair(bytes.get(i + 1..i + 3)).ok_or(Rejection::BadEscape)?;
            if v < 0x20 || v == 0x7f {
                return Err(Rejection::ControlChar);
            }
            match v {
                b'/' | b'\\' => out.push('/'),
                _ if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => out.push(v as char),
                _ => {
                    out.push('%');
                    out.push_str(&format!("{v:02X}"));
                }
            }
            i += 3;
            continue;
        }
        match b {
            b'\\' => out.push('/'),
            b'#' => return Err(Rejection::Fragment),
            _ if b < 0x20 || b == 0x7f => return Err(Rejection::ControlChar),
            _ => {
                // Copy the whole UTF-8 sequence starting here.
                let len = utf8_len(b);
                out.push_str(&raw[i..i + len]);
                i += len;
                continue;
            }
        }
        i += 1;
    }
    finish(&out)
}

/// Lower-cases a Host value and strips its port (`Example.COM:80` → `example.com`,
/// `[::1]:3500` → `[::1]`).
pub fn host(raw: &str) -> String {
    let h = raw.trim();
    let without_port = if let Some(rest) = h.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &h[..end + 2],
            None => h,
        }
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    without_port.to_ascii_lowercase()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn hex_pair(b: Option<&[u8]>) -> Option<u8> {
    let b = b?;
    let h = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(h(b[0])? << 4 | h(b[1])?)
}

fn check_escapes(raw: &str) -> Result<(), Rejection> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let v = hex_pair(bytes.get(i + 1..i + 3)).ok_or(Rejection::BadEscape)?;
                if v < 0x20 || v == 0x7f {
                    return Err(Rejection::ControlChar);
                }
                i += 3;
                continue;
            }
            b'#' => return Err(Rejection::Fragment),
            b if b < 0x20 || b == 0x7f => return Err(Rejection::ControlChar),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Merges slashes and removes dot segments (RFC 3986 §5.2.4) of an already decoded path,
/// keeping a trailing slash.
fn finish(path: &str) -> Result<String, Rejection> {
    if !path.starts_with('/') {
        return Err(Rejection::NotAbsolute);
    }
    // Almost every path has no empty segment and no segment starting with a dot, and is then
    // already in its final form: two substring searches instead of splitting it into segments.
    if !path.contains("//") && !path.contains("/.") {
        return Ok(path.to_owned());
    }
    Ok(merge_segments(path))
}

/// [`finish`]'s work on an absolute path, segment by segment.
fn merge_segments(path: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "" => trailing = i == last,
            "." => trailing = i == last,
            ".." => {
                segs.pop();
                trailing = i == last;
            }
            s => {
                segs.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segs.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests;
