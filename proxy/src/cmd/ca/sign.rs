//! `POST /v1/certificates`: one certificate signing request judged and, if the caller is entitled
//! to the identity it asks for, signed.
//!
//! Entitlement comes from the TLS session (renewal: the caller's verified certificate names the
//! same identity) or from a join token in `Authorization: Bearer`, spent only once the request
//! has passed every other check. Every answer is logged and counted; nothing is issued on any
//! error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use outrider_certs::{CA_SERVICE_APP_ID, SigningRequest, SpiffeId, TokenError, TokenStore};
use serde::Deserialize;

use super::authority::Authority;
use crate::errors::ApiError;
use crate::telemetry::metrics::{CA_ISSUED, CA_REFUSED};

/// The largest request body: a P-256 request is under 1 KiB.
pub(super) const MAX_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    /// The PKCS#10 request, PEM.
    csr: String,
}

/// What the caller proved about itself before the request.
pub(super) enum Caller {
    /// A verified certificate (renewal).
    Certified(SpiffeId),
    /// Nothing yet: a token must say who it is.
    Anonymous,
}

/// The chain, the roots and the expiry, for a request entitled to its identity.
pub(super) async fn sign(
    ca: Arc<Authority>,
    caller: &Caller,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Result<Bytes, ApiError>,
) -> Result<serde_json::Value, ApiError> {
    let body = body?;
    let req: SignBody = serde_json::from_slice(&body).map_err(|e| {
        refused(
            "malformed",
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("the body is not {{\"csr\": \"<PEM>\"}}: {e}"),
        )
    })?;
    let csr = SigningRequest::parse(req.csr.as_bytes()).map_err(|e| {
        refused(
            "csr",
            StatusCode::BAD_REQUEST,
            "ERR_CSR_INVALID",
            e.to_string(),
        )
    })?;
    let wanted = csr.id().clone();
    if wanted.trust_domain() != ca.trust_domain() {
        return Err(refused(
            "not_entitled",
            StatusCode::FORBIDDEN,
            "ERR_NOT_ENTITLED",
            format!("{wanted} is outside trust domain {}", ca.trust_domain()),
        ));
    }
    if wanted.app_id() == CA_SERVICE_APP_ID {
        return Err(refused(
            "not_entitled",
            StatusCode::FORBIDDEN,
            "ERR_NOT_ENTITLED",
            format!("{CA_SERVICE_APP_ID} is the CA service's own app id, in every namespace"),
        ));
    }
    // Judged before anything is signed; a join token is spent only once the certificate is.
    let key = csr.key_fingerprint();
    let (by, join) = match proof(caller, headers, &wanted)? {
        Proof::Renewal => ("renewal", None),
        Proof::Join(token) => {
            token_use(&ca, token.clone(), key.clone(), &wanted, Spend::No).await?;
            ("token", Some(token))
        }
        Proof::ServiceAccount(token) => (kubernetes(&ca, token, &wanted).await?, None),
    };
    let (signed, roots) = ca.sign(&csr).map_err(|e| {
        tracing::error!(error = %e, identity = %wanted, "signing failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SIGN",
            "signing failed",
        )
    })?;
    if let Some(token) = join {
        token_use(&ca, token, key, &wanted, Spend::Yes).await?;
    }
    CA_ISSUED.counter(&[("by", by.to_owned())]).increment(1);
    let valid_until = time::OffsetDateTime::from(signed.not_after)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    tracing::info!(identity = %wanted, serial = %signed.serial, %valid_until, by, %peer, "issued a workload certificate");
    Ok(serde_json::json!({
        "certificateChain": outrider_certs::TrustBundle::from_certs(signed.chain).to_pem(),
        "trustBundle": roots,
        "validUntil": valid_until,
    }))
}

/// What the caller shows for the identity it asks for.
enum Proof {
    /// Its current certificate, for the same identity.
    Renewal,
    /// A join token of this CA.
    Join(String),
    /// Another bearer token: a Kubernetes service-account token.
    ServiceAccount(String),
}

fn proof(caller: &Caller, headers: &HeaderMap, wanted: &SpiffeId) -> Result<Proof, ApiError> {
    if let Caller::Certified(id) = caller {
        if id == wanted {
            return Ok(Proof::Renewal);
        }
        return Err(refused(
            "not_entitled",
            StatusCode::FORBIDDEN,
            "ERR_NOT_ENTITLED",
            format!("a certificate for {id} renews only {id}, not {wanted}"),
        ));
    }
    match bearer(headers) {
        Some(t) if TokenStore::is_join_token(&t) => Ok(Proof::Join(t)),
        Some(t) => Ok(Proof::ServiceAccount(t)),
        None => Err(refused(
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "ERR_UNAUTHENTICATED",
            "present a join token (Authorization: Bearer) or a current certificate".to_owned(),
        )),
    }
}

/// Whether a join token is spent, or only checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spend {
    No,
    Yes,
}

/// Checks, or spends, a use of a join token bound to `wanted` on the key `key`.
async fn token_use(
    ca: &Arc<Authority>,
    token: String,
    key: String,
    wanted: &SpiffeId,
    spend: Spend,
) -> Result<(), ApiError> {
    let (ca2, wanted2) = (ca.clone(), wanted.clone());
    let redeemed = tokio::task::spawn_blocking(move || {
        let ours = |e: &outrider_certs::Entitlement| {
            e.namespace == wanted2.namespace() && e.app_id == wanted2.app_id()
        };
        let now = SystemTime::now();
        match spend {
            Spend::No => ca2.tokens.check(&token, &key, now, ours),
            Spend::Yes => ca2.tokens.redeem(&token, &key, now, ours),
        }
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_TOKEN",
            "redeeming the token failed",
        )
    })?;
    match redeemed {
        Ok(_) => Ok(()),
        Err(TokenError::NotEntitled {
            namespace, app_id, ..
        }) => Err(refused(
            "not_entitled",
            StatusCode::FORBIDDEN,
            "ERR_NOT_ENTITLED",
            format!("the token is for app {app_id} in namespace {namespace}, not {wanted}"),
        )),
        Err(TokenError::Store(e)) => {
            tracing::error!(error = %e, "the token store failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_TOKEN",
                "the token store failed",
            ))
        }
        Err(e) => {
            tracing::info!(reason = %e, identity = %wanted, "refused a join token");
            Err(refused(
                "token",
                StatusCode::UNAUTHORIZED,
                "ERR_UNAUTHENTICATED",
                "the join token is not valid (unknown, used up, revoked or expired)".to_owned(),
            ))
        }
    }
}

/// A Kubernetes service-account token: its namespace and service account must be `wanted`'s.
/// Why a token is refused goes to the log only.
async fn kubernetes(
    ca: &Arc<Authority>,
    token: String,
    wanted: &SpiffeId,
) -> Result<&'static str, ApiError> {
    if ca.kubernetes.is_none() {
        return Err(refused("token", StatusCode::UNAUTHORIZED, "ERR_UNAUTHENTICATED", "the token is not a join token of this CA (service-account tokens need --kubernetes-jwks)".to_owned()));
    }
    let ca2 = ca.clone();
    // The key file may be read again: not on the runtime's threads.
    let verified = tokio::task::spawn_blocking(move || {
        ca2.kubernetes
            .as_ref()
            .map(|k| k.verify(&token, SystemTime::now()))
    })
    .await
    .ok()
    .flatten();
    match verified {
        Some(Ok(e)) if e.namespace == wanted.namespace() && e.app_id == wanted.app_id() => {
            Ok("kubernetes")
        }
        Some(Ok(e)) => Err(refused(
            "not_entitled",
            StatusCode::FORBIDDEN,
            "ERR_NOT_ENTITLED",
            format!(
                "the service-account token is for {} in namespace {}, not {wanted} (on Kubernetes an app id is its service account's name)",
                e.app_id, e.namespace
            ),
        )),
        Some(Err(e)) => {
            tracing::info!(reason = %e, identity = %wanted, "refused a service-account token");
            Err(refused(
                "token",
                StatusCode::UNAUTHORIZED,
                "ERR_UNAUTHENTICATED",
                "the service-account token is not valid".to_owned(),
            ))
        }
        None => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_TOKEN",
            "verifying the token failed",
        )),
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The body, at most [`MAX_BODY`] bytes, arriving within `limit`.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        refused(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            "ERR_BODY_TOO_LARGE",
            format!("the body exceeds {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(limit, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(refused(
            "malformed",
            StatusCode::BAD_REQUEST,
            "ERR_BODY_READ",
            format!("reading the body failed: {e}"),
        )),
        Err(_) => Err(refused(
            "timeout",
            StatusCode::REQUEST_TIMEOUT,
            "ERR_BODY_READ",
            format!("the body did not arrive within {}s", limit.as_secs_f32()),
        )),
    }
}

/// A refusal, counted by its bounded reason.
fn refused(
    reason: &'static str,
    status: StatusCode,
    code: &'static str,
    message: String,
) -> ApiError {
    CA_REFUSED
        .counter(&[("reason", reason.to_owned())])
        .increment(1);
    ApiError::new(status, code, message)
}
