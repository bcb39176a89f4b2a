//! The one way a change and its security events are written: together.
//!
//! Defends against an action with no record and a record with no action. A [`Unit`] is a
//! transaction plus the events appended in it: dropped without [`Unit::commit`], neither the
//! change nor its record happened; committed, both did, and only then is each event logged and
//! the anchor moved. Events with no change to go with them (a refused login) get a transaction
//! of their own, run to completion so a cancelled request cannot cut them short; sampled
//! `access_denied` events are written off the request path, so an answer's timing does not
//! reveal that something was there to deny.

use std::sync::Arc;

use super::{AuditLog, Event, EventSampler, Recorded};
use crate::store::{Store, StoreError, Tx};
use crate::task::to_completion;

/// Writes changes with their events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    log: Arc<AuditLog>,
    store: Arc<dyn Store>,
    /// Thins out `access_denied` events so one caller cannot flood the audit table.
    denials: Arc<EventSampler>,
}

impl Recorder {
    pub fn new(log: AuditLog, store: Arc<dyn Store>) -> Self {
        Self {
            log: Arc::new(log),
            store,
            denials: Arc::new(EventSampler::default()),
        }
    }

    /// Opens a unit of work: changes and the events that record them, committed together.
    pub async fn begin(&self) -> Result<Unit, StoreError> {
        Ok(Unit {
            recorder: self.clone(),
            tx: self.store.begin().await?,
            recorded: Vec::new(),
        })
    }

    /// Records `events` that have no change to commit with (a refused password check and the
    /// delay it started) together, in their own transaction, run to completion. An error means
    /// they are not on record, and the caller must not act as if they were.
    pub async fn record(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let recorder = self.clone();
        to_completion(async move {
            let mut unit = recorder.begin().await?;
            for event in events {
                unit.record(event).await?;
            }
            unit.commit().await
        })
        .await
    }

    /// Records an `access_denied` event without making the caller wait for it, at most once
    /// per caller per sampling window; the next recorded one counts those left out. A failure
    /// is logged, never answered.
    pub fn record_denied(&self, mut event: Event) {
        let caller = event.user_id.clone().unwrap_or_default();
        let Some(suppressed) = self.denials.admit(&caller) else {
            return;
        };
        if suppressed > 0 {
            if let Some(detail) = event.detail.as_object_mut() {
                detail.insert("suppressed_since_last".into(), suppressed.into());
            }
        }
        let recorder = self.clone();
        tokio::spawn(async move {
            if let Err(err) = recorder.write_alone(event).await {
                tracing::warn!(error = %err, "a sampled access_denied event was not stored");
            }
        });
    }

    /// Writes one event in a transaction of its own, for callers that already run off the
    /// request path (sampled refusals).
    pub async fn write_alone(&self, event: Event) -> Result<(), StoreError> {
        self.log.record(self.store.as_ref(), event).await
    }
}

/// A transaction and the audit events appended in it ([`Recorder::begin`]). Dropped without
/// [`Unit::commit`], nothing of it happened: neither the changes nor their record.
pub struct Unit {
    recorder: Recorder,
    tx: Box<dyn Tx>,
    recorded: Vec<Recorded>,
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unit")
            .field("events", &self.recorded.len())
            .finish_non_exhaustive()
    }
}

impl Unit {
    /// The transaction, for the changes.
    pub fn tx(&mut self) -> &mut dyn Tx {
        self.tx.as_mut()
    }

    /// Appends `event` to the audit chain in this transaction. Record events after the
    /// changes: from the first append to the commit, other appends wait.
    pub async fn record(&mut self, event: Event) -> Result<(), StoreError> {
        let recorded = self.recorder.log.append_in(self.tx.as_mut(), event).await?;
        self.recorded.push(recorded);
        Ok(())
    }

    /// Commits the changes and their events together, then logs the events and moves the
    /// audit anchor.
    pub async fn commit(self) -> Result<(), StoreError> {
        let Unit {
            recorder,
            tx,
            recorded,
        } = self;
        tx.commit().await?;
        recorder
            .log
            .committed(recorder.store.as_ref(), &recorded)
            .await;
        Ok(())
    }
}
