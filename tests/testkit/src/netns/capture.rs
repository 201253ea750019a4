//! What crosses a host's interface, captured with `tcpdump` into a pcap file, for tests that
//! check what an observer of the LAN sees.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::{Background, Host};

impl Host {
    /// Starts capturing every packet on `iface` of this host (whole packets, written as they
    /// come) and waits until `tcpdump` says it is listening.
    pub async fn capture(&self, iface: &str) -> Capture {
        let dir = tempfile::tempdir().expect("capture dir");
        let file = dir.path().join("capture.pcap");
        let path = file.to_string_lossy().into_owned();
        // --immediate-mode: packets are handed over as they come; otherwise those of the last
        // buffer block are lost when tcpdump is stopped. -Z root: it keeps writing as root (the
        // file lives in a directory only root may enter).
        let mut tcpdump = self.background(
            "tcpdump",
            &[
                "-i",
                iface,
                "-nn",
                "-U",
                "--immediate-mode",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
                &path,
            ],
        );
        tcpdump.wait_log("listening on").await;
        Capture {
            tcpdump,
            file,
            _dir: dir,
        }
    }
}

/// A running or finished packet capture ([`Host::capture`]).
pub struct Capture {
    tcpdump: Background,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    /// Stops capturing (`tcpdump` flushes what it has) and returns how many bytes the file holds.
    pub async fn stop(&mut self) -> u64 {
        self.tcpdump.stop().await;
        std::fs::metadata(&self.file).map_or(0, |m| m.len())
    }

    /// The pcap file's raw bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.file).expect("reading the capture")
    }

    /// Whether `needle` appears anywhere in the captured bytes (headers and payloads alike).
    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.bytes().windows(needle.len()).any(|w| w == needle)
    }

    /// `tcpdump -r <file> -nn <args…>` (options, then a filter expression): what it prints on
    /// its standard output, one line per packet unless `args` ask for more; within 60 s.
    pub async fn read(&self, args: &[&str]) -> String {
        let mut tcpdump = tokio::process::Command::new("tcpdump");
        tcpdump
            .arg("-r")
            .arg(&self.file)
            .arg("-nn")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), tcpdump.output())
            .await
            .expect("tcpdump -r ran over 60 s")
            .expect("running tcpdump -r");
        assert!(
            out.status.success(),
            "tcpdump -r {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
