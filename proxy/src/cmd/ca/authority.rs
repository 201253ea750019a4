//! The CA behind `outrider ca serve`: its issuing key and trust bundle as its directory holds
//! them now, and its own serving certificate.
//!
//! The directory is checked every second. When `outrider ca rotate` (or an operator) changes
//! it, the new issuer is loaded and proven first — a serving certificate is issued from it and
//! must chain to the new bundle — and only then put in force; a half-written or inconsistent
//! directory keeps the CA issuing as before and is reported once.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use outrider_certs::{
    CA_SERVICE_APP_ID, Credentials, DevCa, KubernetesTokens, RenewalSchedule, SignedChain,
    SigningRequest, SpiffeId, TokenStore,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The files whose change means the CA must be loaded again.
const WATCHED: [&str; 3] = ["ca.crt", "ca.key", "bundle.pem"];
/// How long the CA's own serving certificate is valid at most.
const SERVING_TTL: Duration = Duration::from_secs(24 * 3600);

/// The trust bundle as published to sidecars.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Published {
    /// Changes whenever the roots do.
    pub(super) etag: String,
    /// The roots, PEM.
    pub(super) pem: String,
    /// How many roots.
    pub(super) roots: usize,
}

/// Identity of the watched files' contents: inode, size and modification time of each.
type Stamp = Vec<Option<(u64, u64, i64, i64)>>;

pub(super) struct Authority {
    dir: PathBuf,
    trust_domain: String,
    /// The CA's own identity, which it issues to no one.
    id: SpiffeId,
    ttl: Duration,
    /// The issuer and the bundle published with it, swapped together.
    ca: ArcSwap<Issuing>,
    /// The stamp of what is in force, and of the last directory state refused.
    stamps: Mutex<(Stamp, Option<Stamp>)>,
    bundle: watch::Sender<Arc<Published>>,
    /// The certificate the CA serves with.
    pub(super) own: Credentials,
    pub(super) tokens: TokenStore,
    /// Verifies Kubernetes service-account tokens, when the cluster's keys were given.
    pub(super) kubernetes: Option<KubernetesTokens>,
}

impl Authority {
    /// Loads the CA in `dir` and issues its serving certificate.
    pub(super) fn load(
        dir: &Path,
        trust_domain: &str,
        namespace: &str,
        ttl: Duration,
        kubernetes: Option<KubernetesTokens>,
    ) -> anyhow::Result<Self> {
        let stamp = stamp(dir);
        let ca = DevCa::load(dir)?;
        let id = SpiffeId::new(trust_domain, namespace, CA_SERVICE_APP_ID)?;
        let own = Credentials::new(
            id.clone(),
            &ca.trust_bundle(),
            ca.issue(&id, serving_ttl(ttl))?,
        )?;
        let published = Arc::new(publish(&ca));
        let bundle = watch::Sender::new(published.clone());
        Ok(Self {
            dir: dir.to_owned(),
            trust_domain: trust_domain.to_owned(),
            id,
            ttl,
            ca: ArcSwap::from_pointee(Issuing { published, ca }),
            stamps: Mutex::new((stamp, None)),
            bundle,
            own,
            tokens: TokenStore::new(dir),
            kubernetes,
        })
    }

    /// The CA's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust domain the CA issues in.
    pub(super) fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The identity the CA serves as.
    pub(super) fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The trust bundle, followed.
    pub(super) fn bundle(&self) -> watch::Receiver<Arc<Published>> {
        self.bundle.subscribe()
    }

    /// Signs `req` with the issuer in force, for the configured lifetime; with the roots it
    /// chains to (PEM), from the same moment.
    pub(super) fn sign(
        &self,
        req: &SigningRequest,
    ) -> Result<(SignedChain, String), outrider_certs::Error> {
        let now = self.ca.load_full();
        Ok((now.ca.sign(req, self.ttl)?, now.published.pem.clone()))
    }

    /// Checks the directory and the serving certificate every second until `stop`.
    pub(super) async fn follow(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.refresh()).await;
        }
    }

    /// Loads the directory again if it changed, and renews the serving certificate when due.
    fn refresh(&self) {
        let now = stamp(&self.dir);
        let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        if now != stamps.0 && stamps.1.as_ref() != Some(&now) {
            match self.reload() {
                Ok(published) => {
                    tracing::info!(dir = %self.dir.display(), roots = published.roots, "loaded the CA again: its directory changed");
                    *stamps = (now, None);
                    crate::telemetry::metrics::CA_RELOADS
                        .counter(&[("result", "loaded".to_owned())])
                        .increment(1);
                }
                Err(e) => {
                    // Files replaced one after the other settle within a tick or two; a
                    // directory that stays wrong is reported once per state.
                    tracing::warn!(dir = %self.dir.display(), error = %format!("{e:#}"), "the CA directory changed but does not load; issuing as before");
                    stamps.1 = Some(now);
                    crate::telemetry::metrics::CA_RELOADS
                        .counter(&[("result", "refused".to_owned())])
                        .increment(1);
                }
            }
            return;
        }
        drop(stamps);
        let info = self.own.info();
        let due = RenewalSchedule { ttl: self.ttl }.delay(
            info.issued_at,
            info.not_after,
            SystemTime::now(),
        );
        if due.is_zero() {
            let ca = &self.ca.load().ca;
            if let Err(e) = ca
                .issue(&self.id, serving_ttl(self.ttl))
                .and_then(|cert| self.own.install(cert))
            {
                tracing::warn!(error = %e, "renewing the CA's serving certificate failed; retrying");
            }
        }
    }

    fn reload(&self) -> anyhow::Result<Arc<Published>> {
        let ca = DevCa::load(&self.dir)?;
        // Proves the new issuer chains to the new bundle before anything changes.
        self.own.install_with_bundle(
            &ca.trust_bundle(),
            ca.issue(&self.id, serving_ttl(self.ttl))?,
        )?;
        let published = Arc::new(publish(&ca));
        self.ca.store(Arc::new(Issuing {
            ca,
            published: published.clone(),
        }));
        self.bundle.send_if_modified(|old| {
            let changed = old.pem != published.pem;
            if changed {
                *old = published.clone();
            }
            changed
        });
        Ok(published)
    }
}

fn serving_ttl(ttl: Duration) -> Duration {
    ttl.min(SERVING_TTL)
}

/// An issuer with the bundle it was published with.
struct Issuing {
    ca: DevCa,
    published: Arc<Published>,
}

fn publish(ca: &DevCa) -> Published {
    let bundle = ca.trust_bundle();
    Published {
        // The roots' digest: every replica and every build tags the same roots alike.
        etag: format!("\"{}\"", bundle.fingerprint()),
        pem: bundle.to_pem(),
        roots: bundle.certs().len(),
    }
}

fn stamp(dir: &Path) -> Stamp {
    WATCHED
        .iter()
        .map(|name| {
            fs::metadata(dir.join(name))
                .ok()
                .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}
