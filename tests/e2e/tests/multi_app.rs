//! `outrider run -f`: Dapr's multi-app run template, as the quickstarts launch their apps — a
//! publisher and a subscriber on the built-in pub/sub, output prefixed per app, Ctrl-C stops
//! everything, exit statuses propagate, and a bad template is refused naming file and field.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use outrider_testkit::{binary, free_port, outrider_command};

/// Answers `/dapr/subscribe` with topic `orders`, prints each order it receives, and says
/// `/ready` once its sidecar has asked for its subscriptions.
const SUBSCRIBER: &str = r#"
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

asked = False

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, code, body=b""):
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        global asked
        if self.path == "/dapr/subscribe":
            asked = True
            subs = [{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]
            self.answer(200, json.dumps(subs).encode())
        else:
            self.answer(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/orders":
            print("received order", json.loads(body)["data"]["n"], flush=True)
            self.answer(200)
        elif self.path == "/ready":
            self.answer(200 if asked else 503)
        else:
            self.answer(404)

print("listening as", os.environ["APP_ID"], "greeting", os.environ.get("GREETING"), flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), H).serve_forever()
"#;

/// Waits until the subscriber is ready (invoking it through its own sidecar), publishes three
/// orders, and exits.
const PUBLISHER: &str = r#"
import json, os, time, urllib.request

api = "http://127.0.0.1:" + os.environ["DAPR_HTTP_PORT"]

def post(path, body=b""):
    req = urllib.request.Request(api + path, data=body, method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except Exception:
        return 0

deadline = time.time() + 30
while post("/v1.0/invoke/order-processor/method/ready") != 200:
    if time.time() > deadline:
        raise SystemExit("the subscriber never got ready")
    time.sleep(0.1)
for n in range(1, 4):
    print("published order", n, "status", post("/v1.0/publish/pubsub/orders", json.dumps({"n": n}).encode()), flush=True)
"#;

/// A quickstart laid out as Dapr's are: one directory per app, `dapr.yaml` beside them.
fn quickstart(app_port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (app, code) in [("order-processor", SUBSCRIBER), ("checkout", PUBLISHER)] {
        std::fs::create_dir_all(dir.path().join(app)).unwrap();
        std::fs::write(dir.path().join(app).join("app.py"), code).unwrap();
    }
    let template = format!(
        "version: 1\ncommon:\n  env:\n    GREETING: hello\napps:\n  - appID: order-processor\n    appDirPath: ./order-processor/\n    appPort: {app_port}\n    command: [\"python3\", \"app.py\"]\n  - appID: checkout\n    appDirPath: ./checkout/\n    command: [\"python3\", \"app.py\"]\n"
    );
    std::fs::write(dir.path().join("dapr.yaml"), template).unwrap();
    dir
}

#[tokio::test]
async fn a_quickstart_runs_from_its_template_and_ctrl_c_stops_it() {
    let dir = quickstart(free_port());
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut runner = tokio::process::Command::new(binary("outrider"))
        .args(["run", "-f", "."])
        .current_dir(dir.path())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let said = || std::fs::read_to_string(out.path()).unwrap_or_default();
    // Bounded, and on a timeout the run's whole output says where it stopped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = said();
        if text.contains("== APP - order-processor == received order 3")
            && text.contains("== OUTRIDER - checkout == stopped")
        {
            break text;
        }
        if tokio::time::Instant::now() >= deadline {
            // Stopped as a user would (its apps are in process groups of their own, which a
            // SIGKILL of the run would leave behind), then the run's whole output.
            if let Some(id) = runner.id() {
                let _ = kill(Pid::from_raw(id as i32), Signal::SIGINT);
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), runner.wait()).await;
            panic!("no three orders received within 60 s:\n{}", said());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        "== APP - order-processor == listening as order-processor greeting hello",
        "== APP - checkout == published order 1 status 204",
        "== APP - order-processor == received order 1",
        "== APP - order-processor == received order 2",
        "== OUTRIDER - checkout == stopped; the app's exit status: 0",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // The subscriber's output is kept in its directory too, without the prefix.
    let logs = dir.path().join("order-processor/.dapr/logs");
    let kept: String = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(kept.contains("\nreceived order 3\n"), "{kept}");
    // Ctrl-C: every sidecar stops its app; stopping is not a failure.
    let pid = Pid::from_raw(runner.id().unwrap() as i32);
    kill(pid, Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), runner.wait())
        .await
        .expect("the run stops")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", said());
    assert!(
        said().contains("== OUTRIDER - order-processor == stopped"),
        "{}",
        said()
    );
}

#[tokio::test]
async fn an_app_that_fails_makes_the_run_fail_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("job")).unwrap();
    std::fs::write(
        dir.path().join("run.yaml"),
        "version: 1\napps:\n  - appDirPath: job\n    command: [\"sh\", \"-c\", \"echo working as $APP_ID; exit 3\"]\n",
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.yaml");
    let out = tokio::process::Command::new(binary("outrider"))
        .args(["run", "-f", file.to_str().unwrap()])
        .env("HOME", home.path())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("the run ends with its only app")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    // The app id is the directory's name when the template gives none.
    assert!(text.contains("== APP - job == working as job"), "{text}");
}

#[test]
fn a_bad_template_is_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dapr.yaml");
    std::fs::write(
        &file,
        "apps:\n  - appID: a\n  - appDirPath: nowhere\n    appLogDestination: printer\n",
    )
    .unwrap();
    let (code, _, err) = outrider_command(&["run", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let at = file.display().to_string();
    for said in [
        format!("{at}: version: required"),
        format!("{at}: apps[0].appDirPath: required"),
        format!("{at}: apps[1].appDirPath:"),
        format!("{at}: apps[1].appLogDestination: \"printer\" is not console"),
    ] {
        assert!(err.contains(&said), "{said:?} not in {err}");
    }
    // Flags go in the file with -f.
    let (code, _, err) = outrider_command(&["run", "-f", ".", "--app-id", "x", "--app-port", "1"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("give --app-id, --app-port in the run file"),
        "{err}"
    );
}
