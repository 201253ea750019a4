//! Programs run on a [`Host`]: to completion with a bound ([`Host::output`]), or in the background
//! with their output in a log the test can wait on ([`Host::background`]).

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Child;

use super::Host;

impl Host {
    /// Runs `program` with `args` in this host, as root, with no input, and waits for it to exit,
    /// at most `limit`; panics if it cannot start or takes longer. Its exit status is the
    /// caller's to judge.
    pub async fn output(&self, program: &str, args: &[&str], limit: Duration) -> Output {
        self.output_fed(program, args, &[], limit).await
    }

    /// As [`Host::output`], with `input` written to the program's standard input (then closed).
    pub async fn output_fed(
        &self,
        program: &str,
        args: &[&str],
        input: &[u8],
        limit: Duration,
    ) -> Output {
        let mut cmd = self.tokio_command(program);
        cmd.args(args)
            .stdin(if input.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program} in {}: {e}", self.netns));
        // Fed from a task of its own: the program may fill its output pipes before it has read
        // all of its input.
        let feeder = child.stdin.take().map(|mut stdin| {
            let input = input.to_vec();
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            })
        });
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{program} {args:?} in {} ran over {limit:?}", self.netns))
            .unwrap_or_else(|e| panic!("waiting for {program} in {}: {e}", self.netns));
        if let Some(f) = feeder {
            let _ = f.await;
        }
        out
    }

    /// Starts `program` with `args` in this host, as root, in the background: its standard
    /// output and error go to a log file ([`Background::log`]). It is killed when dropped.
    pub fn background(&self, program: &str, args: &[&str]) -> Background {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = self
            .tokio_command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program} in {}: {e}", self.netns));
        Background {
            child,
            log,
            what: format!("{program} in {}", self.netns),
        }
    }
}

/// A program running in the background on a [`Host`]; killed when dropped, its log printed then
/// if the test is failing.
pub struct Background {
    child: Child,
    log: tempfile::NamedTempFile,
    what: String,
}

impl Background {
    /// Everything it printed so far (standard output and error, interleaved).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The process id (that of the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("already reaped")
    }

    /// Waits (bounded, 30 s) until its log contains `says`; panics with the log if it exits or
    /// the time runs out first.
    pub async fn wait_log(&mut self, says: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.log().contains(says) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before saying {says:?}:\n{}",
                    self.what,
                    self.log()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never said {says:?}:\n{}",
                self.what,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks it to stop (SIGTERM) and waits for it, at most 10 s, then kills it (SIGKILL).
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}\n----- end -----",
                self.what,
                self.log()
            );
        }
    }
}
