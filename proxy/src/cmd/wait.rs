//! `outrider run --wait`, as daprd's `--wait`: polls the sidecar on `--dapr-http-port` until it
//! is ready for outbound calls (`GET /v1.0/healthz/outbound` answers 2xx), for at most a minute,
//! then exits 0 either way (a script then starts the app).

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long to wait in all, for one request, and between requests (daprd's figures).
const TOTAL: Duration = Duration::from_secs(60);
const REQUEST: Duration = Duration::from_millis(500);
const PERIOD: Duration = Duration::from_millis(100);

pub(crate) async fn run(port: u16) -> ExitCode {
    let url = format!("http://localhost:{port}/v1.0/healthz/outbound");
    eprintln!("waiting for the sidecar to be ready for outbound calls (at most 60 s): {url}");
    let deadline = tokio::time::Instant::now() + TOTAL;
    let mut last_said = tokio::time::Instant::now();
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(REQUEST, probe(port)).await {
            Ok(Ok(())) => {
                eprintln!("the sidecar is ready for outbound calls");
                return ExitCode::SUCCESS;
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {REQUEST:?}"),
        }
        if last_said.elapsed() >= Duration::from_secs(1) {
            eprintln!("not ready yet: {last}");
            last_said = tokio::time::Instant::now();
        }
        tokio::time::sleep(PERIOD).await;
    }
    eprintln!("gave up waiting for the sidecar to be ready; last error: {last}");
    ExitCode::SUCCESS
}

/// One `GET`: `Ok` for a 2xx status.
async fn probe(port: u16) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(
        b"GET /v1.0/healthz/outbound HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.map_err(|e| e.to_string())?;
    match &head[..] {
        [b'H', b'T', b'T', b'P', b'/', _, b'.', _, b' ', b'2', _, _] => Ok(()),
        _ => Err(format!(
            "answered {:?}",
            String::from_utf8_lossy(&head[9..]).trim()
        )),
    }
}
