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
}

impl RedisServer {
    /// Starts one without persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts one with extra configuration arguments (e.g. `--requirepass x`,
    /// `--appendonly yes`).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self { port: free_port(), child: None, dir, args: extra.iter().map(|a| (*a).to_owned()).collect() };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
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
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server on port {} never answered", self.port);
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
