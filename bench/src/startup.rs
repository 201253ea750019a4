//! `outrider-bench startup`: how long a command takes to start serving.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

/// Milliseconds from spawning `cmd` until `url` answers 2xx (polled every millisecond).
pub async fn startup(url: &str, cmd: &[String]) -> anyhow::Result<f64> {
    let uri: http::Uri = url.parse()?;
    let addr = format!(
        "{}:{}",
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(80)
    );
    let start = std::time::Instant::now();
    let mut child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", cmd[0]))?;
    let ready = loop {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "{url} did not answer within 30 s"
        );
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{} exited with {status} before {url} answered", cmd[0]);
        }
        if answers(&addr, &uri).await {
            break start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(ready.as_secs_f64() * 1000.0)
}

async fn answers(addr: &str, uri: &http::Uri) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, addr)
        .body(http_body_util::Empty::<Bytes>::new());
    match req {
        Ok(req) => sender
            .send_request(req)
            .await
            .is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    }
}
