//! `outrider inject` against golden files (`tests/inject/<case>.yaml` in, `<case>.out.yaml` and
//! `<case>.notes.txt` expected), every input and output checked against the Kubernetes schemas
//! with `kubernetes-validate` (the SDK venv, `make sdk-deps`), and bad input refused with
//! nothing written. `OUTRIDER_UPDATE_GOLDEN=1` rewrites the expected files from what the
//! command writes now (review the diff).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use outrider_testkit::binary;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/inject")
}

/// `outrider inject` with `input` on standard input: exit status, stdout, stderr.
fn inject(input: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(binary("outrider"))
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running outrider inject");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// `kubernetes-validate --strict` for Kubernetes 1.29 (native sidecars) on `files`.
pub fn kubernetes_validate(files: &[PathBuf]) {
    let tool = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sdk/python/.venv/bin/kubernetes-validate");
    assert!(
        tool.exists(),
        "{} is missing: run `make sdk-deps`",
        tool.display()
    );
    let out = Command::new(&tool)
        .args(["--strict", "--kubernetes-version", "1.29.0"])
        .args(files)
        .output()
        .expect("running kubernetes-validate");
    assert!(
        out.status.success(),
        "kubernetes-validate refused {files:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn golden(path: &Path, got: &str) {
    if std::env::var_os("OUTRIDER_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        got,
        want,
        "{} differs (OUTRIDER_UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

#[test]
fn golden_files() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut checked = Vec::new();
    for case in ["deployment", "statefulset", "jobs", "multi"] {
        let input_path = dir().join(format!("{case}.yaml"));
        let input = std::fs::read_to_string(&input_path).unwrap();
        let (code, out, notes) = inject(&input, &[]);
        assert_eq!(code, 0, "{case}: {notes}");
        golden(&dir().join(format!("{case}.out.yaml")), &out);
        golden(&dir().join(format!("{case}.notes.txt")), &notes);
        // Same documents in the same order; those not injected are unchanged.
        let (before, after) = (documents(&input), documents(&out));
        assert_eq!(before.len(), after.len(), "{case}");
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b["kind"], a["kind"], "{case}");
            let injected = serde_json::to_string(a)
                .unwrap()
                .contains("\"name\":\"outrider\"");
            let was = serde_json::to_string(b)
                .unwrap()
                .contains("\"name\":\"outrider\"");
            if !injected || was {
                assert_eq!(b, a, "{case}: a document without the annotation changed");
            }
        }
        // Reading the output again changes nothing: a sidecar is never added twice.
        let (code, again, _) = inject(&out, &[]);
        assert_eq!(
            (code, documents(&again)),
            (0, after.clone()),
            "{case}: not idempotent"
        );
        let written = out_dir.path().join(format!("{case}.out.yaml"));
        std::fs::write(&written, &out).unwrap();
        checked.extend([input_path, written]);
    }
    kubernetes_validate(&checked);
}

#[test]
fn a_file_argument_reads_the_same() {
    let path = dir().join("statefulset.yaml");
    let (code, from_file, _) = inject("", &["-f", path.to_str().unwrap()]);
    let (_, from_stdin, _) = inject(&std::fs::read_to_string(&path).unwrap(), &[]);
    assert_eq!((code, from_file), (0, from_stdin));
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let deployment = std::fs::read_to_string(dir().join("deployment.yaml")).unwrap();
    let cases = [
        (
            "invalid YAML",
            "kind: Deployment\nspec: [\n".to_owned(),
            "not valid YAML",
        ),
        (
            "a scalar document",
            "just text\n".to_owned(),
            "not a Kubernetes object",
        ),
        (
            "a port that is not a number",
            deployment.replace("dapr.io/app-port: \"8080\"", "dapr.io/app-port: \"http\""),
            "dapr.io/app-port",
        ),
        (
            "a boolean that is neither",
            deployment.replace(
                "dapr.io/log-as-json: \"true\"",
                "dapr.io/log-as-json: \"maybe\"",
            ),
            "dapr.io/log-as-json",
        ),
        (
            "a mount of a volume the pod lacks",
            deployment.replace("cache:/var/cache/orders", "certs:/certs"),
            "no volume \"certs\"",
        ),
        (
            "an app id with a slash",
            deployment.replace(
                "dapr.io/app-id: \"orders\"",
                "dapr.io/app-id: \"orders/v2\"",
            ),
            "dapr.io/app-id",
        ),
        (
            "an env without =",
            deployment.replace("GOMEMLIMIT=100MiB", "GOMEMLIMIT"),
            "dapr.io/env",
        ),
        (
            "a volume name already taken",
            deployment
                .replace("name: cache", "name: outrider-data")
                .replace("cache:/var", "outrider-data:/var"),
            "outrider-data",
        ),
    ];
    for (what, input, says) in cases {
        // A good document first: it must not be written either.
        let input =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: first}}\n---\n{input}");
        let (code, out, err) = inject(&input, &[]);
        assert_eq!(code, 1, "{what}: {err}");
        assert!(out.is_empty(), "{what}: something was written:\n{out}");
        assert!(err.contains(says), "{what}: {err}");
        if what != "invalid YAML" && what != "a scalar document" {
            assert!(
                err.contains("document 2 (Deployment orders)"),
                "{what}: {err}"
            );
        }
    }
}

#[test]
fn the_shipped_manifests_are_valid() {
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    kubernetes_validate(&files);
}

#[test]
fn a_byte_order_mark_is_dropped() {
    let input = std::fs::read_to_string(dir().join("multi.yaml")).unwrap();
    let (code, out, err) = inject(&format!("\u{feff}{input}"), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{feff}'));
    let (_, plain, _) = inject(&input, &[]);
    assert_eq!(out, plain);
    let (code, again, err) = inject(&out, &[]);
    assert_eq!((code, documents(&again)), (0, documents(&out)), "{err}");
}
