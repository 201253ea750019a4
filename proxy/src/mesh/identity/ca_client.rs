//! The sidecar's side of the CA service (`--sentry-address`): the first certificate with a join
//! token, renewals with the current certificate, and the trust bundle followed as it changes.
//!
//! The key of every certificate is made here and never leaves the process; only a signing
//! request travels. The service is accepted only as `spiffe://<td>/ns/<ns>/outrider-ca`,
//! chaining to `--trust-anchors` or to the trust bundle it handed out last (so that a rotated
//! CA stays reachable).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use outrider_certs::{
    CA_SERVICE_APP_ID, Credentials, IssuedCert, KeyRequest, SpiffeId, TrustBundle,
    anonymous_service_client_config, renewal_due,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::config::{CaService, JoinToken};

/// How long one exchange with the service may take (the bundle wait excepted).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The service holds a bundle request up to 20 s; this leaves it room.
const BUNDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// Why an exchange with the CA service failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The service said no (4xx): the same request will not succeed later.
    Refused(String),
    /// The service could not be reached, or failed (5xx, TLS, timeout).
    Unavailable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(m) => write!(f, "the CA service refused: {m}"),
            Self::Unavailable(m) => write!(f, "the CA service is unavailable: {m}"),
        }
    }
}

/// What a signing request brought back: the roots, the chain, when it was asked for.
type Signed = (TrustBundle, Vec<CertificateDer<'static>>, SystemTime);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    certificate_chain: String,
    trust_bundle: String,
}

pub(super) struct CaClient {
    cfg: CaService,
    ca_id: SpiffeId,
}

impl CaClient {
    pub(super) fn new(cfg: &CaService, trust_domain: &str) -> anyhow::Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            ca_id: SpiffeId::new(trust_domain, &cfg.namespace, CA_SERVICE_APP_ID)?,
        })
    }

    /// The first certificate for `id`, authorised by the join token. A service that cannot be
    /// reached is tried again with a growing pause, with the same key: a use of the token spent
    /// on it serves it again if an answer was lost. A refusal ends the attempt.
    pub(super) async fn first(&self, id: &SpiffeId) -> Result<(TrustBundle, IssuedCert), Failure> {
        let key = KeyRequest::new(id).map_err(|e| Failure::Refused(e.to_string()))?;
        let mut pause = Duration::from_millis(200);
        loop {
            match self.with_token(&key).await {
                Err(Failure::Unavailable(why)) => {
                    tracing::warn!(address = %self.cfg.address, error = %why, "no certificate from the CA service yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                Err(refused) => return Err(refused),
                Ok((bundle, chain, issued_at)) => {
                    let cert = key
                        .into_issued(chain, issued_at)
                        .map_err(|e| Failure::Refused(e.to_string()))?;
                    return Ok((bundle, cert));
                }
            }
        }
    }

    async fn with_token(&self, key: &KeyRequest) -> Result<Signed, Failure> {
        let token = self.token()?;
        let cfg = anonymous_service_client_config(&self.anchors()?, self.ca_id.clone())
            .map_err(|e| Failure::Refused(e.to_string()))?;
        self.sign(cfg, key, Some(&token)).await
    }

    /// A new certificate for the identity `creds` hold, authorised by their current certificate;
    /// if the service no longer accepts it, by the join token when there is one.
    async fn renew(&self, creds: &Credentials) -> Result<(TrustBundle, IssuedCert), Failure> {
        let cfg = creds
            .service_client_config(&self.anchors()?, self.ca_id.clone())
            .map_err(|e| Failure::Refused(e.to_string()))?;
        let key = KeyRequest::new(creds.id()).map_err(|e| Failure::Refused(e.to_string()))?;
        let signed = match self.sign(cfg, &key, None).await {
            Err(e) if !matches!(self.cfg.token, JoinToken::None) => {
                tracing::warn!(error = %e, "renewing with the current certificate failed; trying the join token");
                self.with_token(&key).await?
            }
            done => done?,
        };
        let (bundle, chain, issued_at) = signed;
        let cert = key
            .into_issued(chain, issued_at)
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        Ok((bundle, cert))
    }

    /// Sends `key`'s request: the roots, the chain (leaf first) and when it was asked for.
    async fn sign(
        &self,
        cfg: ClientConfig,
        key: &KeyRequest,
        token: Option<&str>,
    ) -> Result<Signed, Failure> {
        let body = serde_json::json!({ "csr": key.pem() }).to_string();
        let mut req = self.request(
            Method::POST,
            "/v1/certificates",
            Full::new(Bytes::from(body)),
        );
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(t) = token {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                Failure::Refused("the join token is not a valid header value".into())
            })?;
            v.set_sensitive(true);
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
        let issued_at = SystemTime::now();
        let (status, _, body) = self.exchange(cfg, req, EXCHANGE_TIMEOUT).await?;
        if status != StatusCode::OK {
            return Err(failure(status, &body));
        }
        let signed: Answer = serde_json::from_slice(&body)
            .map_err(|e| Failure::Unavailable(format!("unreadable answer: {e}")))?;
        let chain = CertificateDer::pem_slice_iter(signed.certificate_chain.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::Unavailable(format!("unreadable certificate chain: {e}")))?;
        let bundle = TrustBundle::from_pem(
            std::path::Path::new("trustBundle"),
            signed.trust_bundle.as_bytes(),
        )
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
        Ok((bundle, chain, issued_at))
    }

    /// The trust bundle, if its tag is not `etag` (the service waits a while for a change).
    async fn bundle(
        &self,
        creds: &Credentials,
        etag: Option<&str>,
    ) -> Result<Option<(Option<String>, TrustBundle)>, Failure> {
        let cfg = creds
            .service_client_config(&self.anchors()?, self.ca_id.clone())
            .map_err(|e| Failure::Refused(e.to_string()))?;
        let mut req = self.request(Method::GET, "/v1/trust-bundle", Full::new(Bytes::new()));
        if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
            req.headers_mut().insert(header::IF_NONE_MATCH, tag);
        }
        let (status, headers, body) = self.exchange(cfg, req, BUNDLE_TIMEOUT).await?;
        match status {
            StatusCode::NOT_MODIFIED => Ok(None),
            StatusCode::OK => {
                let tag = headers
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned);
                let bundle = TrustBundle::from_pem(std::path::Path::new("trust-bundle"), &body)
                    .map_err(|e| Failure::Unavailable(e.to_string()))?;
                Ok(Some((tag, bundle)))
            }
            _ => Err(failure(status, &body)),
        }
    }

    fn request(&self, method: Method, path: &str, body: Full<Bytes>) -> Request<Full<Bytes>> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = format!("https://{}{path}", self.cfg.address)
            .parse()
            .unwrap_or_default();
        req
    }

    /// One request on a connection of its own: renewals are rare and the bundle wait long.
    async fn exchange(
        &self,
        cfg: ClientConfig,
        req: Request<Full<Bytes>>,
        limit: Duration,
    ) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
        let work = async {
            let unavailable = |what: &str, e: &dyn std::fmt::Display| {
                Failure::Unavailable(format!("{what} {}: {e}", self.cfg.address))
            };
            let tcp = tokio::net::TcpStream::connect(&self.cfg.address)
                .await
                .map_err(|e| unavailable("connecting to", &e))?;
            // The name is not checked (the service is judged by its SPIFFE id), only sent.
            let host = self.cfg.address.rsplit_once(':').map_or("", |(h, _)| h);
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .unwrap_or_else(|_| ServerName::try_from("outrider-ca").expect("a valid name"));
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|e| unavailable("TLS with", &e))?;
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| unavailable("HTTP/2 with", &e))?;
            tokio::spawn(conn);
            let rsp = sender
                .send_request(req)
                .await
                .map_err(|e| unavailable("asking", &e))?;
            let (parts, body) = rsp.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unavailable("reading the answer of", &e))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(Failure::Unavailable(format!(
                "no answer within {}s",
                limit.as_secs()
            )))
        })
    }

    fn anchors(&self) -> Result<TrustBundle, Failure> {
        TrustBundle::from_pem_file(&self.cfg.anchors).map_err(|e| Failure::Refused(e.to_string()))
    }

    fn token(&self) -> Result<String, Failure> {
        match &self.cfg.token {
            JoinToken::None => Err(Failure::Refused(
                "no join token: set OUTRIDER_CA_TOKEN or --ca-token-file".into(),
            )),
            JoinToken::Value(t) => Ok(t.clone()),
            JoinToken::File(p) => std::fs::read_to_string(p)
                .map(|t| t.trim().to_owned())
                .map_err(|e| Failure::Refused(format!("{}: {e}", p.display()))),
        }
    }
}

fn failure(status: StatusCode, body: &[u8]) -> Failure {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let m = format!("{status}: {message}");
    if status.is_client_error() {
        Failure::Refused(m)
    } else {
        Failure::Unavailable(m)
    }
}

/// Keeps `creds` renewed from the service, and their trust bundle following the service's.
pub(super) fn follow(client: Arc<CaClient>, creds: Credentials) {
    let now = Arc::new(Notify::new());
    tokio::spawn(renew_forever(client.clone(), creds.clone(), now.clone()));
    tokio::spawn(follow_bundle(client, creds, now));
}

async fn renew_forever(client: Arc<CaClient>, creds: Credentials, now: Arc<Notify>) {
    loop {
        tokio::select! {
            () = renewal_due(&creds) => {}
            () = now.notified() => {}
        }
        let info = creds.info();
        let life = info
            .not_after
            .duration_since(info.issued_at)
            .unwrap_or_default();
        // Retries stay well inside the certificate's last third, however short its life.
        let mut pause = (life / 100).clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            let renewed = client.renew(&creds).await.and_then(|(bundle, cert)| {
                creds
                    .install_with_bundle(&bundle, cert)
                    .map_err(|e| Failure::Unavailable(e.to_string()))
            });
            match renewed {
                Ok(info) => {
                    tracing::info!(serial = %info.serial, generation = info.generation, "renewed the workload certificate from the CA service");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the workload certificate failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2)
                        .min(Duration::from_secs(10))
                        .min(life / 10)
                        .max(Duration::from_millis(100));
                }
            }
        }
    }
}

/// After an answer with roots, the next bundle request waits at least this long: answers that
/// keep changing (two services in different states) cannot turn the wait into a busy loop.
const BUNDLE_GAP: Duration = Duration::from_secs(1);

async fn follow_bundle(client: Arc<CaClient>, creds: Credentials, renew_now: Arc<Notify>) {
    let mut etag: Option<String> = None;
    let mut pause = Duration::from_millis(200);
    loop {
        let asked = tokio::time::Instant::now();
        match client.bundle(&creds, etag.as_deref()).await {
            Ok(Some((tag, bundle))) => {
                etag = tag;
                match creds.install_bundle(&bundle) {
                    Ok(true) => {
                        tracing::info!(
                            roots = bundle.certs().len(),
                            "the CA service's trust bundle changed"
                        );
                        pause = Duration::from_millis(200);
                    }
                    Ok(false) => pause = Duration::from_millis(200),
                    Err(e) => {
                        // The roots no longer include ours: a certificate from the new root
                        // brings the bundle with it.
                        tracing::info!(reason = %e, "the new trust bundle needs a new certificate; renewing now");
                        etag = None;
                        renew_now.notify_one();
                        pause = (pause * 2).min(Duration::from_secs(10));
                    }
                }
                tokio::time::sleep(pause.max(BUNDLE_GAP)).await;
            }
            Ok(None) => {
                pause = Duration::from_millis(200);
                // A service that answers "unchanged" at once instead of waiting is not asked
                // again at once.
                tokio::time::sleep_until(asked + BUNDLE_GAP).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "following the trust bundle failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}
