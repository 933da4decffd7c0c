//! "Report stored" events: how the alert engine learns of new data without
//! the gRPC layer knowing it exists. `ingest` queues an event per stored
//! batch; `durable` publishes the ones queued before its flush started, once
//! that flush is done, so a subscriber never acts on data a crash could undo.

use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use vakt_proto::v1;

/// Events a slow subscriber may fall behind by before it is told it lagged.
const CAPACITY: usize = 4096;

/// One batch, durably stored for a device.
#[derive(Debug)]
pub struct ReportStored {
    pub device_id: String,
    pub received_at_ms: i64,
    pub collected_at_ms: i64,
    pub samples: Vec<v1::Sample>,
    pub events: Vec<v1::Event>,
    pub dropped_reports: u64,
    /// The inventory stored before this batch (only when the batch carried a new one).
    pub old_inventory: Option<v1::Inventory>,
    pub new_inventory: Option<v1::Inventory>,
}

pub(super) struct Events {
    sender: broadcast::Sender<Arc<ReportStored>>,
    pending: Mutex<Vec<Arc<ReportStored>>>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
            pending: Mutex::new(Vec::new()),
        }
    }
}

impl Events {
    /// Whether anyone listens (without a subscriber, nothing is copied).
    pub(super) fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<ReportStored>> {
        self.sender.subscribe()
    }

    pub(super) fn stored(&self, event: ReportStored) {
        self.lock().push(Arc::new(event));
    }

    /// The events whose writes the next flush will cover.
    pub(super) fn take(&self) -> Vec<Arc<ReportStored>> {
        std::mem::take(&mut *self.lock())
    }

    pub(super) fn publish(&self, events: Vec<Arc<ReportStored>>) {
        for event in events {
            // No subscriber is not an error: nobody needs to hear it.
            let _ = self.sender.send(event);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ReportStored>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ReportStored {
    /// The event of a batch the caller no longer needs: its samples and
    /// events move instead of being copied.
    pub(super) fn taken(device_id: &str, batch: &mut v1::ReportBatch, received_at_ms: i64) -> Self {
        Self {
            device_id: device_id.to_owned(),
            received_at_ms,
            collected_at_ms: batch.collected_at_unix_ms,
            samples: std::mem::take(&mut batch.samples),
            events: std::mem::take(&mut batch.events),
            dropped_reports: batch.dropped_reports,
            old_inventory: None,
            new_inventory: batch.inventory.take(),
        }
    }

    pub(super) fn of(
        device_id: &str,
        batch: &v1::ReportBatch,
        received_at_ms: i64,
        old_inventory: Option<v1::Inventory>,
    ) -> Self {
        Self {
            device_id: device_id.to_owned(),
            received_at_ms,
            collected_at_ms: batch.collected_at_unix_ms,
            samples: batch.samples.clone(),
            events: batch.events.clone(),
            dropped_reports: batch.dropped_reports,
            old_inventory,
            new_inventory: batch.inventory.clone(),
        }
    }
}
