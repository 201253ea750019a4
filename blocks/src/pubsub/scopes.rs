//! Topic scoping from component metadata (api.md §4.7): which topics this app may publish to and
//! subscribe to.
//!
//! - `publishingScopes` / `subscriptionScopes`: `app1=t1,t2;app2=t3;app3=` lists topics per
//!   app id; `app3=` leaves that app no topic at all.
//! - `allowedTopics`: `t1,t2` allows only these topics, for every app.
//! - `protectedTopics`: `t1` denies these topics to apps with no list of their own.
//!
//! Spaces are ignored everywhere.

/// The scoping rules as they apply to one app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicScopes {
    allowed: Vec<String>,
    protected: Vec<String>,
    publishing: Vec<String>,
    subscribing: Vec<String>,
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The topics `scopes` lists for `app_id`; empty when the app is not named. `app=` gives `[""]`,
/// which matches no real topic.
fn scoped(scopes: &str, app_id: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in scopes.split(';') {
        let Some((app, topics)) = entry.split_once('=') else {
            continue;
        };
        if app != app_id {
            continue;
        }
        for t in topics.split(',') {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_owned());
            }
        }
    }
    out
}

impl TopicScopes {
    /// Reads the rules for `app_id` from component metadata (keys lower-cased).
    pub fn from_metadata(md: &crate::component::Settings, app_id: &str) -> Self {
        let get = |key: &str| md.get(key).map(|v| v.replace(' ', "")).unwrap_or_default();
        Self {
            allowed: list(&get("allowedtopics")),
            protected: list(&get("protectedtopics")),
            publishing: scoped(&get("publishingscopes"), app_id),
            subscribing: scoped(&get("subscriptionscopes"), app_id),
        }
    }

    /// Whether this app may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.allows(topic, &self.publishing)
    }

    /// Whether this app may subscribe to `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.allows(topic, &self.subscribing)
    }

    /// Whether any topic scope is set (allowed topics, protected topics, or this app's own
    /// subscribe list): then a wildcard filter, which names no topic, cannot be judged.
    pub fn restricts_subscribing(&self) -> bool {
        !(self.allowed.is_empty() && self.protected.is_empty() && self.subscribing.is_empty())
    }

    fn allows(&self, topic: &str, mine: &[String]) -> bool {
        if !self.allowed.is_empty() && !self.allowed.iter().any(|t| t == topic) {
            return false;
        }
        if mine.is_empty() {
            return !self.protected.iter().any(|t| t == topic);
        }
        mine.iter().any(|t| t == topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(pairs: &[(&str, &str)], app: &str) -> TopicScopes {
        TopicScopes::from_metadata(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            app,
        )
    }

    #[test]
    fn no_rules_allow_everything() {
        let s = scopes(&[], "a");
        assert!(s.may_publish("t") && s.may_subscribe("t"));
    }

    #[test]
    fn per_app_lists_limit_only_the_named_apps() {
        let md = [
            ("publishingscopes", "a=t1, t2;b=;"),
            ("subscriptionscopes", "a=t3"),
        ];
        let a = scopes(&md, "a");
        assert!(a.may_publish("t1") && a.may_publish("t2") && !a.may_publish("t3"));
        assert!(a.may_subscribe("t3") && !a.may_subscribe("t1"));
        let b = scopes(&md, "b");
        assert!(
            !b.may_publish("t1") && !b.may_publish("anything"),
            "b= leaves b no topic"
        );
        assert!(b.may_subscribe("t1"), "b has no subscription list");
        let c = scopes(&md, "c");
        assert!(c.may_publish("t3") && c.may_subscribe("t1"));
    }

    #[test]
    fn allowed_topics_bind_everyone_even_apps_with_lists() {
        let md = [("allowedtopics", "t1,t2"), ("publishingscopes", "a=t1,t9")];
        let a = scopes(&md, "a");
        assert!(a.may_publish("t1") && !a.may_publish("t9") && !a.may_publish("t2"));
        let c = scopes(&md, "c");
        assert!(c.may_publish("t2") && !c.may_publish("t3") && !c.may_subscribe("t3"));
    }

    #[test]
    fn protected_topics_need_an_explicit_list() {
        let md = [
            ("protectedtopics", "secret"),
            ("subscriptionscopes", "auditor=secret,public"),
        ];
        assert!(scopes(&md, "auditor").may_subscribe("secret"));
        let other = scopes(&md, "other");
        assert!(!other.may_subscribe("secret") && other.may_subscribe("public"));
        assert!(
            !other.may_publish("secret"),
            "protection covers publishing too"
        );
    }
}
