//! One connection to the server under load and one request over it: HTTP/1.1, h2c, or a Redis
//! command over RESP. What is sent and when, and how it is counted, is [`super`]'s business.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Op, Plan, REQUEST_TIMEOUT};

/// A request's outcome, or failure after [`REQUEST_TIMEOUT`].
pub(super) async fn timed(work: impl Future<Output = bool>) -> bool {
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .unwrap_or(false)
}

/// A connection to the server.
pub(super) enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Redis(BufReader<TcpStream>),
    /// Failed; opened again before the next request.
    Broken,
}
impl Conn {
    /// Connects to `addr` and speaks what `op` needs.
    pub(super) async fn open(addr: SocketAddr, op: &Op) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
        tcp.set_nodelay(true)?;
        Ok(match op {
            Op::Http { http2: false, .. } => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                Conn::H1(sender)
            }
            Op::Http { http2: true, .. } => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                        .await?;
                tokio::spawn(conn);
                Conn::H2(sender)
            }
            Op::RedisGet { .. } | Op::RedisSet { .. } | Op::RedisXadd { .. } => {
                Conn::Redis(BufReader::new(tcp))
            }
        })
    }
    /// Whether it must be opened again before the next request.
    pub(super) fn broken(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
            Conn::Redis(_) => false,
            Conn::Broken => true,
        }
    }
    /// Whether requests go out on streams of their own.
    pub(super) fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }
}
/// One request and its whole answer; whether it succeeded.
/// `Err`: the connection cannot be used again (a Redis stream out of step). HTTP connections
/// tell by themselves whether they closed.
pub(super) async fn once(conn: &mut Conn, plan: &Plan, body: Bytes) -> Result<bool, ()> {
    match conn {
        Conn::Redis(stream) => redis_once(stream, &plan.op).await.map_err(|_| ()),
        _ => Ok(http_once(conn, plan, body).await),
    }
}

pub(super) async fn http_once(conn: &mut Conn, plan: &Plan, body: Bytes) -> bool {
    let Op::Http {
        method,
        path,
        headers,
        ids,
        ..
    } = &plan.op
    else {
        return false;
    };
    let filled;
    let path = match ids {
        Some(ids) => {
            filled = ids.fill(path);
            &filled
        }
        None => path,
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method.clone();
    *req.headers_mut() = headers.clone();
    let result = match conn {
        Conn::H1(sender) => {
            *req.uri_mut() = match path.parse() {
                Ok(u) => u,
                Err(_) => return false,
            };
            req.headers_mut()
                .insert(http::header::HOST, http::HeaderValue::from_static("bench"));
            if sender.ready().await.is_err() {
                return false;
            }
            sender.send_request(req).await
        }
        Conn::H2(sender) => {
            *req.uri_mut() = match format!("http://bench{path}").parse() {
                Ok(u) => u,
                Err(_) => return false,
            };
            if sender.ready().await.is_err() {
                return false;
            }
            sender.send_request(req).await
        }
        Conn::Redis(_) | Conn::Broken => return false,
    };
    match result {
        Ok(rsp) => {
            let ok = rsp.status().as_u16() < 400;
            // A gRPC answer is 200 whatever happened: its status is in `grpc-status`, in the
            // headers of a trailers-only answer or else in the trailers.
            let grpc = rsp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let early = rsp.headers().get("grpc-status").cloned();
            match rsp.into_body().collect().await {
                Ok(collected) if grpc => {
                    let status = early.or_else(|| {
                        collected
                            .trailers()
                            .and_then(|t| t.get("grpc-status"))
                            .cloned()
                    });
                    ok && status.is_some_and(|s| s.as_bytes() == b"0")
                }
                Ok(_) => ok,
                Err(_) => false,
            }
        }
        Err(_) => false,
    }
}

/// The largest bulk reply read (a bigger one means the stream is out of step).
const MAX_BULK: usize = 64 * 1024 * 1024;

/// Writes one command and reads its reply. `Ok(true)`: the expected answer (`+OK`, or a value
/// for GET); `Ok(false)`: a well-formed answer that is a failure (an error reply, or nil for
/// GET), the stream still in step; `Err`: the stream cannot be trusted any more.
async fn redis_once(stream: &mut BufReader<TcpStream>, op: &Op) -> anyhow::Result<bool> {
    stream.get_mut().write_all(&redis_command(op)?).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    anyhow::ensure!(line.ends_with("\r\n"), "truncated reply {line:?}");
    match line.as_bytes().first() {
        Some(b'+') => Ok(true),
        Some(b'-') => Ok(false),
        Some(b'$') => {
            let len: i64 = line[1..].trim().parse()?;
            if len < 0 {
                // Nil: the key is missing, which a GET cell must not count as a success.
                return Ok(false);
            }
            let len = usize::try_from(len)?;
            anyhow::ensure!(len <= MAX_BULK, "a {len}-byte reply");
            let mut buf = vec![0; len + 2];
            stream.read_exact(&mut buf).await?;
            anyhow::ensure!(buf.ends_with(b"\r\n"), "a bulk reply without its CRLF");
            // A value for GET, the new entry's id for XADD.
            Ok(matches!(op, Op::RedisGet { .. } | Op::RedisXadd { .. }))
        }
        _ => anyhow::bail!("unexpected reply {line:?}"),
    }
}

/// `op` as a RESP command.
fn redis_command(op: &Op) -> anyhow::Result<Vec<u8>> {
    let mut cmd = Vec::with_capacity(64);
    let arg = |cmd: &mut Vec<u8>, a: &[u8]| {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a);
        cmd.extend_from_slice(b"\r\n");
    };
    match op {
        Op::RedisGet { key } => {
            cmd.extend_from_slice(b"*2\r\n");
            arg(&mut cmd, b"GET");
            arg(&mut cmd, key.as_bytes());
        }
        Op::RedisSet { key, value } => {
            cmd.extend_from_slice(b"*3\r\n");
            arg(&mut cmd, b"SET");
            arg(&mut cmd, key.as_bytes());
            arg(&mut cmd, value);
        }
        Op::RedisXadd { stream, value } => {
            cmd.extend_from_slice(b"*5\r\n");
            arg(&mut cmd, b"XADD");
            arg(&mut cmd, stream.as_bytes());
            arg(&mut cmd, b"*");
            arg(&mut cmd, b"data");
            arg(&mut cmd, value);
        }
        Op::Http { .. } => anyhow::bail!("not a Redis operation"),
    }
    Ok(cmd)
}
