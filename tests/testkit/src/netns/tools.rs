//! Common clients and servers on a [`Host`], run as root: `curl`, Python snippets, a plain HTTP
//! server, a DNS server.

use std::time::Duration;

use super::{Background, Host};

impl Host {
    /// A dnsmasq on this host's LAN address, answering for `cluster.local` only from `records`
    /// (dnsmasq options such as `--host-record=b.default.svc.cluster.local,10.77.0.2`), every
    /// record's TTL 1 s; killed when dropped.
    pub fn dnsmasq(&self, records: &[String]) -> tokio::process::Child {
        // `ip netns exec` starts whether or not the program exists: look for it first.
        let path = std::env::var_os("PATH").unwrap_or_default();
        assert!(
            std::env::split_paths(&path).any(|d| d.join("dnsmasq").is_file()),
            "no dnsmasq on PATH (make deps installs dnsmasq-base)"
        );
        let mut cmd = self.tokio_command("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--local=/cluster.local/",
            "--local-ttl=1",
            "--port=53",
        ])
        .arg(format!("--listen-address={}", self.addr))
        .args(records)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
        cmd.spawn()
            .expect("dnsmasq (make deps installs dnsmasq-base)")
    }

    /// `curl <args…>` in this host as root, proxies from the environment ignored, within 30 s:
    /// the status (0 when no answer came) and the body. `args` may override the 20 s
    /// `--max-time` it is given.
    pub async fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut argv = vec!["-s", "--noproxy", "*", "--max-time", "20"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["-w", "\n%{http_code}"]);
        let out = self.output("curl", &argv, Duration::from_secs(30)).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// `python3 -c <script> <args…>` in this host as root, within `limit`: what it printed on
    /// its standard output. Panics, with its error output, if it fails.
    pub async fn python(&self, script: &str, args: &[&str], limit: Duration) -> String {
        let argv: Vec<&str> = ["-c", script].iter().chain(args).copied().collect();
        let out = self.output("python3", &argv, limit).await;
        assert!(
            out.status.success(),
            "python in {}: {}\n{}",
            self.netns,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends `payload` (Python escapes such as `\r\n` allowed) to `host:port` from this host
    /// as root, and reads what comes back until the peer closes or stays silent for 5 s: the
    /// bytes (as Latin-1 text), and whether the peer closed (a reset counts as closed).
    pub async fn exchange(&self, host: &str, port: u16, payload: &str) -> (String, bool) {
        let port = port.to_string();
        let out = self
            .python(EXCHANGE, &[host, &port, payload], Duration::from_secs(30))
            .await;
        let (state, data) = out.split_once('\n').unwrap_or((&out, ""));
        (data.to_owned(), state == "CLOSED")
    }

    /// `python3 -m http.server <port>` in this host as root, on all its addresses, serving a
    /// listing of `/`; returned once it listens. Its log has a line per request it handled.
    pub async fn web_server(&self, port: u16) -> Background {
        let port = port.to_string();
        let mut server = self.background(
            "python3",
            &[
                "-u",
                "-m",
                "http.server",
                &port,
                "--bind",
                "0.0.0.0",
                "--directory",
                "/",
            ],
        );
        server.wait_log("Serving HTTP").await;
        server
    }
}

/// Connects to argv[1]:argv[2], sends argv[3] (with its escapes decoded), then prints `CLOSED`
/// or `OPEN` and everything it received.
const EXCHANGE: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(sys.argv[3].encode().decode("unicode_escape").encode("latin-1"))
data, state = b"", "OPEN"
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            state = "CLOSED"
            break
        data += chunk
except socket.timeout:
    pass
except ConnectionResetError:
    state = "CLOSED"
sys.stdout.write(state + "\n" + data.decode("latin-1"))
"#;
