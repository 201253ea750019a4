//! A MariaDB database per test: the machine's server when it answers, else a private one, with
//! a database (schema) of the test's own, dropped afterwards.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{PrivateProcess, Recipe};
use crate::free_port;

/// A MariaDB server for one test: the machine's on 127.0.0.1:3306 (user root, no password) when
/// it answers, else a private server started from the installed binaries. Each test gets a
/// database name of its own, dropped afterwards. `OUTRIDER_TEST_PRIVATE_MARIADB=1` forces the
/// private server.
pub struct MariaDb {
    /// The server in daprd's connection string form, without a database:
    /// `root@tcp(127.0.0.1:<port>)/`.
    pub dsn: String,
    /// A database name no other test uses (not created: the code under test creates it).
    pub database: String,
    /// The port on 127.0.0.1.
    pub port: u16,
    private: Option<PrivateProcess>,
}

impl MariaDb {
    /// Uses the shared server or starts a private one.
    pub fn start() -> Self {
        let database = crate::unique("db").replace('-', "_");
        let forced = std::env::var_os("OUTRIDER_TEST_PRIVATE_MARIADB").is_some_and(|v| v == "1");
        if !forced && super::listening(3306) {
            return Self {
                dsn: "root@tcp(127.0.0.1:3306)/".into(),
                database,
                port: 3306,
                private: None,
            };
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let ok = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .args(["--auth-root-authentication-method=normal"])
            .arg(format!("--datadir={}", data.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "MariaDB is neither reachable on 3306 nor installable in {} (make deps installs it)",
            data.display()
        );
        let port = free_port();
        let recipe: Recipe = Box::new(move |dir| {
            let mut cmd = Command::new("mariadbd");
            cmd.args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
                .arg(format!("--datadir={}", dir.join("data").display()))
                .arg(format!("--port={port}"))
                .arg(format!("--socket={}", dir.join("sock").display()))
                .args(["--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"]);
            cmd
        });
        let server = PrivateProcess::spawn(recipe, dir, port, "mariadbd", Duration::from_secs(60));
        Self {
            dsn: format!("root@tcp(127.0.0.1:{port})/"),
            database,
            port,
            private: Some(server),
        }
    }

    /// Runs `sql` with the `mariadb` client, as root; its output.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
                "-u",
                "root",
                "-N",
                "-e",
            ])
            .arg(sql)
            .output()
            .expect("running the mariadb client");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // A private server stops with its `PrivateProcess`.
        if self.private.is_none() {
            let _ = Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e"])
                .arg(format!("DROP DATABASE IF EXISTS `{}`", self.database))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
