//! Wiring of `certs` into the sidecar: obtain the workload certificate, keep it renewed (or
//! reload it when its files are written anew), and make its state visible (log, metrics, status
//! page), loudly as expiry nears (security rule 10).

mod ca_client;
mod files;

use std::time::{Duration, SystemTime};

use outrider_certs::{
    CertInfo, CredentialFiles, Credentials, DevCa, RenewalSchedule, SpiffeId, renew_forever,
};

use crate::config::{IdentitySource, Settings};
use crate::telemetry::metrics as catalogue;

/// Warn from this long before a certificate expires.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Loads or obtains this sidecar's credentials and starts renewal when they are issued for us
/// (by the development CA or the CA service).
pub(crate) async fn start(s: &Settings) -> anyhow::Result<Credentials> {
    let id = SpiffeId::new(&s.trust_domain, &s.namespace, &s.app_id)?;
    let Obtained {
        creds,
        renewed,
        watched,
    } = obtain(s, id).await?;
    let info = creds.info();
    tracing::info!(identity = %creds.id(), serial = %info.serial, "workload certificate loaded");
    record(&info);
    let expiring = creds.clone();
    tokio::spawn(async move {
        let mut daily = tokio::time::interval(Duration::from_secs(24 * 3600));
        loop {
            daily.tick().await;
            for (what, not_after) in &watched {
                warn_if_expiring(what, *not_after);
            }
            if !renewed {
                // Nobody here renews files we were given: the operator must hear of their
                // expiry (whatever was last loaded from them).
                warn_if_expiring("workload certificate", expiring.info().not_after);
            }
        }
    });
    let mut bundles = creds.bundle_changes();
    let roots = creds.clone();
    tokio::spawn(async move {
        loop {
            catalogue::TRUST_ROOTS
                .gauge(&[])
                .set(roots.trust_roots() as f64);
            if bundles.changed().await.is_err() {
                return;
            }
        }
    });
    let mut changes = creds.watch();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let info = changes.borrow_and_update().clone();
            catalogue::CERT_RENEWALS.counter(&[]).increment(1);
            record(&info);
        }
    });
    Ok(creds)
}

/// Credentials, whether someone here renews them, and certificates nobody here renews (checked
/// now and daily for expiry).
struct Obtained {
    creds: Credentials,
    renewed: bool,
    watched: Vec<(&'static str, SystemTime)>,
}

async fn obtain(s: &Settings, id: SpiffeId) -> anyhow::Result<Obtained> {
    let mut watched = Vec::new();
    let (creds, renewed) = match &s.identity {
        IdentitySource::DevCa { dir } => {
            let ca = DevCa::load_or_create(dir)?;
            watched.push(("issuing CA", ca.not_after()));
            let creds = Credentials::new(
                id.clone(),
                &ca.trust_bundle(),
                ca.issue(&id, s.workload_cert_ttl)?,
            )?;
            let schedule = RenewalSchedule {
                ttl: s.workload_cert_ttl,
            };
            tokio::spawn(renew_forever(creds.clone(), ca, schedule));
            (creds, true)
        }
        IdentitySource::CaService(cfg) => {
            let client = std::sync::Arc::new(ca_client::CaClient::new(cfg, &s.trust_domain)?);
            let (bundle, cert) = client.first(&id).await.map_err(|e| {
                anyhow::anyhow!("no certificate from the CA service at {}: {e}", cfg.address)
            })?;
            let creds = Credentials::new(id, &bundle, cert)?;
            ca_client::follow(client, creds.clone());
            (creds, true)
        }
        IdentitySource::Files { bundle, chain, key } => {
            let files = CredentialFiles {
                bundle: bundle.clone(),
                chain: chain.clone(),
                key: key.clone(),
            };
            let pem = files.read()?;
            let creds = Credentials::from_files(id, &files, &pem)?;
            files::watch(creds.clone(), files, pem.fingerprint());
            (creds, false)
        }
    };
    Ok(Obtained {
        creds,
        renewed,
        watched,
    })
}

fn record(info: &CertInfo) {
    let secs = info
        .not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    catalogue::CERT_EXPIRY.gauge(&[]).set(secs);
    catalogue::CERT_GENERATION
        .gauge(&[])
        .set(info.generation as f64);
}

fn warn_if_expiring(what: &str, not_after: SystemTime) {
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    if left < EXPIRY_WARNING {
        catalogue::CERT_EXPIRING_SOON
            .gauge(&[("what", what.to_owned())])
            .set(1.0);
        tracing::warn!(
            what,
            seconds_left = left.as_secs(),
            "certificate expires within 30 days"
        );
    }
}
