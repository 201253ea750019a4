//! The output binding conformance suite: every output binding is held to the
//! [`OutputBinding`] contract by the same checks; then what only local storage promises (no
//! way out of its root).

use std::sync::Arc;

use bytes::Bytes;
use outrider_blocks::bindings::{
    BindingError, InvokeRequest, InvokeResponse, LocalStorage, OutputBinding, RedisBinding,
};
use outrider_blocks::state::RedisSettings;
use outrider_testkit::RedisServer;

/// A binding and the metadata field that names what it works on.
struct Fixture {
    binding: Arc<dyn OutputBinding>,
    name_field: &'static str,
    _guard: Box<dyn std::any::Any + Send>,
}

fn call(op: &str, field: &str, name: &str, data: &[u8]) -> InvokeRequest {
    InvokeRequest {
        operation: op.into(),
        data: Bytes::copy_from_slice(data),
        metadata: [(field.to_owned(), name.to_owned())].into(),
    }
}

async fn invoke(
    f: &Fixture,
    op: &str,
    name: &str,
    data: &[u8],
) -> Result<Option<InvokeResponse>, BindingError> {
    f.binding.invoke(call(op, f.name_field, name, data)).await
}

async fn create_get_delete_round_trip(f: Fixture) {
    for op in ["create", "get", "delete"] {
        assert!(f.binding.operations().contains(&op), "{op}");
    }
    let data = br#"{"order":42,"items":["a","b"]}"#;
    invoke(&f, "create", "orders/42", data).await.unwrap();
    let got = invoke(&f, "get", "orders/42", b"null").await.unwrap();
    assert_eq!(got.map(|r| r.data), Some(Bytes::from_static(data)));
    invoke(&f, "create", "orders/42", br#"{"order":43}"#)
        .await
        .unwrap();
    let got = invoke(&f, "get", "orders/42", b"null").await.unwrap();
    assert_eq!(
        got.map(|r| r.data),
        Some(Bytes::from_static(br#"{"order":43}"#))
    );
    invoke(&f, "delete", "orders/42", b"null").await.unwrap();
    match invoke(&f, "get", "orders/42", b"null").await {
        Ok(Some(r)) => assert!(r.data.is_empty(), "still there: {r:?}"),
        Ok(None) => {}
        Err(e) => assert!(e.to_string().contains("not found"), "{e}"),
    }
}

async fn names_and_data_are_opaque(f: Fixture) {
    for name in ["a'b\"; DROP TABLE x; --", "ключ-😀", "a b"] {
        let data = "\u{0}binary\u{1}".as_bytes();
        invoke(&f, "create", name, data).await.unwrap();
        let got = invoke(&f, "get", name, b"null").await.unwrap();
        assert_eq!(
            got.map(|r| r.data),
            Some(Bytes::copy_from_slice(data)),
            "{name:?}"
        );
    }
}

macro_rules! conformance {
    ($binding:ident, $make:expr) => {
        mod $binding {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            async fn make() -> Fixture {
                ($make)().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn create_get_delete_round_trip() {
                super::create_get_delete_round_trip(make().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn names_and_data_are_opaque() {
                super::names_and_data_are_opaque(make().await).await;
            }
        }
    };
}

conformance!(localstorage, || async {
    let dir = tempfile::tempdir().unwrap();
    let binding = LocalStorage::open(dir.path()).unwrap();
    Fixture {
        binding: Arc::new(binding),
        name_field: "fileName",
        _guard: Box::new(dir),
    }
});

conformance!(redis, || async {
    let server = RedisServer::start();
    let settings = RedisSettings::plain("127.0.0.1", server.port);
    let binding = RedisBinding::connect(&settings).await.unwrap();
    Fixture {
        binding: Arc::new(binding),
        name_field: "key",
        _guard: Box::new(server),
    }
});

#[tokio::test]
async fn local_storage_keeps_every_name_inside_its_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = LocalStorage::open(&root).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
    let f = Fixture {
        binding: Arc::new(store),
        name_field: "fileName",
        _guard: Box::new(()),
    };
    let escapes = ["../secret", "a/../../secret", "link/secret", "link/new"];
    for name in escapes {
        for op in ["create", "get", "delete", "list"] {
            let e = invoke(&f, op, name, br#""x""#).await.unwrap_err();
            assert!(
                e.to_string().contains("leads outside rootPath"),
                "{op} {name}: {e}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "s3cret"
    );
    // Names that name no file, a FIFO (which would block a reader), an absolute symlink.
    for name in ["/", ".", "a/.."] {
        let e = invoke(&f, "create", name, br#""x""#).await.unwrap_err();
        assert!(e.to_string().contains("names no file"), "{name}: {e}");
    }
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let e = invoke(&f, "get", "fifo", b"null").await.unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs")).unwrap();
    let e = invoke(&f, "get", "abs", b"null").await.unwrap_err();
    assert!(e.to_string().contains("leads outside rootPath"), "{e}");
    let long = "a/".repeat(3000);
    let e = invoke(&f, "get", &long, b"null").await.unwrap_err();
    assert!(e.to_string().contains("at most 4096"), "{e}");
    assert!(!outside.path().join("new").exists());
    // `..` that stays inside, and a leading `/`, are names under the root.
    invoke(&f, "create", "/a/b/../c", br#""x""#).await.unwrap();
    assert!(root.join("a/c").exists());
}

#[tokio::test]
async fn local_storage_writes_strings_unquoted_and_base64_decoded_as_daprd_does() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture {
        binding: Arc::new(LocalStorage::open(dir.path()).unwrap()),
        name_field: "fileName",
        _guard: Box::new(()),
    };
    let cases: [(&[u8], &[u8]); 3] = [
        (br#""plain text""#, b"plain text"),
        (br#""aGVsbG8=""#, b"hello"),
        (br#"{"a":1}"#, br#"{"a":1}"#),
    ];
    for (i, (sent, stored)) in cases.iter().enumerate() {
        let name = format!("f{i}");
        let answer = invoke(&f, "create", &name, sent).await.unwrap().unwrap();
        assert_eq!(
            &answer.data[..],
            format!(r#"{{"fileName":"{name}"}}"#).as_bytes()
        );
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), *stored);
    }
    let listed = invoke(&f, "list", "", b"null").await.unwrap().unwrap();
    let files: Vec<String> = serde_json::from_slice(&listed.data).unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    let unnamed = f.binding.invoke(InvokeRequest {
        operation: "create".into(),
        data: Bytes::from_static(b"1"),
        metadata: Default::default(),
    });
    let answer = unnamed.await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&answer.data).unwrap();
    assert_eq!(
        v["fileName"].as_str().map(str::len),
        Some(36),
        "a UUID: {v}"
    );
}
