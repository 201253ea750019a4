//! Dapr's gRPC server metrics for the API listener: one count and one latency per completed
//! call, by RPC and status. A call completes when its response ends: the status is read from
//! the trailers (or the headers of a trailers-only answer), and a response dropped before its end
//! counts as `Canceled`. Calls the allow list or the token refuse are not counted, as in daprd.
//! The method label is a `Dapr` RPC or `unknown`, so the series stay
//! bounded whatever paths callers send.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use prost::Message as _;

use crate::net::http::{Body, BoxError, names};
use crate::telemetry::metrics::{GRPC_SERVER_COMPLETED, GRPC_SERVER_LATENCY};

/// The RPC names of the `Dapr` service in the vendored protos.
static DAPR_RPCS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let set = prost_types::FileDescriptorSet::decode(outrider_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_default();
    set.file
        .iter()
        .filter(|f| f.package() == "dapr.proto.runtime.v1")
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "Dapr")
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect()
});

/// Whether `rpc` is a method of the `Dapr` service.
pub(super) fn is_dapr_rpc(rpc: &str) -> bool {
    DAPR_RPCS.contains(rpc)
}

/// One call being answered. Dropped before its answer ended (the caller went away, or its
/// deadline passed), it counts as `Canceled`.
pub(super) struct Call {
    app_id: String,
    method: String,
    started: Instant,
    /// Not counted yet, and to be counted.
    armed: bool,
}

impl Call {
    pub(super) fn start(app_id: &str, path: &str) -> Self {
        let known = path
            .strip_prefix("/dapr.proto.runtime.v1.Dapr/")
            .is_some_and(is_dapr_rpc);
        let method = if known { path } else { "unknown" };
        Self {
            app_id: app_id.to_owned(),
            method: method.to_owned(),
            started: Instant::now(),
            armed: true,
        }
    }

    /// A call daprd does not count (refused by the allow list or the token).
    pub(super) fn forget(mut self) {
        self.armed = false;
    }

    /// The response, counted when it ends.
    pub(super) fn answered(mut self, rsp: Response<Body>) -> Response<Body> {
        if let Some(code) = grpc_status(rsp.headers()) {
            // A trailers-only answer: complete already.
            self.record(code);
            return rsp;
        }
        rsp.map(|inner| {
            Observed {
                inner,
                call: Some(self),
            }
            .boxed_unsync()
        })
    }

    fn record(&mut self, code: tonic::Code) {
        self.armed = false;
        let labels = [
            ("app_id", self.app_id.clone()),
            ("grpc_server_method", self.method.clone()),
            ("grpc_server_status", code_name(code).to_owned()),
        ];
        GRPC_SERVER_COMPLETED.counter(&labels).increment(1);
        GRPC_SERVER_LATENCY
            .histogram(&labels)
            .record(self.started.elapsed().as_secs_f64() * 1000.0);
    }
}

/// `grpc-status` of a header block, if it has one.
fn grpc_status(h: &HeaderMap) -> Option<tonic::Code> {
    let v = h
        .get(&names::GRPC_STATUS)?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(v))
}

/// A status code as the label's value: its name as daprd reports it (`OK`, `InvalidArgument`).
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "Canceled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// A response body that records its call when it ends.
struct Observed {
    inner: Body,
    call: Option<Call>,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|t| grpc_status(t).unwrap_or(tonic::Code::Unknown)),
            Poll::Ready(Some(Err(_))) => Some(tonic::Code::Unknown),
            // Ended without trailers: not a complete gRPC answer.
            Poll::Ready(None) => Some(tonic::Code::Unknown),
            Poll::Pending => None,
        };
        // Only a frame that ends the call takes it: `take` must not run for the others.
        if let Some(code) = code
            && let Some(mut call) = self.call.take()
        {
            call.record(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.armed {
            self.record(tonic::Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dapr_service_is_read_from_the_descriptors() {
        for rpc in [
            "GetState",
            "InvokeService",
            "SubscribeTopicEventsAlpha1",
            "InvokeActor",
        ] {
            assert!(is_dapr_rpc(rpc), "{rpc}");
        }
        assert!(!is_dapr_rpc("OnInvoke"), "an AppCallback RPC");
        assert!(!is_dapr_rpc("getstate"));
        let known = Call::start("a", "/dapr.proto.runtime.v1.Dapr/GetState");
        let unknown = Call::start("a", "/some.App/Method");
        assert_eq!(
            (known.method.as_str(), unknown.method.as_str()),
            ("/dapr.proto.runtime.v1.Dapr/GetState", "unknown")
        );
        known.forget();
        unknown.forget();
    }
}
