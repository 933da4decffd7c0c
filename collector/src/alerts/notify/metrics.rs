//! Notification metrics, per receiver (the receiver's configured name).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
}

impl ReceiverLabel {
    pub fn new(receiver: &str) -> Self {
        Self {
            receiver: receiver.to_owned(),
        }
    }
}

#[derive(Default)]
pub struct NotifyMetrics {
    /// Notifications a receiver answered 2xx to.
    pub sent: Family<ReceiverLabel, Counter>,
    /// Delivery attempts that failed and will be retried.
    pub failed: Family<ReceiverLabel, Counter>,
    /// Notifications a receiver refused as malformed (set aside, not retried).
    pub refused: Family<ReceiverLabel, Counter>,
    /// Notifications in the outbox this receiver has not taken yet.
    pub queued: Family<ReceiverLabel, Gauge>,
    /// Alertmanager re-sends of the alerts still firing.
    pub resent: Family<ReceiverLabel, Counter>,
    /// Unreadable outbox records set aside.
    pub unreadable: Counter,
}

impl NotifyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications_sent",
            "Notifications delivered (receiver answered 2xx), by receiver",
            self.sent.clone(),
        );
        registry.register(
            "notifications_failed",
            "Notification delivery attempts that failed and will be retried, by receiver",
            self.failed.clone(),
        );
        registry.register(
            "notifications_refused",
            "Notifications a receiver refused as malformed (set aside in outbox_dead)",
            self.refused.clone(),
        );
        registry.register(
            "notifications_queued",
            "Notifications waiting in the outbox for this receiver",
            self.queued.clone(),
        );
        registry.register(
            "notifications_resent",
            "Batches of still-firing alerts re-sent to Alertmanager",
            self.resent.clone(),
        );
        registry.register(
            "notifications_unreadable",
            "Outbox records that did not parse and were set aside",
            self.unreadable.clone(),
        );
    }
}
