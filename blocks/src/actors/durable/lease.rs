//! Firings: an entry's lease (taken, extended while a delivery runs), and the outcome written
//! on that lease (the next firing, or the end).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Group, Leased, Schedules, json_bytes};
use crate::state::{Metadata, SetRequest, StateError};

impl Schedules {
    /// Leases the firing of entry `id` due at or before `now` for `lease`: `None` when it is not
    /// due, is leased by another host, or another host won the race.
    pub async fn lease(
        &self,
        group: &Group,
        id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Leased>, StateError> {
        let Some((mut entry, etag)) = self.read(group, id).await? else {
            return Ok(None);
        };
        if entry.next > now || entry.leased_until.is_some_and(|u| u > now) {
            return Ok(None);
        }
        entry.leased_until = Some(now + chrono::TimeDelta::from_std(lease).unwrap_or_default());
        let key = group.entry_key(id);
        let written = self
            .store
            .set(SetRequest {
                key: key.clone(),
                value: json_bytes(&entry),
                etag,
                ..SetRequest::default()
            })
            .await;
        match written {
            Ok(()) => {}
            Err(StateError::EtagMismatch(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        let etag = self
            .store
            .get(key, Metadata::new())
            .await?
            .and_then(|i| i.etag);
        Ok(Some(Leased { entry, etag }))
    }

    /// Extends a lease for a firing that takes long (the app is slow, or retried): `false` when
    /// it was lost meanwhile.
    pub async fn extend(
        &self,
        group: &Group,
        leased: &mut Leased,
        until: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let mut entry = leased.entry.clone();
        entry.leased_until = Some(until);
        let key = group.entry_key(&entry.id);
        let written = self
            .store
            .set(SetRequest {
                key: key.clone(),
                value: json_bytes(&entry),
                etag: leased.etag.clone(),
                ..SetRequest::default()
            })
            .await;
        match written {
            Ok(()) => {}
            Err(StateError::EtagMismatch(_)) => {
                // Still the lease written last (its ETag was never read back)? Then it is ours.
                let current = self.read(group, &entry.id).await?;
                return Ok(match current {
                    Some((e, etag)) if e.leased_until == entry.leased_until => {
                        leased.etag = etag;
                        leased.entry = entry;
                        true
                    }
                    _ => false,
                });
            }
            Err(e) => return Err(e),
        }
        leased.etag = self
            .store
            .get(key, Metadata::new())
            .await?
            .and_then(|i| i.etag);
        leased.entry = entry;
        Ok(true)
    }

    /// Ends the leased entry now (its kind cancelled it): gone, unless it was changed meanwhile.
    /// `false` when the lease was lost meanwhile.
    pub async fn end(&self, group: &Group, leased: Leased) -> Result<bool, StateError> {
        self.remove(group, &leased.entry.id, leased.etag).await
    }

    /// Records that the leased firing is done: the entry moves to its next firing, or ends (and
    /// leaves its group). `false` when the lease was lost meanwhile (another host fires it).
    pub async fn done(&self, group: &Group, leased: Leased) -> Result<bool, StateError> {
        let Leased { mut entry, etag } = leased;
        let Some(next) = entry.following() else {
            // The last firing: gone, unless it was changed meanwhile.
            return self.remove(group, &entry.id, etag).await;
        };
        entry.fired += 1;
        entry.next = next;
        entry.leased_until = None;
        let written = self
            .store
            .set(SetRequest {
                key: group.entry_key(&entry.id),
                value: json_bytes(&entry),
                etag,
                ..SetRequest::default()
            })
            .await;
        match written {
            Ok(()) => Ok(true),
            Err(StateError::EtagMismatch(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
