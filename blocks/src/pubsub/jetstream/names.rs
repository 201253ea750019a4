//! The names NATS accepts: subjects a topic may be, stream and consumer names derived from
//! topics, and header names publish metadata may travel under. Pure functions, no I/O.

use super::PubSubError;
use crate::pubsub::fnv1a;

/// A name the server accepts for streams and consumers: `[A-Za-z0-9_-]`, with a hash of the
/// original appended when anything had to be replaced, so distinct topics stay distinct.
pub(crate) fn nats_name(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == raw {
        return clean;
    }
    format!("{clean}-{:08x}", fnv1a(raw) as u32)
}

/// Refuses topics that are not plain NATS subjects (wildcards, spaces, empty tokens).
pub(super) fn check_topic(topic: &str) -> Result<(), PubSubError> {
    let bad = topic.is_empty()
        || topic.starts_with('.')
        || topic.ends_with('.')
        || topic.contains("..")
        || topic
            .chars()
            .any(|c| c.is_whitespace() || c == '*' || c == '>');
    if bad {
        return Err(PubSubError::BadRequest(format!(
            "{topic:?} is not a NATS subject (no spaces, wildcards or empty tokens)"
        )));
    }
    Ok(())
}

/// Whether a stream's subject pattern (`*` one token, `>` the rest) covers `subject`.
pub(super) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Publish metadata travels as headers; these are the client's and server's own.
pub(super) fn is_nats_header(name: &str) -> bool {
    name.as_bytes()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"nats-"))
}

/// Whether `name` can be a NATS header name (printable ASCII without `:`; the client asserts it).
pub(super) fn header_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_accepts() {
        assert_eq!(nats_name("orders"), "orders");
        assert_eq!(nats_name("app-1_x"), "app-1_x");
        let dotted = nats_name("orders.new");
        assert!(
            dotted.starts_with("orders_new-") && dotted != nats_name("orders_new"),
            "{dotted}"
        );
        assert_ne!(nats_name("a.b"), nats_name("a/b"));
        assert!(
            nats_name("a b*>")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
    }

    #[test]
    fn subject_patterns() {
        assert!(subject_matches("orders", "orders"));
        assert!(!subject_matches("orders", "orders.new"));
        assert!(subject_matches("orders.*", "orders.new"));
        assert!(!subject_matches("orders.*", "orders.new.eu"));
        assert!(subject_matches("orders.>", "orders.new.eu"));
        assert!(!subject_matches("orders.>", "orders"));
        assert!(subject_matches(">", "anything.at.all"));
    }

    #[test]
    fn topics_that_are_not_subjects_are_refused() {
        for bad in ["", "a b", "orders.*", "orders.>", ".a", "a.", "a..b"] {
            assert!(
                matches!(check_topic(bad), Err(PubSubError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(check_topic("orders.eu/new").is_ok());
    }

    #[test]
    fn metadata_that_cannot_be_a_header_is_left_out() {
        assert!(is_nats_header("Nats-Msg-Id") && !is_nats_header("ééé") && !is_nats_header("nat"));
        assert!(header_name_ok("x-trace") && header_name_ok("cloudevent.id"));
        for bad in ["", "caf\u{e9}", "a b", "a\tb", "a:b"] {
            assert!(!header_name_ok(bad), "{bad:?}");
        }
    }
}
