//! Compatibility through clients no one here wrote: the official Dapr JavaScript and Python SDKs
//! (tests/sdk/) drive real sidecars. `make test` installs them first (scripts/sdk-deps.sh).

use std::path::PathBuf;
use std::time::Duration;

use outrider_testkit::{Mesh, Sidecar, SidecarBuilder, binary, free_port, wait_registered};

#[path = "sdk/actors.rs"]
mod actors;
#[path = "sdk/bindings.rs"]
mod bindings;
#[path = "sdk/configuration.rs"]
mod configuration;
#[path = "sdk/grpcs.rs"]
mod grpcs;
#[path = "sdk/health.rs"]
mod health;
#[path = "sdk/invoke.rs"]
mod invoke;
#[path = "sdk/jobs.rs"]
mod jobs;
#[path = "sdk/lock.rs"]
mod lock;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// The SDK suite's Python (its venv, which `make test` installs).
fn python() -> String {
    let python = sdk_dir().join("python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/sdk-deps.sh (make test does)",
        python.display()
    );
    python.to_string_lossy().into_owned()
}

/// The path of an SDK script.
fn script(name: &str) -> String {
    sdk_dir().join(name).to_string_lossy().into_owned()
}

/// Starts `b` with `argv` as its app (the script is the app; the sidecar exits with its status)
/// and asserts that it passed every check it ran, with the checks `ran` among them. Its log.
async fn app_script_passes(b: SidecarBuilder, argv: Vec<String>, ran: &[&str]) -> String {
    let what = argv.last().cloned().unwrap_or_default();
    let mut s = b.command(argv).spawn();
    let code = s.wait_exit(Duration::from_secs(150)).await;
    let log = s.log();
    assert_eq!(code, Some(0), "{what} failed:\n{log}");
    assert!(
        log.contains("ok - ") && !log.contains("not ok - "),
        "{what} ran no check:\n{log}"
    );
    for r in ran {
        assert!(
            log.contains(&format!("ok - {r}")),
            "{what}: {r:?} did not run:\n{log}"
        );
    }
    log
}

/// Runs one SDK script against `caller`, failing with its output unless it exits 0.
async fn run_script(program: PathBuf, script: &str, caller: &Sidecar, token: Option<&str>) {
    run_script_with(program, script, caller, token, &[]).await;
}

/// [`run_script`] with `env` set over the harness's variables.
async fn run_script_with(
    program: PathBuf,
    script: &str,
    caller: &Sidecar,
    token: Option<&str>,
    env: &[(&str, &str)],
) {
    let path = sdk_dir().join(script);
    assert!(
        program.exists(),
        "{} is missing: run scripts/sdk-deps.sh (make test does)",
        program.display()
    );
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg(&path)
        .env_remove("DAPR_HTTP_ENDPOINT")
        .env_remove("DAPR_API_TOKEN")
        .env("DAPR_HTTP_PORT", caller.api.to_string())
        .env("DAPR_GRPC_PORT", free_port().to_string())
        .env("CALLER_APP_ID", &caller.app_id)
        .env("TARGET_APP_ID", "sdk-echo")
        .env("MISSING_APP_ID", "sdk-nobody")
        .env("DAPR_HEALTH_TIMEOUT", "30")
        .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("DAPR_API_TOKEN", t);
    }
    cmd.envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("SDK script timed out")
        .expect("running the SDK script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{text}\n--- caller log ---\n{}",
        out.status,
        caller.log()
    );
    assert!(
        text.contains("ok - ") && !text.contains("not ok - "),
        "{script} ran no check:\n{text}"
    );
    println!("{script}:\n{text}");
}

async fn mesh_with_echo() -> (Mesh, Sidecar) {
    mesh_with_echo_at(free_port()).await
}

/// The echo app on `port`, behind its sidecar.
async fn mesh_with_echo_at(port: u16) -> (Mesh, Sidecar) {
    let mesh = Mesh::new();
    let echo = binary("echo-app").to_string_lossy().into_owned();
    let mut b = mesh
        .sidecar("sdk-echo")
        .app_port(port)
        .command([echo])
        .start()
        .await;
    b.wait_ready().await;
    wait_registered(&mesh, "sdk-echo", 1).await;
    (mesh, b)
}

#[tokio::test]
async fn javascript_sdk_state() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("sdk-js-state").start().await;
    run_node_suite(
        "js/state.mjs",
        &s,
        &[
            ("STATE_STORE", "statestore"),
            ("MISSING_STORE", "sdk-no-such-store"),
        ],
    )
    .await;
}

/// Runs a JS suite against `sidecar`'s API with `env`; every check must pass and at least one run.
async fn run_node_suite(script: &str, sidecar: &Sidecar, env: &[(&str, &str)]) {
    node_suite(script, sidecar, env, false).await;
}

/// Runs a JS suite in gRPC mode against `sidecar` with `env`: `DAPR_COMMUNICATION_PROTOCOL=grpc`,
/// the SDK dialling the sidecar's gRPC port, `DAPR_HTTP_PORT` a port nothing listens on (so a
/// call that silently went over HTTP fails). Every check must pass, at least one must run, and the
/// summary must be the gRPC one.
async fn run_node_suite_over_grpc(script: &str, sidecar: &Sidecar, env: &[(&str, &str)]) {
    node_suite(script, sidecar, env, true).await;
}

async fn node_suite(script: &str, sidecar: &Sidecar, env: &[(&str, &str)], grpc: bool) {
    let mut cmd = tokio::process::Command::new("/usr/bin/node");
    cmd.arg(sdk_dir().join(script))
        .env_remove("DAPR_HTTP_ENDPOINT")
        .env_remove("DAPR_GRPC_ENDPOINT")
        .env_remove("DAPR_API_TOKEN")
        .kill_on_drop(true);
    if grpc {
        cmd.env("DAPR_COMMUNICATION_PROTOCOL", "grpc")
            .env("DAPR_GRPC_PORT", sidecar.grpc.to_string())
            .env("DAPR_HTTP_PORT", free_port().to_string());
    } else {
        cmd.env("DAPR_HTTP_PORT", sidecar.api.to_string());
    }
    cmd.envs(env.iter().copied());
    let mode = if grpc { " over gRPC" } else { "" };
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("SDK script timed out")
        .expect("running node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script}{mode} failed ({}):\n{text}\n--- sidecar log ---\n{}",
        out.status,
        sidecar.log()
    );
    assert!(
        text.contains("ok - ")
            && !text.contains("not ok - ")
            && (!grpc || text.contains("(grpc): checks=")),
        "{script}{mode} ran no check:\n{text}"
    );
    if let Some((_, name)) = env.iter().find(|(k, _)| *k == "ENDPOINT_NAME") {
        let wanted = format!("ok - invoke the HTTPEndpoint {name} by name");
        assert!(text.contains(&wanted), "{script}{mode}:\n{text}");
    }
}

#[tokio::test]
async fn python_sdk_invokes_over_http() {
    let (mesh, _b) = mesh_with_echo().await;
    let python = sdk_dir().join("python/.venv/bin/python");
    let a = mesh.sidecar("sdk-py-caller").start().await;
    run_script(python.clone(), "python/invoke.py", &a, None).await;
    let guarded = mesh
        .sidecar("sdk-py-token")
        .env("DAPR_API_TOKEN", "tok-py")
        .start()
        .await;
    run_script(python, "python/invoke.py", &guarded, Some("tok-py")).await;
}

#[tokio::test]
async fn javascript_sdk_pubsub_as_the_app() {
    // The script is the app: the sidecar starts it, and exits with its status. Over HTTP, then
    // as a gRPC app (its DaprServer serves AppCallback to a sidecar with --app-protocol grpc, and
    // it publishes through the gRPC API).
    let mesh = Mesh::new();
    let script = sdk_dir()
        .join("js/pubsub.mjs")
        .to_string_lossy()
        .into_owned();
    let argv = vec!["/usr/bin/node".to_owned(), script];
    let bulk = "a subscribeBulk handler receives every message";
    let b = mesh
        .sidecar("sdk-js-pub")
        .app_port(free_port())
        .env("PUBSUB_NAME", "pubsub");
    app_script_passes(b, argv.clone(), &[bulk]).await;
    let b = mesh
        .sidecar("sdk-js-pub-grpc")
        .app_port(free_port())
        .args(["--app-protocol", "grpc"])
        .env("PUBSUB_NAME", "pubsub")
        .env("DAPR_COMMUNICATION_PROTOCOL", "grpc");
    let log = app_script_passes(b, argv, &[bulk]).await;
    assert!(
        log.contains("# js/pubsub (grpc): checks="),
        "not the gRPC run:\n{log}"
    );
}

#[tokio::test]
async fn python_fastapi_extension_pubsub_as_the_app() {
    // The script is the app (a FastAPI app wrapped in the SDK's DaprApp): the sidecar starts it,
    // and exits with its status.
    let mesh = Mesh::new();
    let b = mesh
        .sidecar("sdk-py-pub")
        .app_port(free_port())
        .env("PUBSUB_NAME", "pubsub");
    let argv = vec![python(), script("python/pubsub_app.py")];
    app_script_passes(b, argv, &["a handler that keeps failing sends the event"]).await;
}

#[tokio::test]
async fn javascript_sdk_secrets() {
    // Over HTTP, then through the SDK's gRPC client.
    let mesh = Mesh::new();
    for grpc in [false, true] {
        let name = if grpc { "js-grpc" } else { "js" };
        let (res, config) = secret_resources(&mesh, name, SecretsFile::Flat);
        let s = mesh
            .sidecar(&format!("sdk-{name}-secrets"))
            .args([
                "--resources-path",
                res.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ])
            .start()
            .await;
        let env = [
            ("SECRET_STORE", "sdksecrets"),
            ("SECRET_PASSWORD", "sdk-pw-1"),
            ("MISSING_STORE", "sdk-no-such-store"),
        ];
        node_suite("js/secrets.mjs", &s, &env, grpc).await;
    }
}

#[tokio::test]
async fn javascript_sdk_state_over_grpc() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("sdk-js-state-grpc").start().await;
    run_node_suite_over_grpc(
        "js/state.mjs",
        &s,
        &[
            ("STATE_STORE", "statestore"),
            ("MISSING_STORE", "sdk-no-such-store"),
        ],
    )
    .await;
}

/// How the file secret store reads nested JSON.
#[derive(PartialEq)]
enum SecretsFile {
    /// `db:password` names the nested value (the store's default).
    Flat,
    /// `db` is a secret of several values, and the default state store and pub/sub are declared
    /// too (a resources path replaces the built-in ones).
    MultiValuedWithDefaults,
}

/// A resources directory with the file secret store `sdksecrets` ({db: {password: sdk-pw-1},
/// port, denied}) and a Configuration whose secret scopes deny `denied`.
fn secret_resources(mesh: &Mesh, name: &str, kind: SecretsFile) -> (PathBuf, PathBuf) {
    let file = mesh.home().join(format!("{name}-secrets.json"));
    std::fs::write(
        &file,
        r#"{"db": {"password": "sdk-pw-1"}, "port": 5432, "denied": "no"}"#,
    )
    .unwrap();
    let res = mesh.home().join(format!("{name}-res"));
    std::fs::create_dir_all(&res).unwrap();
    let multi = if kind == SecretsFile::MultiValuedWithDefaults {
        "  - {name: multiValued, value: 'true'}\n"
    } else {
        ""
    };
    std::fs::write(
        res.join("secrets.yaml"),
        format!(
            "kind: Component\nmetadata: {{name: sdksecrets}}\nspec:\n  type: secretstores.local.file\n  metadata:\n  - {{name: secretsFile, value: '{}'}}\n{multi}",
            file.display()
        ),
    )
    .unwrap();
    if kind == SecretsFile::MultiValuedWithDefaults {
        std::fs::write(
            res.join("state.yaml"),
            "kind: Component\nmetadata: {name: statestore}\nspec:\n  type: state.sqlite\n  metadata:\n  - {name: connectionString, value: state.db}\n",
        )
        .unwrap();
        std::fs::write(
            res.join("pubsub.yaml"),
            "kind: Component\nmetadata: {name: pubsub}\nspec:\n  type: pubsub.in-memory\n",
        )
        .unwrap();
    }
    let config = mesh.home().join(format!("{name}-config.yaml"));
    std::fs::write(
        &config,
        "kind: Configuration\nspec:\n  secrets:\n    scopes:\n    - {storeName: sdksecrets, deniedSecrets: [denied]}\n",
    )
    .unwrap();
    (res, config)
}

#[tokio::test]
async fn python_sdk_over_grpc_as_the_app() {
    // The script is the app: it receives what it publishes, drives every served RPC through the
    // SDK's gRPC client, and ends with Shutdown; the sidecar exits with its status.
    let (mesh, _echo) = mesh_with_echo().await;
    let (res, config) = secret_resources(&mesh, "py", SecretsFile::MultiValuedWithDefaults);
    for (id, token) in [
        ("sdk-py-grpc", None),
        ("sdk-py-grpc-token", Some("tok-py-grpc")),
    ] {
        let mut b = mesh
            .sidecar(id)
            .app_port(free_port())
            .args([
                "--resources-path",
                res.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ])
            .env("TARGET_APP_ID", "sdk-echo")
            .env("SECRET_STORE", "sdksecrets")
            .env("SECRET_PASSWORD", "sdk-pw-1");
        let mut ran = vec!["shutdown() over gRPC"];
        if let Some(t) = token {
            b = b.env("DAPR_API_TOKEN", t);
            ran.push("with a wrong dapr-api-token");
        }
        let argv = vec![python(), script("python/grpc_client.py")];
        app_script_passes(b, argv, &ran).await;
    }
}

#[tokio::test]
async fn python_grpc_app_behind_a_grpc_sidecar() {
    // The script is a dapr.ext.grpc App: its sidecar speaks AppCallback to it, and another
    // sidecar of the mesh calls it over HTTP.
    let mesh = Mesh::new();
    let caller = mesh.sidecar("sdk-py-app-caller").start().await;
    let b = mesh
        .sidecar("sdk-py-grpc-app")
        .app_port(free_port())
        .args(["--app-protocol", "grpc"])
        .env("CALLER_HTTP_PORT", &caller.api.to_string());
    let argv = vec![python(), script("python/grpc_app.py")];
    app_script_passes(b, argv, &["a handler's RETRY redelivers; DROP does not"]).await;
}

#[tokio::test]
async fn grpc_calls_are_proxied_between_two_sidecars() {
    // A plain grpcio service behind a grpc sidecar, a plain grpcio client on another sidecar's
    // gRPC port naming it by dapr-app-id: unary, the three streaming kinds, 16 MiB, a deadline.
    let mesh = Mesh::new();
    let python = sdk_dir().join("python/.venv/bin/python");
    let script = sdk_dir().join("python/grpc_proxy.py");
    let (python, script) = (
        python.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
    );
    // The callee's access policy names a gRPC method.
    let config = mesh.home().join("grpc-acl.yaml");
    std::fs::write(
        &config,
        "kind: Configuration\nspec:\n  accessControl:\n    defaultAction: allow\n    trustDomain: public\n    policies:\n    - appId: sdk-grpc-caller\n      namespace: default\n      trustDomain: public\n      defaultAction: allow\n      operations:\n      - {name: /outrider.test.Echo/Denied, httpVerb: ['*'], action: deny}\n",
    )
    .unwrap();
    let mut target = mesh
        .sidecar("sdk-grpc-echo")
        .app_port(free_port())
        .args(["--app-protocol", "grpc", "--max-body-size", "32Mi"])
        .args(["--config", config.to_str().unwrap()])
        .command([python.clone(), script.clone(), "server".to_owned()])
        .start()
        .await;
    target.wait_ready().await;
    wait_registered(&mesh, "sdk-grpc-echo", 1).await;
    let caller = mesh
        .sidecar("sdk-grpc-caller")
        .args(["--max-body-size", "32Mi"])
        .start()
        .await;
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg("client")
            .env("CALLER_GRPC_PORT", caller.grpc.to_string())
            .env("TARGET_APP_ID", "sdk-grpc-echo")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client ends in time")
    .expect("running the client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success()
            && !text.contains("not ok - ")
            && text.contains("ok - a proxied call for the AppCallback service is refused")
            && text.contains("ok - the callee's access policy matches the gRPC method name"),
        "python/grpc_proxy.py client failed:\n{text}\n--- caller ---\n{}\n--- target ---\n{}",
        caller.log(),
        target.log()
    );
    // The plain service has no AppCallback: the subscription query found it UNIMPLEMENTED,
    // counted under Dapr's gRPC client metrics.
    let text = target.metrics().await;
    let asked = "dapr_grpc_io_client_completed_rpcs{app_id=\"sdk-grpc-echo\",grpc_client_method=\"/dapr.proto.runtime.v1.AppCallback/ListTopicSubscriptions\",grpc_client_status=\"Unimplemented\"}";
    assert!(text.contains(asked), "{asked} is missing:\n{text}");
    // Dropped, the sidecar is stopped gracefully and stops its app; killing it would leave the
    // app running.
}
