//! How a test describes a sidecar process before it starts: its app, ports, flags, environment,
//! network namespace, user and descriptor limit. Spawning it gives the running [`Sidecar`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{Sidecar, binary, chown_tree};
use crate::netns::Host;
use crate::{FakeApp, free_port};

/// How to start one sidecar.
pub struct SidecarBuilder {
    home: PathBuf,
    app_id: String,
    app_port: Option<u16>,
    data_dir: Option<PathBuf>,
    default_mesh_port: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    command: Vec<String>,
    host: Option<Host>,
    fd_limit: Option<u64>,
    uid: Option<u32>,
    well_known_ports: bool,
}

/// The ports [`SidecarBuilder::well_known_ports`] gives: API, gRPC API, admin (metrics) and mesh,
/// the defaults of `outrider run` and those `outrider init` exempts from inbound redirection.
pub const WELL_KNOWN_PORTS: [u16; 4] = [3500, 50001, 9090, 50002];

impl SidecarBuilder {
    /// A sidecar for `app_id` whose `HOME` is `home`, with every setting at its default.
    pub(super) fn new(home: PathBuf, app_id: &str) -> Self {
        SidecarBuilder {
            home,
            app_id: app_id.to_owned(),
            app_port: None,
            data_dir: None,
            default_mesh_port: false,
            args: Vec::new(),
            env: Vec::new(),
            command: Vec::new(),
            host: None,
            fd_limit: None,
            uid: None,
            well_known_ports: false,
        }
    }

    /// Runs the sidecar (and its app) on `host` of a [`crate::netns::Lan`]. Its API and admin
    /// ports are then reachable only inside that namespace: use [`Sidecar::call`].
    pub fn on(mut self, host: &Host) -> Self {
        self.host = Some(host.clone());
        self
    }

    /// Runs the sidecar, and with it its app, as user and group `uid` (no supplementary groups),
    /// through `setpriv`, which execs it: same pid. The mesh home is given to that user before
    /// it starts ([`super::Mesh::chown`]); the `outrider` binary and the app must be reachable by
    /// that user. [`Sidecar::call`] and [`Sidecar::metrics`] then run as that user too.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Gives the sidecar the fixed ports [`WELL_KNOWN_PORTS`] rather than free ones; only for a
    /// sidecar on a LAN host ([`SidecarBuilder::on`]), which has ports of its own.
    pub fn well_known_ports(mut self) -> Self {
        self.well_known_ports = true;
        self
    }

    /// The app's port.
    pub fn app_port(mut self, port: u16) -> Self {
        self.app_port = Some(port);
        self
    }

    /// The data directory (default: a fresh one per sidecar under the mesh home).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Leave `--mesh-port` out, so the sidecar picks its default (the `mesh` field is then 0).
    pub fn default_mesh_port(mut self) -> Self {
        self.default_mesh_port = true;
        self
    }

    /// Extra flags.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Loads components and other resources from `dir` (`--resources-path`).
    pub fn resources(self, dir: impl AsRef<std::path::Path>) -> Self {
        let dir = dir.as_ref().to_string_lossy().into_owned();
        self.args(["--resources-path".to_owned(), dir])
    }

    /// An environment variable for the sidecar process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Runs the sidecar with both its soft and hard limit on open descriptors at `n`.
    pub fn fd_limit(mut self, n: u64) -> Self {
        self.fd_limit = Some(n);
        self
    }

    /// The app to run as a child (`-- CMD ARGS…`).
    pub fn command<I: IntoIterator<Item = S>, S: Into<String>>(mut self, argv: I) -> Self {
        self.command.extend(argv.into_iter().map(Into::into));
        self
    }

    /// API, gRPC API, admin and mesh ports (mesh 0: left to the sidecar).
    fn ports(&self) -> [u16; 4] {
        if self.well_known_ports {
            assert!(
                self.host.is_some(),
                "well-known ports are for a sidecar on a LAN host, which has ports of its own"
            );
            return WELL_KNOWN_PORTS;
        }
        let mesh = if self.default_mesh_port {
            0
        } else {
            free_port()
        };
        [free_port(), free_port(), free_port(), mesh]
    }

    /// The command up to the `outrider` binary. The descriptor limit, the namespace and the user
    /// each wrap what follows and exec it, so the sidecar keeps the pid of the process spawned.
    fn launcher(&self) -> Command {
        // A sidecar under another uid may not reach the build directory.
        let outrider = match self.uid {
            Some(_) => super::shared_binary("outrider"),
            None => binary("outrider"),
        };
        let mut argv: Vec<OsString> = vec![outrider.into()];
        let mut wrap = |prefix: &[&str]| {
            let rest = std::mem::take(&mut argv);
            argv = prefix
                .iter()
                .map(|s| OsString::from(*s))
                .chain(rest)
                .collect();
        };
        if let Some(uid) = self.uid {
            let (u, g) = (format!("--reuid={uid}"), format!("--regid={uid}"));
            wrap(&["setpriv", &u, &g, "--clear-groups", "--"]);
        }
        if let Some(h) = &self.host {
            wrap(&["ip", "netns", "exec", &h.netns]);
        }
        if let Some(n) = self.fd_limit {
            wrap(&["prlimit", &format!("--nofile={n}:{n}"), "--"]);
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// A fresh data directory under the home, named after the app and what tells this sidecar
    /// apart from others of the same app: its API port, or its host when the ports are fixed.
    fn default_data_dir(&self, api: u16) -> PathBuf {
        let this = match (&self.host, self.well_known_ports) {
            (Some(h), true) => h.netns.clone(),
            _ => api.to_string(),
        };
        self.home.join(format!("data-{}-{this}", self.app_id))
    }

    /// Spawns the process without waiting for it to be ready.
    pub fn spawn(self) -> Sidecar {
        let [api, grpc, admin, mesh] = self.ports();
        if let Some(uid) = self.uid {
            chown_tree(&self.home, uid);
        }
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut cmd = self.launcher();
        cmd.arg("run")
            .args(["--app-id", &self.app_id])
            .args(["--dapr-http-port", &api.to_string()])
            .args(["--dapr-grpc-port", &grpc.to_string()])
            .args(["--metrics-port", &admin.to_string()])
            .arg("--data-dir")
            .arg(
                self.data_dir
                    .clone()
                    .unwrap_or_else(|| self.default_data_dir(api)),
            )
            .args(["--log-level", "debug"])
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .kill_on_drop(true);
        if let Some(p) = self.app_port {
            cmd.args(["--app-port", &p.to_string()]);
        }
        if mesh != 0 {
            cmd.args(["--mesh-port", &mesh.to_string()]);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if !self.command.is_empty() {
            cmd.arg("--").args(&self.command);
        }
        let has_app = !self.command.is_empty();
        let child = cmd.spawn().expect("spawning outrider");
        Sidecar {
            child,
            app_id: self.app_id,
            api,
            grpc,
            mesh,
            admin,
            log,
            has_app,
            host: self.host,
            uid: self.uid,
        }
    }

    /// Spawns the process and waits until its outbound API answers.
    pub async fn start(self) -> Sidecar {
        let mut s = self.spawn();
        s.wait_outbound_ready().await;
        s
    }

    /// Spawns the process and waits until its app is reachable and `n` subscriptions are active.
    pub async fn start_subscribed(self, n: usize) -> Sidecar {
        let mut s = self.start().await;
        s.wait_ready().await;
        s.wait_subscriptions(n).await;
        s
    }

    /// Starts a [`FakeApp`] named `instance` that answers `GET /dapr/subscribe` with
    /// `subscriptions` (a JSON array), then this sidecar in front of it, and waits until the app
    /// is reachable and every one of the subscriptions is active.
    pub async fn start_subscriber(
        self,
        instance: &str,
        subscriptions: serde_json::Value,
    ) -> (FakeApp, Sidecar) {
        let n = subscriptions.as_array().map_or(0, Vec::len);
        self.start_subscriber_expecting(instance, subscriptions, n)
            .await
    }

    /// As [`SidecarBuilder::start_subscriber`], but waits until exactly `active` subscriptions
    /// are active: the app's own that the sidecar accepts and the declared ones in scope.
    pub async fn start_subscriber_expecting(
        self,
        instance: &str,
        subscriptions: serde_json::Value,
        active: usize,
    ) -> (FakeApp, Sidecar) {
        let app = FakeApp::with_subscriptions(instance, subscriptions).await;
        let sidecar = self.app_port(app.port).start_subscribed(active).await;
        (app, sidecar)
    }

    /// Spawns a process that must refuse to start: waits (bounded by `limit`) for it to exit,
    /// asserts that its exit code is `code` and that its log says each of `says`, and returns
    /// the log.
    pub async fn start_fails(self, limit: Duration, code: i32, says: &[&str]) -> String {
        let mut s = self.spawn();
        let exit = s.wait_exit(limit).await;
        let log = s.log();
        assert_eq!(exit, Some(code), "sidecar {} exit code:\n{log}", s.app_id);
        for said in says {
            assert!(log.contains(said), "the log does not say {said:?}:\n{log}");
        }
        log
    }
}
