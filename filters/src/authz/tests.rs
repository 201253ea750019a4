use std::sync::Mutex;

use outrider_policy::{AccessControlSpec, Action};
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::canonical::CanonicalLayer;
use crate::normalize::{Rejection, canonical_path};

fn caller() -> Arc<Caller> {
    Arc::new(Caller {
        app_id: "a".into(),
        namespace: "default".into(),
        trust_domain: "public".into(),
    })
}

/// App `a` may use `/public/**` and nothing under `/admin`; everything else falls to the
/// policy's deny default.
fn policies() -> AccessControl {
    let spec = json!({
        "defaultAction": "deny",
        "policies": [{
            "appId": "a", "namespace": "default", "trustDomain": "public", "defaultAction": "deny",
            "operations": [
                {"name": "/public/**", "httpVerb": ["*"], "action": "allow"},
                {"name": "/admin/**", "httpVerb": ["*"], "action": "deny"},
            ],
        }],
    });
    AccessControl::merge([AccessControlSpec::parse(&spec, "test.yaml").unwrap()]).unwrap()
}

/// What happened to one request: refused at the edge, denied by policy, or delivered with the
/// path the app received.
#[derive(Debug, PartialEq)]
enum Outcome {
    Rejected(Rejection),
    Denied,
    Delivered(String),
}

/// What the two layers refuse with, as a caller's own error type would carry it.
#[derive(Debug)]
enum Refusal {
    Rejected(Rejection),
    Denied,
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

impl From<Denied> for Refusal {
    fn from(_: Denied) -> Self {
        Self::Denied
    }
}

async fn send(path: &str, who: Option<Arc<Caller>>) -> Outcome {
    let (_tx, rx) = watch::channel(Arc::new(policies()));
    let received = Arc::new(Mutex::new(None));
    let seen = received.clone();
    let app = service_fn(move |req: Request<()>| {
        *seen.lock().unwrap() = Some(req.uri().to_string());
        async { Ok::<_, Refusal>(Response::new(())) }
    });
    let svc = ServiceBuilder::new()
        .layer(CanonicalLayer)
        .layer(AuthorizeLayer::new(rx, Arc::default()))
        .service(app);
    let mut req = Request::builder()
        .method("POST")
        .uri(path)
        .body(())
        .unwrap();
    if let Some(c) = who {
        req.extensions_mut().insert(c);
    }
    match svc.oneshot(req).await {
        Ok(_) => Outcome::Delivered(
            received
                .lock()
                .unwrap()
                .clone()
                .expect("the app was called"),
        ),
        Err(Refusal::Rejected(r)) => Outcome::Rejected(r),
        Err(Refusal::Denied) => Outcome::Denied,
    }
}

#[tokio::test]
async fn the_bypass_family_is_decided_on_what_the_app_receives() {
    let rows = [
        ("/public/x", Outcome::Delivered("/public/x".into())),
        (
            "/public/x?q=%2F..%2Fadmin",
            Outcome::Delivered("/public/x?q=%2F..%2Fadmin".into()),
        ),
        ("/admin", Outcome::Denied),
        ("//admin", Outcome::Denied),
        ("/a/../admin", Outcome::Denied),
        ("/public/../admin", Outcome::Denied),
        ("/%61dmin", Outcome::Denied),
        ("/ADMIN/users", Outcome::Denied),
        ("/public/%2e%2e/admin", Outcome::Denied),
        ("/public%2F..%2F..%2Fadmin", Outcome::Denied),
        ("/admin%2F", Outcome::Denied),
        ("/admin%2f", Outcome::Denied),
        ("/admin%5Cx", Outcome::Denied),
        // Decoding once: what the policy allows is exactly what the app gets.
        ("/admin%2F..%2Fpublic", Outcome::Delivered("/public".into())),
        (
            "/public/%252e%252e/admin",
            Outcome::Delivered("/public/%252e%252e/admin".into()),
        ),
        ("/public/%00", Outcome::Rejected(Rejection::ControlChar)),
        ("/public/%zz", Outcome::Rejected(Rejection::BadEscape)),
        // Not under any rule: the policy's default denies.
        ("/elsewhere", Outcome::Denied),
    ];
    for (path, want) in rows {
        let got = send(path, Some(caller())).await;
        assert_eq!(got, want, "{path}");
        // The decision on the canonical form is the decision the stack made.
        if let Ok(canonical) = canonical_path(path.split('?').next().unwrap()) {
            let direct = policies().decide(Some(&caller()), &canonical, "POST");
            assert_eq!(
                direct.allowed(),
                matches!(got, Outcome::Delivered(_)),
                "{path} → {canonical}"
            );
        }
    }
}

#[tokio::test]
async fn a_backslash_is_a_slash_before_the_decision() {
    // Raw or encoded, a backslash is a separator by the time the policy sees it.
    assert_eq!(send("/\\admin", Some(caller())).await, Outcome::Denied);
    assert_eq!(
        send("/public/..\\admin", Some(caller())).await,
        Outcome::Denied
    );
    assert_eq!(send("/%5Cadmin", Some(caller())).await, Outcome::Denied);
    assert_eq!(
        send("/public/..%5Cadmin", Some(caller())).await,
        Outcome::Denied
    );
}

#[tokio::test]
async fn without_identity_the_global_default_decides() {
    assert_eq!(send("/public/x", None).await, Outcome::Denied);
    let open = AccessControl::open();
    assert_eq!(open.decide(None, "/public/x", "POST").action, Action::Allow);
}

#[tokio::test]
async fn a_published_change_applies_to_the_next_request() {
    let (tx, rx) = watch::channel(Arc::new(policies()));
    let mut svc = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(rx, Arc::default()))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Refusal>(Response::new(()))
        }));
    let req = || {
        let mut r = Request::builder().uri("/elsewhere").body(()).unwrap();
        r.extensions_mut().insert(caller());
        r
    };
    assert!(svc.ready().await.unwrap().call(req()).await.is_err());
    tx.send_replace(Arc::new(AccessControl::open()));
    assert!(svc.ready().await.unwrap().call(req()).await.is_ok());
}

#[tokio::test]
async fn denials_are_kept_with_their_rule_newest_last_and_bounded() {
    let (_tx, rx) = watch::channel(Arc::new(policies()));
    let denials = Arc::new(Denials::default());
    let mut svc = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(rx, denials.clone()))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Refusal>(Response::new(()))
        }));
    let long = format!("/{}", "x".repeat(1000));
    let total = Denials::KEPT + 5;
    for i in 0..total {
        let path = if i + 1 == total {
            long.clone()
        } else {
            format!("/admin/{i}")
        };
        let mut req = Request::builder()
            .method("DELETE")
            .uri(path)
            .body(())
            .unwrap();
        req.extensions_mut().insert(caller());
        assert!(svc.ready().await.unwrap().call(req).await.is_err());
    }
    // An allowed call is not a denial.
    let mut req = Request::builder()
        .method("POST")
        .uri("/public/x")
        .body(())
        .unwrap();
    req.extensions_mut().insert(caller());
    assert!(svc.ready().await.unwrap().call(req).await.is_ok());

    assert_eq!(denials.total(), total as u64);
    let kept = denials.latest();
    assert_eq!(kept.len(), Denials::KEPT);
    assert_eq!(kept[0].operation, "/admin/5", "the oldest left first");
    let last = kept.last().unwrap();
    assert_eq!(last.operation.chars().count(), Denials::OPERATION_CHARS);
    assert_eq!(last.verb, "DELETE");
    assert_eq!(last.caller, caller().to_string());
    assert!(!last.rule.is_empty());
    assert_eq!(kept[1].rule, kept[0].rule);
}
