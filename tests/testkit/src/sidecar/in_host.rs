//! Reaching a sidecar that runs on a LAN host: from inside its namespace, with `curl`, as the
//! sidecar's own user when it has one, so that interception rules installed for that user leave
//! these calls alone.

use super::Sidecar;
use crate::client::Reply;
use crate::netns::Host;

impl Sidecar {
    /// `program` in `host`, as the sidecar's user when it has one.
    pub(super) fn command_in(&self, host: &Host, program: &str) -> tokio::process::Command {
        match self.uid {
            Some(uid) => {
                let mut c = host.tokio_command("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .args(["--clear-groups", "--", program]);
                c
            }
            None => host.tokio_command(program),
        }
    }

    /// One request to `url` with `curl` in `host`, within 30 s; `body`, if any, as JSON.
    pub(super) async fn curl_in(
        &self,
        host: &Host,
        method: &str,
        url: &str,
        body: &str,
    ) -> anyhow::Result<Reply> {
        let mut curl = self.command_in(host, "curl");
        curl.args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            url,
        ]);
        if !body.is_empty() {
            curl.args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
            ]);
        }
        let out = curl.kill_on_drop(true).output().await?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status: u16 = code.trim().parse().unwrap_or(0);
        anyhow::ensure!(
            status != 0,
            "curl in {} failed ({}): {text}",
            host.netns,
            out.status
        );
        Ok(Reply {
            status,
            headers: Default::default(),
            body: body.to_owned().into(),
        })
    }
}
