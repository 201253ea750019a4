//! `middleware.http.bearer`: every request needs `Authorization: Bearer <JWT>` signed by the
//! issuer the component names (`issuer`, formerly `issuerURL`) for its `audience` (formerly
//! `clientID`), not expired and already valid (five minutes' leeway, as daprd allows). The
//! keys come from `jwksURL` — an `https://` or `http://` URL, or a file (`file://` or a path) —
//! or, without it, from the issuer's `/.well-known/openid-configuration`. They are fetched at
//! start (the sidecar does not start without them) and every ten minutes after, the last good
//! set kept when a fetch fails. RS256 and ES256 only. Anything else is `401 Unauthorized`, as
//! daprd answers it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use outrider_blocks::ComponentError;
use outrider_blocks::component::Settings;
use outrider_certs::jwt::{KeySet, check_claims};

use crate::net::http::Body;

/// How far clocks may disagree when judging `exp` and `nbf` (daprd's).
const LEEWAY: Duration = Duration::from_secs(5 * 60);
/// How often the keys are fetched again.
const REFRESH: Duration = Duration::from_secs(10 * 60);
/// The largest JWKS or discovery document read, and how long fetching it may take.
const MAX_DOCUMENT: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Bearer {
    issuer: String,
    audience: String,
    keys: ArcSwap<KeySet>,
}

/// Where the keys come from.
#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Url(String),
}

fn field_error(field: &str, message: String) -> Vec<ComponentError> {
    vec![ComponentError {
        field: format!("spec.metadata.{field}"),
        message,
    }]
}

impl Bearer {
    pub(super) async fn open(
        md: &Settings,
        ca_file: Option<&Path>,
    ) -> Result<Arc<Self>, Vec<ComponentError>> {
        let get = |a: &str, b: &str| {
            md.get(a)
                .or_else(|| md.get(b))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let issuer = get("issuer", "issuerurl")
            .ok_or_else(|| field_error("issuer", "is required".into()))?;
        let audience = get("audience", "clientid")
            .ok_or_else(|| field_error("audience", "is required".into()))?;
        let client = Fetcher::new(ca_file).map_err(|e| field_error("jwksURL", e))?;
        let source = get("jwksurl", "jwksurl");
        if source.as_deref().is_some_and(|u| u.starts_with("http://")) {
            tracing::warn!(
                jwks_url = source.as_deref().unwrap_or_default(),
                "the bearer middleware's keys come over plain HTTP: whoever is on the path can \
                 swap them and sign tokens; use https://"
            );
        }
        let source = match source {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Source::Url(u),
            Some(u) => Source::File(PathBuf::from(u.strip_prefix("file://").unwrap_or(&u))),
            None => Source::Url(
                client
                    .discover(&issuer)
                    .await
                    .map_err(|e| field_error("issuer", e))?,
            ),
        };
        let keys = client
            .keys(&source)
            .await
            .map_err(|e| field_error("jwksURL", e))?;
        let bearer = Arc::new(Self {
            issuer,
            audience,
            keys: ArcSwap::from_pointee(keys),
        });
        tokio::spawn(refresh(Arc::downgrade(&bearer), client, source));
        Ok(bearer)
    }

    /// `None` for a request with a valid token; else the 401.
    pub(super) fn admit(&self, headers: &HeaderMap) -> Option<Response<Body>> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case("bearer ").then(|| rest.trim())
            })
            .filter(|t| t.len() >= 10);
        let verdict = token
            .ok_or_else(|| "no bearer token".to_owned())
            .and_then(|t| self.keys.load().verify(t).map_err(|e| e.to_string()))
            .and_then(|claims| {
                check_claims(
                    &claims,
                    &self.issuer,
                    &self.audience,
                    SystemTime::now(),
                    LEEWAY,
                )
                .map_err(|e| e.to_string())
            });
        match verdict {
            Ok(()) => None,
            Err(why) => {
                tracing::debug!(reason = %why, "bearer token refused");
                Some(super::text(StatusCode::UNAUTHORIZED, "Unauthorized"))
            }
        }
    }
}

/// Fetches the keys again every [`REFRESH`] while the middleware is in use.
async fn refresh(bearer: Weak<Bearer>, client: Fetcher, source: Source) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(b) = bearer.upgrade() else { return };
        match client.keys(&source).await {
            Ok(keys) => b.keys.store(Arc::new(keys)),
            Err(e) => {
                tracing::warn!(error = %e, "fetching the bearer middleware's keys failed; the last ones stay")
            }
        }
    }
}

/// Reads keys and discovery documents over HTTP(S) (verified against `SSL_CERT_FILE` or the
/// system's roots) or from files.
#[derive(Clone)]
struct Fetcher {
    client: hyper_util::client::legacy::Client<crate::telemetry::Connector, Empty<Bytes>>,
}

impl Fetcher {
    fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let connector = crate::telemetry::https_connector(ca_file).map_err(|e| format!("{e:#}"))?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Self { client })
    }

    async fn keys(&self, source: &Source) -> Result<KeySet, String> {
        let bytes = match source {
            Source::File(p) => std::fs::read(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .into(),
            Source::Url(u) => self.get(u).await?,
        };
        KeySet::parse(&bytes)
    }

    /// The `jwks_uri` of `issuer`'s OpenID configuration, whose own `issuer` must be it.
    async fn discover(&self, issuer: &str) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc: serde_json::Value = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| format!("{url}: not JSON: {e}"))?;
        if doc["issuer"].as_str() != Some(issuer) {
            return Err(format!(
                "{url} names issuer {}, not {issuer:?}",
                doc["issuer"]
            ));
        }
        doc["jwks_uri"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{url} has no jwks_uri"))
    }

    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let fetch = async {
            let rsp = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !rsp.status().is_success() {
                return Err(format!("{url} answered {}", rsp.status()));
            }
            let body = http_body_util::Limited::new(rsp.into_body(), MAX_DOCUMENT);
            body.collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("{url}: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("{url}: no answer within {FETCH_TIMEOUT:?}"))?
    }
}
