//! A PostgreSQL database per test: the machine's server when it answers, else a private one,
//! with a table name of the test's own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

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

    /// SQL creating a configuration table named after the test's table, as daprd's component
    /// documents it (`KEY`, `VALUE`, `VERSION`, `METADATA JSON`), with a trigger that
    /// `pg_notify`s the channel of the same name with `{"table", "action", "data": <row>}`, and
    /// a function `<table>_notify` that the test drops.
    pub fn configuration_table_sql(&self) -> String {
        let t = &self.table;
        format!(
            "CREATE TABLE {t} (KEY VARCHAR NOT NULL, VALUE VARCHAR NOT NULL, \
               VERSION VARCHAR NOT NULL, METADATA JSON);
             CREATE FUNCTION {t}_notify() RETURNS TRIGGER AS $$
             DECLARE data json; notification json;
             BEGIN
               IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
               notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
               PERFORM pg_notify('{t}', notification::text);
               RETURN NULL;
             END; $$ LANGUAGE plpgsql;
             CREATE TRIGGER {t}_config AFTER INSERT OR UPDATE OR DELETE ON {t}
               FOR EACH ROW EXECUTE PROCEDURE {t}_notify();"
        )
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
