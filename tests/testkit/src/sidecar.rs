//! Real sidecar processes: a [`Mesh`] (a home with a CA and a registry shared by its sidecars),
//! and each [`Sidecar`] running in it, with its ports, log, metrics and lifecycle. How one is
//! described before it starts is [`SidecarBuilder`].

mod builder;
mod in_host;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::process::Child;

use crate::client::Reply;
use crate::netns::Host;
use crate::{send, wait_until};

pub use builder::{SidecarBuilder, WELL_KNOWN_PORTS};

/// The `outrider` binary under test: `$OUTRIDER_BIN`, or beside the test executable's `deps/`.
pub fn binary(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!(
        "{}_BIN",
        name.to_ascii_uppercase().replace('-', "_")
    )) {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: build it first (make test does: cargo build --bins)",
        p.display()
    );
    p
}

/// Runs the `outrider` command with `args` to its end: exit status, stdout, stderr.
pub fn outrider_command(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(binary("outrider"))
        .args(args)
        .output()
        .expect("running outrider");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// A group of sidecars sharing one `$HOME`, hence one development CA and one local registry.
pub struct Mesh {
    home: tempfile::TempDir,
    /// `--mesh-transport` of every sidecar started from this mesh, unless one sets its own.
    transport: Option<String>,
}

impl Default for Mesh {
    fn default() -> Self {
        Self::new()
    }
}

impl Mesh {
    /// A fresh mesh with its own CA.
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("tempdir"),
            transport: None,
        }
    }

    /// A fresh mesh whose sidecars all call each other over `transport` (`h2`, `h3` or `auto`):
    /// the same suite can then run over each transport.
    pub fn over(transport: &str) -> Self {
        Self {
            transport: Some(transport.to_owned()),
            ..Self::new()
        }
    }

    /// The shared home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The CA directory the sidecars use.
    pub fn ca_dir(&self) -> PathBuf {
        self.home.path().join(".outrider/ca")
    }

    /// The local registry directory.
    pub fn registry_dir(&self) -> PathBuf {
        self.home.path().join(".outrider/registry")
    }

    /// Gives the home and everything in it to user and group `uid`, for sidecars that run as that
    /// user ([`SidecarBuilder::uid`] does this before each start: files written since then, such
    /// as resources, are given over too).
    pub fn chown(&self, uid: u32) {
        chown_tree(self.home.path(), uid);
    }

    /// Starts describing a sidecar for `app_id`.
    pub fn sidecar(&self, app_id: &str) -> SidecarBuilder {
        let b = SidecarBuilder::new(self.home.path().to_owned(), app_id);
        match &self.transport {
            Some(t) => b.args(["--mesh-transport", t.as_str()]),
            None => b,
        }
    }

    /// A resources directory (`res`) holding `actorstore`, an in-memory state store marked as
    /// the actor state store: actors and jobs on one host.
    pub fn memory_actor_store(&self) -> String {
        self.resources(
            "res",
            "actorstore.yaml",
            "kind: Component\nmetadata: {name: actorstore}\nspec:\n  type: state.in-memory\n  \
             version: v1\n  metadata:\n  - {name: actorStateStore, value: \"true\"}\n",
        )
    }

    /// Writes `text` as `file` in the directory `dir` under the home (made if missing) and
    /// returns that directory, for `--resources-path` (see [`SidecarBuilder::resources`]).
    pub fn resources(&self, dir: &str, file: &str, text: &str) -> String {
        let dir = self.home.path().join(dir);
        std::fs::create_dir_all(&dir).expect("creating the resources dir");
        std::fs::write(dir.join(file), text).expect("writing a resource file");
        dir.to_string_lossy().into_owned()
    }
}

/// `chown -R uid:uid path`, symlinks left as they are; entries that vanish meanwhile (a running
/// sidecar's files come and go) are skipped.
/// [`binary`], in a place any user can exec it from: a sidecar run under its own uid cannot reach
/// a build directory under a private home. A hard link (a copy across file systems) in a
/// world-readable directory of the temp dir, replaced atomically when the build changed.
pub fn shared_binary(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let src = binary(name);
    let dir = std::env::temp_dir().join("outrider-test-bin");
    std::fs::create_dir_all(&dir).expect("the shared binaries' directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("opening the shared binaries' directory to every user");
    let dst = dir.join(name);
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    if stamp(&dst).is_some() && stamp(&dst) == stamp(&src) {
        return dst;
    }
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}", std::process::id()));
    if std::fs::hard_link(&src, &tmp).is_err() {
        std::fs::copy(&src, &tmp).expect("copying a binary for other users");
        let modified = std::fs::metadata(&src)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(modified))
            .expect("keeping the binary's mtime");
    }
    std::fs::rename(&tmp, &dst).expect("placing a binary for other users");
    dst
}

fn chown_tree(path: &Path, uid: u32) {
    match std::os::unix::fs::lchown(path, Some(uid), Some(uid)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("chown {uid} {}: {e}", path.display()),
    }
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if let (true, Ok(entries)) = (is_dir, std::fs::read_dir(path)) {
        for entry in entries.flatten() {
            chown_tree(&entry.path(), uid);
        }
    }
}

/// A running sidecar, killed when dropped. Its log is printed if the test is failing.
pub struct Sidecar {
    child: Child,
    /// Its app id.
    pub app_id: String,
    /// API port.
    pub api: u16,
    /// gRPC API port.
    pub grpc: u16,
    /// Mesh port.
    pub mesh: u16,
    /// Admin port.
    pub admin: u16,
    log: tempfile::NamedTempFile,
    /// It runs an app as its child, which a SIGKILL would orphan.
    has_app: bool,
    /// The LAN host it runs on, if not this machine's own namespace.
    pub host: Option<Host>,
    /// The user it runs as, if not this test's.
    pub uid: Option<u32>,
}

impl Sidecar {
    /// `http://127.0.0.1:<api>`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    /// `http://127.0.0.1:<admin>`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("sidecar already reaped")
    }

    /// Everything the sidecar logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits (bounded) for `GET /v1.0/healthz/outbound` to answer 204; panics with the log if
    /// the process exits first.
    pub async fn wait_outbound_ready(&mut self) {
        self.wait_path("/v1.0/healthz/outbound").await;
    }

    /// Waits (bounded) for `GET /v1.0/healthz` to answer 204: the app is reachable too.
    pub async fn wait_ready(&mut self) {
        self.wait_path("/v1.0/healthz").await;
    }

    async fn wait_path(&mut self, path: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sidecar {} exited with {status} before {path} was ready:\n{}",
                    self.app_id,
                    self.log()
                );
            }
            if let Ok(r) = self.call("GET", path, "").await
                && r.status == 204
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sidecar {} never became ready at {path}:\n{}",
                self.app_id,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Helpers that talk to the sidecar from this namespace cannot reach one on a LAN host.
    fn local_only(&self, what: &str) {
        if let Some(h) = &self.host {
            panic!(
                "Sidecar::{what} reaches the sidecar from the machine's namespace, but it runs in {}",
                h.netns
            );
        }
    }

    /// Sends one request to the sidecar's API (`path` starts with `/`), from inside its
    /// namespace when it runs on a LAN host (through `curl` there, as the sidecar's own user
    /// when it has one: see [`SidecarBuilder::uid`]), within 30 s.
    pub async fn call(&self, method: &str, path: &str, body: &str) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.api_url());
        match &self.host {
            Some(host) => self.curl_in(host, method, &url, body).await,
            None => send(method, &url, &[], body.to_owned()).await,
        }
    }

    /// Sends one request to the sidecar's API (`path` starts with `/`) from this namespace and
    /// reads the whole answer (within 60 s); panics if it cannot be sent.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.local_only("request");
        send(method, &format!("{}{path}", self.api_url()), headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on sidecar {}: {e}", self.app_id))
    }

    /// `GET <path>` on the sidecar's API, with no headers (see [`Sidecar::request`]).
    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], "").await
    }

    /// The `GET /v1.0/metadata` answer, as JSON.
    pub async fn metadata(&self) -> serde_json::Value {
        self.get("/v1.0/metadata").await.json()
    }

    /// The `(name, type)` of every component `GET /v1.0/metadata` lists, in its order.
    pub async fn components(&self) -> Vec<(String, String)> {
        let meta = self.metadata().await;
        let field = |c: &serde_json::Value, f: &str| c[f].as_str().unwrap().to_owned();
        meta["components"]
            .as_array()
            .unwrap_or_else(|| panic!("no components listed: {meta}"))
            .iter()
            .map(|c| (field(c, "name"), field(c, "type")))
            .collect()
    }

    /// Publishes `body` with `headers` to `topic` (optionally followed by a query) of the pub/sub
    /// component `pubsub`: `POST /v1.0/publish/<pubsub>/<topic>`.
    pub async fn publish(
        &self,
        pubsub: &str,
        topic: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let path = format!("/v1.0/publish/{pubsub}/{topic}");
        self.request("POST", &path, headers, body.to_owned()).await
    }

    /// Peak resident memory of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmHWM:")
    }

    /// Resident memory of the process now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmRSS:")
    }

    /// A `kB` field of `/proc/<pid>/status`, in bytes.
    fn proc_status_bytes(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"));
        kb * 1024
    }

    /// Sends a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).expect("kill");
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => panic!(
                "sidecar {} did not exit within {limit:?}:\n{}",
                self.app_id,
                self.log()
            ),
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The admin listener's `/metrics` text (read from inside the sidecar's namespace when it
    /// runs on a LAN host, as [`Sidecar::call`] does).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.admin_url());
        let r = match &self.host {
            Some(host) => self.curl_in(host, "GET", &url, "").await,
            None => send("GET", &url, &[], Vec::new()).await,
        };
        let r = r.unwrap_or_else(|e| panic!("metrics of sidecar {}: {e}", self.app_id));
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Waits (bounded) until `GET /v1.0/metadata` lists exactly `n` active subscriptions; returns them.
    pub async fn wait_subscriptions(&self, n: usize) -> Vec<serde_json::Value> {
        self.local_only("wait_subscriptions");
        let url = format!("{}/v1.0/metadata", self.api_url());
        wait_until(
            Duration::from_secs(15),
            &format!("{n} active subscriptions"),
            || async {
                let m = send("GET", &url, &[], "").await.ok()?.json();
                let subs = m["subscriptions"].as_array()?.clone();
                let active: Vec<serde_json::Value> = subs
                    .into_iter()
                    .filter(|s| s["status"] == "ACTIVE")
                    .collect();
                (active.len() == n).then_some(active)
            },
        )
        .await
    }

    /// Sum of the values of every sample of `name` whose labels contain all of `labels`
    /// (e.g. `status="200"`), as scraped now.
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        sum_metric(&self.metrics().await, name, labels)
    }

    /// Waits (bounded, 10 s) until [`Sidecar::metric_sum`] of `name` and `labels` is at least
    /// `floor`; returns it.
    pub async fn wait_metric(&self, name: &str, labels: &[&str], floor: f64) -> f64 {
        let what = format!("{name} {labels:?} >= {floor} on sidecar {}", self.app_id);
        wait_until(Duration::from_secs(10), &what, || async move {
            let v = self.metric_sum(name, labels).await;
            (v >= floor).then_some(v)
        })
        .await
    }
}

/// Sums samples of `name` in Prometheus text whose label set contains all `labels`.
pub fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // A sidecar with an app is stopped gracefully so that it stops its app too; SIGKILL
        // (kill_on_drop) would leave the app running. Bounded: SIGKILL follows after 10 s.
        if self.has_app
            && matches!(self.child.try_wait(), Ok(None))
            && let Some(pid) = self.child.id()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "----- log of sidecar {} -----\n{}\n----- end -----",
                self.app_id,
                self.log()
            );
        }
    }
}

/// Waits until the local registry lists `n` entries for `app_id`.
pub async fn wait_registered(mesh: &Mesh, app_id: &str, n: usize) {
    let dir = mesh.registry_dir();
    let app = format!("~{app_id}~");
    wait_until(
        Duration::from_secs(10),
        &format!("{n} registry entries for {app_id}"),
        || {
            let dir = dir.clone();
            let app = app.clone();
            async move {
                let count = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.flatten()
                            .filter(|e| {
                                e.file_name().to_string_lossy().contains(&app)
                                    && e.file_name().to_string_lossy().ends_with(".json")
                            })
                            .count()
                    })
                    .unwrap_or(0);
                (count == n).then_some(())
            }
        },
    )
    .await
}
