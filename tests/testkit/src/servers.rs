//! Private backing servers for tests that need one: started from the installed binary on a free
//! loopback port, with their own data directory, and killed when dropped. Tests that inject
//! faults use these, never the machine's shared services.
mod brokers;
mod mariadb;
mod postgres;
mod redis;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use brokers::{Mosquitto, Nats, RabbitMq};
pub use mariadb::MariaDb;
pub use postgres::Postgres;
pub use redis::RedisServer;

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
