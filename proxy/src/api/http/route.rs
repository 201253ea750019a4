//! The route table of the HTTP API: each building-block route's template (also its metrics
//! label), the verbs it answers, the `spec.api` endpoint it counts as, and matching a path to a
//! route with its parameters unescaped. Invocation is not in the table: it is what unmatched
//! requests fall through to.

use http::Method;
use outrider_filters::RouteLabel;
use outrider_policy::api::Endpoint;

use super::percent_decode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Publish,
    PublishBulk,
    PublishBulkV1,
    PublishNoTopic,
    StateSave,
    StateKey,
    StateBulk,
    StateTransaction,
    StateQuery,
    Secret,
    SecretBulk,
    Lock,
    Unlock,
    Binding,
    ConfigGet,
    ConfigGetAlpha1,
    ConfigSubscribe,
    ConfigSubscribeAlpha1,
    ConfigUnsubscribe,
    ConfigUnsubscribeAlpha1,
    Healthz,
    HealthzOutbound,
    Metadata,
    MetadataKey,
    Shutdown,
    ActorMethod,
    ActorState,
    ActorStateKey,
    ActorTimer,
    ActorReminder,
    Job,
    JobAlpha1,
}

/// Every route of the table.
const ALL: [Route; 32] = [
    Route::Publish,
    Route::PublishBulk,
    Route::PublishBulkV1,
    Route::PublishNoTopic,
    Route::StateSave,
    Route::StateKey,
    Route::StateBulk,
    Route::StateTransaction,
    Route::StateQuery,
    Route::Secret,
    Route::SecretBulk,
    Route::Lock,
    Route::Unlock,
    Route::Binding,
    Route::ConfigGet,
    Route::ConfigGetAlpha1,
    Route::ConfigSubscribe,
    Route::ConfigSubscribeAlpha1,
    Route::ConfigUnsubscribe,
    Route::ConfigUnsubscribeAlpha1,
    Route::Healthz,
    Route::HealthzOutbound,
    Route::Metadata,
    Route::MetadataKey,
    Route::Shutdown,
    Route::ActorMethod,
    Route::ActorState,
    Route::ActorStateKey,
    Route::ActorTimer,
    Route::ActorReminder,
    Route::Job,
    Route::JobAlpha1,
];

/// Dapr API routes this sidecar does not serve yet, by path prefix, with the API's name: they
/// answer 501 rather than falling through to invocation (where they would look like a call to
/// an app named `v1.0`).
const UNSERVED: [(&str, &str); 6] = [
    ("/v1.0/workflows/", "workflow"),
    ("/v1.0-beta1/workflows/", "workflow"),
    ("/v1.0-alpha1/workflows/", "workflow"),
    ("/v1.0-alpha1/crypto/", "cryptography"),
    ("/v1.0-alpha1/conversation/", "conversation"),
    ("/v1.0-alpha2/conversation/", "conversation"),
];

/// The Dapr API `path` belongs to, if it is one this sidecar does not serve yet; with the
/// route prefix, which labels its metrics.
pub(super) fn unserved(path: &str) -> Option<(&'static str, &'static str)> {
    UNSERVED
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(prefix, api)| (*prefix, *api))
}

/// Invocation as `spec.api` rules see it.
pub(super) const INVOKE_ENDPOINT: Endpoint = Endpoint {
    group: "invoke",
    version: "v1",
    route: "v1.0/invoke/{id}/method/{method}",
};

/// The route label of invocations.
pub(super) const INVOKE_LABEL: RouteLabel = RouteLabel("/v1.0/invoke/{id}/method/{method}");

/// Route parameters, unescaped.
#[derive(Debug, Default)]
pub(super) struct Params {
    /// The component named in the path: a store, a pub/sub or a binding; or the actor type.
    pub(super) store: String,
    /// The state key, metadata key, topic or configuration subscription id; or the actor's
    /// method, state key, timer or reminder.
    pub(super) key: String,
    /// The actor id.
    pub(super) id: String,
}

impl Route {
    pub(super) fn label(self) -> &'static str {
        match self {
            Route::Publish => "/v1.0/publish/{pubsub}/{*topic}",
            Route::PublishBulk => "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            Route::PublishBulkV1 => "/v1.0/publish/bulk/{pubsub}/{*topic}",
            Route::PublishNoTopic => "/v1.0/publish/{pubsub}",
            Route::StateSave => "/v1.0/state/{store}",
            Route::StateKey => "/v1.0/state/{store}/{key}",
            Route::StateBulk => "/v1.0/state/{store}/bulk",
            Route::StateTransaction => "/v1.0/state/{store}/transaction",
            Route::StateQuery => "/v1.0-alpha1/state/{store}/query",
            Route::Secret => "/v1.0/secrets/{store}/{key}",
            Route::SecretBulk => "/v1.0/secrets/{store}/bulk",
            Route::Lock => "/v1.0-alpha1/lock/{store}",
            Route::Unlock => "/v1.0-alpha1/unlock/{store}",
            Route::Binding => "/v1.0/bindings/{store}",
            Route::ConfigGet => "/v1.0/configuration/{store}",
            Route::ConfigGetAlpha1 => "/v1.0-alpha1/configuration/{store}",
            Route::ConfigSubscribe => "/v1.0/configuration/{store}/subscribe",
            Route::ConfigSubscribeAlpha1 => "/v1.0-alpha1/configuration/{store}/subscribe",
            Route::ConfigUnsubscribe => "/v1.0/configuration/{store}/{key}/unsubscribe",
            Route::ConfigUnsubscribeAlpha1 => {
                "/v1.0-alpha1/configuration/{store}/{key}/unsubscribe"
            }
            Route::Healthz => "/v1.0/healthz",
            Route::HealthzOutbound => "/v1.0/healthz/outbound",
            Route::Metadata => "/v1.0/metadata",
            Route::MetadataKey => "/v1.0/metadata/{key}",
            Route::Shutdown => "/v1.0/shutdown",
            Route::ActorMethod => "/v1.0/actors/{type}/{id}/method/{*method}",
            Route::ActorState => "/v1.0/actors/{type}/{id}/state",
            Route::ActorStateKey => "/v1.0/actors/{type}/{id}/state/{key}",
            Route::ActorTimer => "/v1.0/actors/{type}/{id}/timers/{name}",
            Route::ActorReminder => "/v1.0/actors/{type}/{id}/reminders/{name}",
            Route::Job => "/v1.0/jobs/{name}",
            Route::JobAlpha1 => "/v1.0-alpha1/jobs/{name}",
        }
    }

    /// The route as `spec.api` rules see it.
    pub(super) fn endpoint(self) -> Endpoint {
        let (group, version) = match self {
            Route::Publish | Route::PublishBulkV1 | Route::PublishNoTopic => ("publish", "v1"),
            Route::PublishBulk => ("publish", "v1alpha1"),
            Route::StateSave | Route::StateKey | Route::StateBulk | Route::StateTransaction => {
                ("state", "v1")
            }
            Route::StateQuery => ("state", "v1alpha1"),
            Route::Secret | Route::SecretBulk => ("secrets", "v1"),
            Route::Lock => ("lock", "v1alpha1"),
            Route::Unlock => ("unlock", "v1alpha1"),
            Route::Binding => ("bindings", "v1"),
            Route::ConfigGet | Route::ConfigSubscribe | Route::ConfigUnsubscribe => {
                ("configuration", "v1")
            }
            Route::ConfigGetAlpha1
            | Route::ConfigSubscribeAlpha1
            | Route::ConfigUnsubscribeAlpha1 => ("configuration", "v1alpha1"),
            Route::Healthz | Route::HealthzOutbound => ("healthz", "v1"),
            Route::Metadata | Route::MetadataKey => ("metadata", "v1"),
            Route::Shutdown => ("shutdown", "v1"),
            Route::ActorMethod
            | Route::ActorState
            | Route::ActorStateKey
            | Route::ActorTimer
            | Route::ActorReminder => ("actors", "v1"),
            Route::Job => ("jobs", "v1"),
            Route::JobAlpha1 => ("jobs", "v1alpha1"),
        };
        Endpoint {
            group,
            version,
            route: &self.label()[1..],
        }
    }

    /// Whether the route answers `method`.
    fn answers(self, method: &Method) -> bool {
        let write = method == Method::POST || method == Method::PUT;
        match self {
            Route::Publish
            | Route::PublishBulk
            | Route::PublishBulkV1
            | Route::PublishNoTopic
            | Route::StateSave
            | Route::StateBulk
            | Route::StateTransaction
            | Route::StateQuery
            | Route::Binding => write,
            Route::StateKey => method == Method::GET || method == Method::DELETE,
            Route::Healthz
            | Route::HealthzOutbound
            | Route::Metadata
            | Route::Secret
            | Route::SecretBulk
            | Route::ConfigGet
            | Route::ConfigGetAlpha1
            | Route::ConfigSubscribe
            | Route::ConfigSubscribeAlpha1
            | Route::ConfigUnsubscribe
            | Route::ConfigUnsubscribeAlpha1 => method == Method::GET,
            Route::MetadataKey => method == Method::PUT,
            Route::Shutdown | Route::Lock | Route::Unlock => method == Method::POST,
            Route::ActorMethod => write || method == Method::GET || method == Method::DELETE,
            Route::ActorState => write,
            Route::ActorStateKey => method == Method::GET,
            Route::ActorTimer => write || method == Method::DELETE,
            Route::ActorReminder | Route::Job | Route::JobAlpha1 => {
                write || method == Method::GET || method == Method::DELETE
            }
        }
    }
}

/// The table, matched with matchit.
pub(super) struct Routes(matchit::Router<Route>);

impl Routes {
    pub(super) fn new() -> Self {
        let mut router = matchit::Router::new();
        for r in ALL {
            router
                .insert(r.label(), r)
                .expect("the route table has no conflicts");
        }
        Self(router)
    }

    /// The matched route (and its parameters), if the verb fits; otherwise the request falls
    /// through to invocation, as in daprd. A trailing slash is tried without it.
    pub(super) fn at(&self, path: &str, method: &Method) -> Option<(Route, Params)> {
        if path == "/v1.0/metadata/" && method == Method::PUT {
            return Some((Route::MetadataKey, Params::default()));
        }
        let m = (self.0.at(path).ok()).or_else(|| self.0.at(path.strip_suffix('/')?).ok())?;
        let route = *m.value;
        // Parameters are unescaped after matching, so a key may hold '/' as %2F.
        let param = |a, b| m.params.get(a).or(m.params.get(b)).map(percent_decode);
        let one_of = |names: [&str; 3]| names.into_iter().find_map(|n| m.params.get(n));
        let params = Params {
            store: param("store", "pubsub")
                .or_else(|| m.params.get("type").map(percent_decode))
                .unwrap_or_default(),
            key: (param("key", "topic"))
                .or_else(|| one_of(["method", "name", "key"]).map(percent_decode))
                .unwrap_or_default(),
            id: m.params.get("id").map(percent_decode).unwrap_or_default(),
        };
        route.answers(method).then_some((route, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_routes_with_unescaped_parameters() {
        let routes = Routes::new();
        let cases = [
            (
                "/v1.0/state/s/a%2Fb",
                Method::GET,
                Some((Route::StateKey, "s", "a/b")),
            ),
            (
                "/v1.0/state/s/bulk/",
                Method::POST,
                Some((Route::StateBulk, "s", "")),
            ),
            (
                "/v1.0/publish/p/a/b",
                Method::PUT,
                Some((Route::Publish, "p", "a/b")),
            ),
            (
                "/v1.0/metadata/",
                Method::PUT,
                Some((Route::MetadataKey, "", "")),
            ),
            ("/v1.0/state/s", Method::GET, None),
            ("/v1.0/unknown", Method::GET, None),
            (
                "/v1.0/actors/t/a%2Fb/method/m/n",
                Method::POST,
                Some((Route::ActorMethod, "t", "m/n")),
            ),
            (
                "/v1.0/actors/t/1/state/k",
                Method::GET,
                Some((Route::ActorStateKey, "t", "k")),
            ),
            ("/v1.0/actors/t/1/state/k", Method::POST, None),
            (
                "/v1.0/actors/t/1/state",
                Method::PUT,
                Some((Route::ActorState, "t", "")),
            ),
            ("/v1.0/actors/t/1", Method::DELETE, None),
            (
                "/v1.0-alpha1/lock/l%20s",
                Method::POST,
                Some((Route::Lock, "l s", "")),
            ),
            ("/v1.0-alpha1/unlock/l", Method::GET, None),
            (
                "/v1.0/configuration/c/subscribe",
                Method::GET,
                Some((Route::ConfigSubscribe, "c", "")),
            ),
            (
                "/v1.0-alpha1/configuration/c/id-1/unsubscribe",
                Method::GET,
                Some((Route::ConfigUnsubscribeAlpha1, "c", "id-1")),
            ),
        ];
        for (path, method, want) in cases {
            let got = routes.at(path, &method);
            let got = got.map(|(r, p)| (r, p.store, p.key));
            let want = want.map(|(r, s, k)| (r, s.to_owned(), k.to_owned()));
            assert_eq!(got, want, "{method} {path}");
        }
    }

    #[test]
    fn apis_not_served_yet_are_named() {
        assert_eq!(
            unserved("/v1.0-alpha1/conversation/llm/converse"),
            Some(("/v1.0-alpha1/conversation/", "conversation"))
        );
        assert_eq!(unserved("/v1.0-alpha1/jobs/j"), None);
        assert_eq!(unserved("/v1.0/invoke/a/method/b"), None);
        assert_eq!(unserved("/v1.0/actors/t/1/method/m"), None);
        assert_eq!(unserved("/v1.0/configuration/c"), None);
        assert_eq!(unserved("/v1.0/state/s/k"), None);
    }
}
