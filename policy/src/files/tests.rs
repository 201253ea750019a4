use std::time::Duration;

use super::*;
use crate::Caller;

const ALLOW_A: &str = concat!(
    "apiVersion: dapr.io/v1alpha1\n",
    "kind: Configuration\n",
    "metadata: {name: acl}\n",
    "spec:\n",
    "  accessControl:\n",
    "    defaultAction: deny\n",
    "    policies:\n",
    "    - {appId: a, namespace: default, trustDomain: public, defaultAction: allow}\n",
);

const DENY_A: &str = concat!(
    "kind: Configuration\n",
    "spec:\n",
    "  accessControl:\n",
    "    defaultAction: deny\n",
    "    policies:\n",
    "    - {appId: a, namespace: default, trustDomain: public, defaultAction: deny}\n",
);

fn a() -> Caller {
    Caller {
        app_id: "a".into(),
        namespace: "default".into(),
        trust_domain: "public".into(),
    }
}

fn sources(root: &Path, namespace: &str) -> Sources {
    Sources {
        config: None,
        root: Some(root.to_owned()),
        namespace: namespace.to_owned(),
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Write then rename, as editors and Kubernetes do, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn only_the_namespace_directory_applies() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("default/acl.yaml"), ALLOW_A);
    write(&root.path().join("other/acl.yaml"), DENY_A);
    let here = sources(root.path(), "default").load().unwrap();
    assert!(here.decide(Some(&a()), "/x", "GET").allowed());
    let there = sources(root.path(), "other").load().unwrap();
    assert!(!there.decide(Some(&a()), "/x", "GET").allowed());
    // A namespace without a directory has no policy files: nothing is enforced.
    assert!(!sources(root.path(), "empty").load().unwrap().is_enabled());
}

#[test]
fn the_config_comes_first_and_files_add_to_it() {
    let root = tempfile::tempdir().unwrap();
    write(
        &root.path().join("default/b.yaml"),
        &ALLOW_A.replace("appId: a", "appId: b"),
    );
    let config = AccessControlSpec::parse(
        &serde_json::json!({"policies": [{"appId": "a", "namespace": "default", "trustDomain": "public", "defaultAction": "allow"}]}),
        "config.yaml",
    )
    .unwrap();
    let s = Sources {
        config: Some(config),
        ..sources(root.path(), "default")
    };
    let acl = s.load().unwrap();
    assert_eq!(acl.policy_count(), 2);
    let rule = acl.decide(Some(&a()), "/x", "GET").rule.to_string();
    assert!(rule.starts_with("config.yaml: "), "{rule}");
}

#[test]
fn problems_name_the_file_and_field() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("default");
    write(
        &dir.join("1-bad-action.yaml"),
        &ALLOW_A.replace("defaultAction: allow", "defaultAction: perhaps"),
    );
    write(&dir.join("2-kind.yaml"), "kind: Component\nspec: {}\n");
    write(&dir.join("3-yaml.yaml"), "kind: [unclosed\n");
    let problems = sources(root.path(), "default").load().unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let has = |file: &str, what: &str| text.iter().any(|t| t.contains(file) && t.contains(what));
    assert!(
        has(
            "1-bad-action.yaml: spec.accessControl.policies[0].defaultAction",
            "perhaps"
        ),
        "{text:?}"
    );
    assert!(has("2-kind.yaml: kind", "Component"), "{text:?}");
    assert!(has("3-yaml.yaml", "not valid YAML"), "{text:?}");
}

async fn wait_for(rx: &mut watch::Receiver<Arc<AccessControl>>, allowed: bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while rx
            .borrow_and_update()
            .decide(Some(&a()), "/x", "GET")
            .allowed()
            != allowed
        {
            rx.changed().await.expect("the watch stays open");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the policy never became allowed={allowed}"));
}

#[tokio::test]
async fn edits_take_effect_and_a_bad_edit_keeps_the_last_good_set() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("default/acl.yaml");
    write(&file, ALLOW_A);
    let s = sources(root.path(), "default");
    let (mut rx, watching) = watch(s.clone(), Arc::new(s.load().unwrap())).unwrap();
    assert!(rx.borrow().decide(Some(&a()), "/x", "GET").allowed());

    write(&file, DENY_A);
    wait_for(&mut rx, false).await;

    // A broken file is reported and not applied.
    let mut status = watching.status();
    write(
        &file,
        "kind: Configuration\nspec: {accessControl: {defaultAction: sometimes}}\n",
    );
    let problems =
        tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.refused > 0))
            .await
            .expect("the bad file is reported")
            .expect("the watch stays open")
            .problems
            .clone();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("acl.yaml: spec.accessControl.defaultAction")),
        "{problems:?}"
    );
    assert!(!rx.borrow().decide(Some(&a()), "/x", "GET").allowed());

    write(&file, ALLOW_A);
    wait_for(&mut rx, true).await;
}

#[tokio::test]
async fn a_namespace_directory_created_later_is_picked_up() {
    let root = tempfile::tempdir().unwrap();
    let s = sources(root.path(), "default");
    let (mut rx, _watching) = watch(s.clone(), Arc::new(s.load().unwrap())).unwrap();
    assert!(!rx.borrow().is_enabled());
    write(&root.path().join("default/acl.yaml"), DENY_A);
    wait_for(&mut rx, false).await;
}
