//! The benchmarks' app: answers every request at once (or after a fixed delay) with the
//! request's body, so a 1 KB POST comes back as 1 KB. `GET /dapr/subscribe` answers `[]`, so a
//! sidecar in front of it finds no subscriptions. HTTP/1.1 and h2c on one port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Serves on `listener` until the task is dropped; each answer waits `delay` first.
pub async fn serve(listener: TcpListener, delay: Duration) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(req, delay));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves.
pub async fn run(addr: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, delay).await;
    Ok(())
}

async fn answer(
    req: Request<Incoming>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let subscribe = req.uri().path() == "/dapr/subscribe";
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        // A body that did not arrive whole must not pass for an echo.
        let mut rsp = Response::new(Full::new(Bytes::from_static(b"incomplete request body\n")));
        *rsp.status_mut() = http::StatusCode::BAD_REQUEST;
        return Ok(rsp);
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (body, ctype) = if subscribe {
        (Bytes::from_static(b"[]"), "application/json")
    } else {
        (body, "application/octet-stream")
    };
    let mut rsp = Response::new(Full::new(body));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    Ok(rsp)
}
