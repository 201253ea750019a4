//! The app channel to an app that speaks gRPC: HTTP/2 without TLS (`--app-protocol grpc`) or
//! over TLS (`grpcs`: the app's certificate is not verified, as daprd does), and Dapr's
//! `AppCallback` service.
//!
//! What the sidecar sends an app is an HTTP request wherever it comes from; this module turns
//! each into what a gRPC app expects. A gRPC call proxied to the app (a `application/grpc` body)
//! goes as it is. A subscription query ([`SubscriptionsQuery`]) becomes
//! `ListTopicSubscriptions`, answered in the JSON form of `/dapr/subscribe`; a delivery
//! ([`TopicDelivery`]) becomes `OnTopicEvent`, answered as `{"status": …}`; input bindings
//! become `ListInputBindings` and `OnBindingEvent` (`bindings`); any other request is
//! an invocation and becomes `OnInvoke` (path = method, verb and query in the HTTP extension,
//! headers as metadata). The markers are request extensions the sidecar sets itself, and a
//! proxied call for the `AppCallback` services is refused: nothing a caller sends can turn its
//! request into a topic event.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use outrider_proto::common::v1 as common;
use outrider_proto::runtime::v1 as rt;
use rt::app_callback_alpha_client::AppCallbackAlphaClient;
use rt::app_callback_client::AppCallbackClient;
use rt::app_callback_health_check_client::AppCallbackHealthCheckClient;
use serde_json::{Value, json};
use tonic::metadata::MetadataMap;

use crate::errors::InvokeError;
use crate::net::http::{Body, boxed, collect_within, full, is_grpc};
use crate::to_app::bindings::{BindingDelivery, InputBindingsQuery};

mod bindings;
pub(crate) use bindings::JobDelivery;
pub(crate) mod translate;

pub(crate) use translate::topic_event;
use translate::{bulk_request, http_status, route_of, subscriptions_json};

/// Marks the sidecar's own request for the app's subscriptions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SubscriptionsQuery;

/// Marks the sidecar's own delivery of a topic event.
#[derive(Clone, Debug)]
pub(crate) struct TopicDelivery {
    pub(crate) pubsub: String,
    pub(crate) topic: String,
}

/// Marks the sidecar's own delivery of a batch of topic events (bulk subscriptions).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BulkDelivery;

/// HTTP/2 to the app, over TLS with `grpcs`.
type H2<B> = Client<HttpsConnector<HttpConnector>, B>;
type Callback = AppCallbackClient<H2<tonic::body::Body>>;

/// The clients to a gRPC app: one for proxied calls, one for `AppCallback`.
#[derive(Clone)]
pub(crate) struct GrpcApp {
    raw: H2<Body>,
    callback: Callback,
    /// `AppCallbackAlpha`, for apps that take batches only there.
    alpha: AppCallbackAlphaClient<H2<tonic::body::Body>>,
    /// `AppCallbackHealthCheck`, for health probes.
    health: AppCallbackHealthCheckClient<H2<tonic::body::Body>>,
    /// `https` with `grpcs`, else `http`.
    scheme: http::uri::Scheme,
    app_id: std::sync::Arc<str>,
    /// `--max-body-size`: every message each way, and every body read whole.
    limit: usize,
}

/// Counts one `AppCallback` call under Dapr's gRPC client metrics.
fn counted<T>(app_id: &str, rpc: &str, started: std::time::Instant, r: &Result<T, tonic::Status>) {
    use crate::telemetry::metrics::{GRPC_CLIENT_COMPLETED, GRPC_CLIENT_LATENCY};
    let code = r
        .as_ref()
        .map_or_else(tonic::Status::code, |_| tonic::Code::Ok);
    let labels = [
        ("app_id", app_id.to_owned()),
        (
            "grpc_client_method",
            format!("/dapr.proto.runtime.v1.AppCallback/{rpc}"),
        ),
        (
            "grpc_client_status",
            crate::api::grpc_code_name(code).to_owned(),
        ),
    ];
    GRPC_CLIENT_COMPLETED.counter(&labels).increment(1);
    GRPC_CLIENT_LATENCY
        .histogram(&labels)
        .record(started.elapsed().as_secs_f64() * 1000.0);
}

fn h2_client<B>(connector: HttpsConnector<HttpConnector>) -> H2<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .http2_only(true)
        .build(connector)
}

impl GrpcApp {
    /// Clients to the app at `authority` (`host:port`), speaking `protocol` (`grpc` or `grpcs`).
    pub(crate) fn new(
        app_id: &str,
        authority: &str,
        max_body: u64,
        protocol: super::AppProtocol,
    ) -> anyhow::Result<Self> {
        let scheme = match protocol {
            super::AppProtocol::Grpcs => http::uri::Scheme::HTTPS,
            _ => http::uri::Scheme::HTTP,
        };
        let origin: http::Uri = format!("{scheme}://{authority}").parse()?;
        let connector = super::web::app_connector(protocol, &authority.parse()?)?
            .https_or_http()
            .enable_http2()
            .wrap_connector(super::web::plain_connector());
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        Ok(Self {
            raw: h2_client(connector.clone()),
            callback: AppCallbackClient::with_origin(h2_client(connector.clone()), origin.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            alpha: AppCallbackAlphaClient::with_origin(
                h2_client(connector.clone()),
                origin.clone(),
            )
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
            health: AppCallbackHealthCheckClient::with_origin(h2_client(connector), origin),
            scheme,
            app_id: app_id.into(),
            limit,
        })
    }

    /// The scheme of requests to the app: `https` with `grpcs`.
    pub(crate) fn scheme(&self) -> http::uri::Scheme {
        self.scheme.clone()
    }

    /// One `AppCallbackHealthCheck/HealthCheck`, as daprd probes a gRPC app.
    pub(crate) async fn health_check(&self) -> Result<(), tonic::Status> {
        let mut c = self.health.clone();
        c.health_check(tonic::Request::new(())).await.map(|_| ())
    }

    /// Sends `req` (its URI already absolute, its headers treated) the way the app takes it.
    pub(crate) async fn call(&self, req: Request<Body>) -> Result<Response<Body>, InvokeError> {
        let failed = |e: tonic::Status| InvokeError::AppChannel(Box::new(e));
        if req.extensions().get::<SubscriptionsQuery>().is_some() {
            let mut c = self.callback.clone();
            let started = std::time::Instant::now();
            let listed = c.list_topic_subscriptions(tonic::Request::new(())).await;
            counted(&self.app_id, "ListTopicSubscriptions", started, &listed);
            return match listed {
                Ok(rsp) => Ok(json_answer(
                    StatusCode::OK,
                    &subscriptions_json(rsp.into_inner()),
                )),
                // An app that subscribes to nothing may not implement it.
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    Ok(json_answer(StatusCode::NOT_FOUND, &json!([])))
                }
                Err(s) => Err(failed(s)),
            };
        }
        if let Some(delivery) = req.extensions().get::<TopicDelivery>().cloned() {
            return self.deliver(req, &delivery).await;
        }
        if let Some(delivery) = req.extensions().get::<BindingDelivery>().cloned() {
            return self.binding_event(req, &delivery).await;
        }
        if let Some(job) = req.extensions().get::<JobDelivery>().cloned() {
            return self.job_event(&job).await;
        }
        if req.extensions().get::<InputBindingsQuery>().is_some() {
            return self.input_bindings().await;
        }
        if req.extensions().get::<BulkDelivery>().is_some() {
            return self.deliver_bulk(req).await;
        }
        if is_grpc(req.headers()) {
            // The sidecar's own calls to the app are not a caller's to make: a topic event or an
            // invocation forged that way would reach the app as if from its sidecar.
            if req
                .uri()
                .path()
                .starts_with("/dapr.proto.runtime.v1.AppCallback")
            {
                let refused = tonic::Status::permission_denied(format!(
                    "{} is the sidecar's own call to its app",
                    req.uri().path()
                ));
                return Ok(refused.into_http());
            }
            let mut req = req;
            *req.version_mut() = http::Version::HTTP_2;
            // Hop-by-hop for HTTP, but gRPC servers may insist on it.
            req.headers_mut()
                .insert(header::TE, HeaderValue::from_static("trailers"));
            let rsp = self
                .raw
                .request(req)
                .await
                .map_err(|e| InvokeError::AppChannel(Box::new(e)))?;
            return Ok(rsp.map(boxed));
        }
        self.invoke(req).await
    }

    /// A topic event as `OnTopicEvent`: its answer becomes the status the delivery reads.
    async fn deliver(
        &self,
        req: Request<Body>,
        delivery: &TopicDelivery,
    ) -> Result<Response<Body>, InvokeError> {
        let path = route_of(req.uri().path());
        let (parts, body) = req.into_parts();
        let bytes = read(body, self.limit).await?;
        let event = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
        let Ok(event) = topic_event(event, &delivery.pubsub, &delivery.topic, &path) else {
            return Ok(json_answer(StatusCode::OK, &json!({"status": "DROP"})));
        };
        let mut call = tonic::Request::new(event);
        *call.metadata_mut() = metadata(&parts.headers);
        let mut c = self.callback.clone();
        let started = std::time::Instant::now();
        let answered = c.on_topic_event(call).await;
        counted(&self.app_id, "OnTopicEvent", started, &answered);
        let status = match answered {
            Ok(rsp) => {
                use rt::topic_event_response::TopicEventResponseStatus as S;
                match S::try_from(rsp.into_inner().status) {
                    Ok(S::Success) => "SUCCESS",
                    Ok(S::Drop) => "DROP",
                    Ok(S::Retry) | Err(_) => "RETRY",
                }
            }
            // No handler for the topic: dropped, as daprd does; any other failure is retried.
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                return Ok(json_answer(
                    StatusCode::NOT_FOUND,
                    &json!({"message": s.message()}),
                ));
            }
            Err(s) => {
                tracing::info!(topic = %delivery.topic, code = ?s.code(), message = s.message(), "the app failed a topic event");
                return Ok(json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"message": s.message()}),
                ));
            }
        };
        Ok(json_answer(StatusCode::OK, &json!({"status": status})))
    }

    /// A batch as `OnBulkTopicEvent` (`OnBulkTopicEventAlpha1` for an app without it): the
    /// answer's statuses become the `{"statuses": […]}` the batch reads.
    async fn deliver_bulk(&self, req: Request<Body>) -> Result<Response<Body>, InvokeError> {
        let path = route_of(req.uri().path());
        let (parts, body) = req.into_parts();
        let bytes = read(body, self.limit).await?;
        let batch = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
        let request = bulk_request(&batch, path);
        let topic = request.topic.clone();
        let mut c = self.callback.clone();
        let started = std::time::Instant::now();
        let mut call = tonic::Request::new(request.clone());
        *call.metadata_mut() = metadata(&parts.headers);
        let mut answered = c.on_bulk_topic_event(call).await;
        counted(&self.app_id, "OnBulkTopicEvent", started, &answered);
        if answered
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::Unimplemented)
        {
            let mut call = tonic::Request::new(request);
            *call.metadata_mut() = metadata(&parts.headers);
            let mut alpha = self.alpha.clone();
            let started = std::time::Instant::now();
            // Deprecated in the protos, and still the only one the JS SDK's server has.
            #[allow(deprecated)]
            let alpha_answer = alpha.on_bulk_topic_event_alpha1(call).await;
            answered = alpha_answer;
            counted(&self.app_id, "OnBulkTopicEventAlpha1", started, &answered);
        }
        match answered {
            Ok(rsp) => {
                use rt::topic_event_response::TopicEventResponseStatus as S;
                let statuses: Vec<Value> = rsp
                    .into_inner()
                    .statuses
                    .into_iter()
                    .map(|e| {
                        let status = match S::try_from(e.status) {
                            Ok(S::Success) => "SUCCESS",
                            Ok(S::Drop) => "DROP",
                            Ok(S::Retry) | Err(_) => "RETRY",
                        };
                        json!({"entryId": e.entry_id, "status": status})
                    })
                    .collect();
                Ok(json_answer(StatusCode::OK, &json!({"statuses": statuses})))
            }
            Err(s) if s.code() == tonic::Code::Unimplemented => Ok(json_answer(
                StatusCode::NOT_FOUND,
                &json!({"message": s.message()}),
            )),
            Err(s) => {
                tracing::info!(topic = %topic, code = ?s.code(), message = s.message(), "the app failed a batch of topic events");
                Ok(json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"message": s.message()}),
                ))
            }
        }
    }

    /// An invocation as `OnInvoke`; a failed call answers the HTTP status of its code.
    async fn invoke(&self, req: Request<Body>) -> Result<Response<Body>, InvokeError> {
        use common::http_extension::Verb;
        let verb = match *req.method() {
            http::Method::GET => Verb::Get,
            http::Method::HEAD => Verb::Head,
            http::Method::POST => Verb::Post,
            http::Method::PUT => Verb::Put,
            http::Method::DELETE => Verb::Delete,
            http::Method::OPTIONS => Verb::Options,
            http::Method::TRACE => Verb::Trace,
            http::Method::PATCH => Verb::Patch,
            _ => Verb::None,
        };
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let querystring = req.uri().query().unwrap_or_default().to_owned();
        let (parts, body) = req.into_parts();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let data = read(body, self.limit).await?;
        let mut call = tonic::Request::new(common::InvokeRequest {
            method,
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: data.to_vec(),
            }),
            content_type,
            http_extension: Some(common::HttpExtension {
                verb: verb as i32,
                querystring,
            }),
        });
        *call.metadata_mut() = metadata(&parts.headers);
        let mut c = self.callback.clone();
        let started = std::time::Instant::now();
        let answered = c.on_invoke(call).await;
        counted(&self.app_id, "OnInvoke", started, &answered);
        match answered {
            Ok(rsp) => {
                let answer = rsp.into_inner();
                let body = answer.data.map(|d| d.value).unwrap_or_default();
                let mut out = Response::new(full(Bytes::from(body)));
                if let Ok(ct) = HeaderValue::try_from(answer.content_type.as_str())
                    && !answer.content_type.is_empty()
                {
                    out.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                Ok(out)
            }
            Err(s) => {
                // The app's own status travels along, for a gRPC caller to get it whole.
                let mut rsp = json_answer(
                    http_status(s.code()),
                    &json!({"errorCode": "ERR_DIRECT_INVOKE", "message": s.message()}),
                );
                let (status_head, _) = s.clone().into_http::<Body>().into_parts();
                for (k, v) in &status_head.headers {
                    if k.as_str().starts_with("grpc-") {
                        rsp.headers_mut().insert(k.clone(), v.clone());
                    }
                }
                Ok(rsp)
            }
        }
    }
}

/// A request body, whole, within `limit`.
async fn read(body: Body, limit: usize) -> Result<Bytes, InvokeError> {
    collect_within(body, limit)
        .await
        .map_err(InvokeError::AppChannel)
}

fn json_answer(status: StatusCode, v: &Value) -> Response<Body> {
    let mut rsp = Response::new(full(v.to_string()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

/// Request headers as call metadata: what gRPC does not reserve or frame itself.
fn metadata(h: &HeaderMap) -> MetadataMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        let name = k.as_str();
        let reserved = matches!(
            name,
            "content-type" | "content-length" | "host" | "te" | "connection" | "transfer-encoding"
        ) || name.starts_with("grpc-");
        if !reserved {
            out.append(k.clone(), v.clone());
        }
    }
    MetadataMap::from_headers(out)
}
