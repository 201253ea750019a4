//! Private backing servers for tests that need one: started from the installed binary on a free
//! loopback port, with their own data directory, and killed when dropped. Tests that inject
//! faults use these, never the machine's shared services.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A private `redis-server`.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts one without persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts one that accepts only TLS, with a certificate from a fresh private CA (so it is
    /// not trusted by default: clients must be told to skip verification).
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("params");
        let cert = params
            .signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))
            .expect("cert");
        let write = |name: &str, pem: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).expect("write pem");
            p.to_string_lossy().into_owned()
        };
        let (crt, k, cacrt) = (
            write("server.crt", cert.pem()),
            write("server.key", key.serialize_pem()),
            write("ca.crt", ca.pem()),
        );
        let port = free_port();
        let args = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            crt,
            "--tls-key-file".into(),
            k,
            "--tls-ca-cert-file".into(),
            cacrt,
            "--tls-auth-clients".into(),
            "no".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ];
        let mut s = Self {
            port,
            child: None,
            dir,
            args,
            tls: true,
        };
        s.spawn();
        s
    }

    /// Starts one with extra configuration arguments (e.g. `--requirepass x`,
    /// `--appendonly yes`).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self {
            port: free_port(),
            child: None,
            dir,
            args: extra.iter().map(|a| (*a).to_owned()).collect(),
            tls: false,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let port_args = if self.tls {
            Vec::new()
        } else {
            vec!["--port".to_owned(), self.port.to_string()]
        };
        let child = Command::new("redis-server")
            .args(&port_args)
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (make deps installs it)");
        self.child = Some(child);
        self.wait_ping();
    }

    /// Waits (bounded) until the server answers PING (or asks for auth, which also means up).
    fn wait_ping(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                if self.tls {
                    return; // listening; it speaks only TLS
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port` for a component's `redisHost`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: an abrupt outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Its data directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL database for one test: the machine's server on 127.0.0.1:5432 when it answers,
/// else a private server started from the installed binaries (as the `postgres` user, since
/// PostgreSQL refuses to run as root). Each test gets its own table name, dropped afterwards.
/// `OUTRIDER_TEST_PRIVATE_POSTGRES=1` forces the private server.
pub struct Postgres {
    /// A libpq connection string.
    pub conn: String,
    /// A table name no other test uses.
    pub table: String,
    private: Option<(Child, tempfile::TempDir)>,
    port: u16,
}

impl Postgres {
    /// Connects to the shared server or starts a private one.
    pub fn start() -> Self {
        let table = format!(
            "state_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                % 1_000_000_000
        );
        let forced = std::env::var_os("OUTRIDER_TEST_PRIVATE_POSTGRES").is_some_and(|v| v == "1");
        if !forced && std::net::TcpStream::connect(("127.0.0.1", 5432)).is_ok() {
            return Self {
                conn: "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into(),
                table,
                private: None,
                port: 5432,
            };
        }
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|rd| {
                rd.flatten()
                    .map(|e| e.path().join("bin"))
                    .find(|b| b.join("initdb").exists())
            })
            .expect(
                "PostgreSQL is neither reachable on 5432 nor installed (make deps installs it)",
            );
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        // setpriv execs the program (runuser would fork, and killing it would orphan postgres).
        let as_postgres = |program: &str| {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(bin.join(program));
            c
        };
        let ok = as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "initdb failed in {}", data.display());
        let port = free_port();
        let child = as_postgres("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private postgres never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            conn: format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
            table,
            private: Some((child, dir)),
            port,
        }
    }

    /// Whether this is a private server.
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        match self.private.take() {
            Some((mut child, _dir)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {
                let _ = Command::new("psql")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                        "-qc",
                    ])
                    .arg(format!("DROP TABLE IF EXISTS {}", self.table))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Whether tests must start private brokers even when the machine's answer
/// (`OUTRIDER_TEST_PRIVATE_BROKERS=1`), to prove the fallback a fresh machine takes.
fn private_forced() -> bool {
    std::env::var_os("OUTRIDER_TEST_PRIVATE_BROKERS").is_some_and(|v| v == "1")
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .is_ok()
}

/// How to start a private broker in its directory.
type Recipe = Box<dyn Fn(&std::path::Path) -> Command + Send>;

/// A broker started from the installed binary in a process group of its own (so that helper
/// processes it forks die with it), with a private directory; killed when dropped, and
/// restartable on the same port and data.
struct PrivateProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    recipe: Recipe,
    port: u16,
    what: &'static str,
    limit: Duration,
}

impl PrivateProcess {
    fn spawn(
        recipe: Recipe,
        dir: tempfile::TempDir,
        port: u16,
        what: &'static str,
        limit: Duration,
    ) -> Self {
        let mut me = Self {
            child: None,
            dir,
            recipe,
            port,
            what,
            limit,
        };
        me.start();
        me
    }

    fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        // Helpers the broker forks are orphaned when its group is killed; as their subreaper,
        // this process can reap them instead of leaving zombies behind.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let what = self.what;
        let child = (self.recipe)(self.dir.path())
            .current_dir(self.dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e} (make deps installs it)"));
        let deadline = Instant::now() + self.limit;
        self.child = Some(child);
        while !listening(self.port) {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if Instant::now() > deadline || exited {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                panic!("private {what} never listened on {}:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the whole group (an abrupt outage), reaping everything.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        if let Ok(pid) = i32::try_from(child.id()) {
            let group = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            // Reap the group's other members (ours through the subreaper flag) until none is left.
            while nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(-pid), None).is_ok() {}
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.start();
    }
}

impl Drop for PrivateProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A NATS server with JetStream: the machine's on 127.0.0.1:4222 when it answers, else a private
/// `nats-server -js` on a free port.
pub struct Nats {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    private: Option<PrivateProcess>,
}

impl Nats {
    /// The shared server, or a private one.
    pub fn start() -> Self {
        if !private_forced() && listening(4222) {
            return Self {
                url: "nats://127.0.0.1:4222".into(),
                private: None,
            };
        }
        Self::private()
    }

    /// Always a private server (for tests that cut it).
    pub fn private() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let recipe: Recipe = Box::new(move |dir| {
            let mut cmd = Command::new("nats-server");
            cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(dir.join("js"));
            cmd
        });
        let p = PrivateProcess::spawn(recipe, dir, port, "nats-server", Duration::from_secs(15));
        Self {
            url: format!("nats://127.0.0.1:{port}"),
            private: Some(p),
        }
    }

    /// Kills a private server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.private
            .as_mut()
            .expect("only a private server can be restarted")
            .restart();
    }
}

/// An MQTT broker: the machine's Mosquitto on 127.0.0.1:1883 when it answers, else a private
/// `mosquitto` on a free port.
pub struct Mosquitto {
    /// `tcp://127.0.0.1:<port>`.
    pub url: String,
    _private: Option<PrivateProcess>,
}

impl Mosquitto {
    /// The shared broker, or a private one.
    pub fn start() -> Self {
        if !private_forced() && listening(1883) {
            return Self {
                url: "tcp://127.0.0.1:1883".into(),
                _private: None,
            };
        }
        Self::private()
    }

    /// Always a private broker (for tests that leave sessions behind or cut it).
    pub fn private() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("mosquitto.conf");
        let recipe: Recipe = Box::new(move |_| {
            let mut cmd = Command::new("mosquitto");
            cmd.arg("-c").arg(&conf);
            cmd
        });
        let p = PrivateProcess::spawn(recipe, dir, port, "mosquitto", Duration::from_secs(15));
        Self {
            url: format!("tcp://127.0.0.1:{port}"),
            _private: Some(p),
        }
    }
}

/// A RabbitMQ broker: the machine's on 127.0.0.1:5672 when it answers, else a private node
/// (its own node name, config, data and ports; no plugins) started from the installed server.
pub struct RabbitMq {
    /// `amqp://guest:guest@127.0.0.1:<port>/`.
    pub url: String,
    _private: Option<PrivateProcess>,
}

impl RabbitMq {
    /// The shared broker, or a private one.
    pub fn start() -> Self {
        if !private_forced() && listening(5672) {
            return Self {
                url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                _private: None,
            };
        }
        Self::private()
    }

    /// Always a private node (for tests that leave durable queues behind or cut it).
    pub fn private() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, dist) = (free_port(), free_port());
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(
            path("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .expect("config");
        std::fs::write(path("rabbitmq-env.conf"), "").expect("env file");
        let recipe: Recipe = Box::new(move |dir| {
            let path = |name: &str| dir.join(name);
            let mut cmd = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
            // Every setting is our own: the machine's env file and config name its shared node.
            cmd.env("HOME", dir)
                .env("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf"))
                .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
                .env(
                    "RABBITMQ_NODENAME",
                    format!("outrider-test-{port}@localhost"),
                )
                .env("RABBITMQ_DIST_PORT", dist.to_string())
                .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
                .env("RABBITMQ_LOG_BASE", path("log"))
                .env("ERL_EPMD_ADDRESS", "127.0.0.1");
            cmd
        });
        let p = PrivateProcess::spawn(
            recipe,
            dir,
            port,
            "rabbitmq-server",
            Duration::from_secs(60),
        );
        Self {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            _private: Some(p),
        }
    }
}
