//! [`Fault`]: a component failing — the message callers see, the error that caused it, and
//! whether trying again may help.
//!
//! The building blocks' error enums carry a `Fault` in their "the component failed" variants
//! (`StateError::Store`, `PubSubError::Broker`), so the proxy's retry, breaker and metrics read
//! [`Fault::is_retryable`] instead of matching messages, and logs can walk to the client
//! library's own error. It knows nothing of HTTP status codes or retry policies.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// What a fault can be caused by: any error (client libraries' boxed errors too).
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// How a fault keeps its cause: shared, so errors stay cheap to clone.
type Source = Arc<dyn Error + Send + Sync + 'static>;

/// A component's failure. Displays as its message alone (which normally quotes the cause);
/// [`Error::source`] is the cause itself.
#[derive(Clone, Debug)]
pub struct Fault {
    message: String,
    source: Option<Source>,
    retryable: bool,
}

impl Fault {
    /// A failure worth retrying: the component failed or could not be reached, and may answer
    /// later.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
            retryable: true,
        }
    }

    /// A failure worth retrying, caused by `source` (whose text `message` normally quotes).
    pub fn caused_by(message: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self {
            source: Some(Arc::from(source.into())),
            ..Self::new(message)
        }
    }

    /// The same failure, marked as one a retry cannot fix.
    #[must_use]
    pub fn permanent(self) -> Self {
        Self {
            retryable: false,
            ..self
        }
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message, as displayed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same failure (cause and retryability kept) with its message rewritten.
    #[must_use]
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        Self {
            message: f(self.message),
            ..self
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Fault {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Faults are equal when they say the same and agree on retrying; causes are not compared.
impl PartialEq for Fault {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.retryable == other.retryable
    }
}

impl Eq for Fault {}

impl From<String> for Fault {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Fault {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_its_message_and_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let f = Fault::caused_by("redis: refused", io);
        assert_eq!(f.to_string(), "redis: refused");
        let cause = f.source().expect("a cause");
        let io = cause
            .downcast_ref::<std::io::Error>()
            .expect("the io error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(f.is_retryable() && !f.clone().permanent().is_retryable());
        assert_eq!(f, Fault::new("redis: refused"));
        assert_ne!(Fault::new("x"), Fault::new("x").permanent());
        let renamed = f.map_message(|m| format!("{m} (again)"));
        assert_eq!(renamed.message(), "redis: refused (again)");
        assert!(renamed.source().is_some());
    }
}
