//! The contract between the alert engine (which decides what to say) and the
//! notifiers (which deliver it): one [`Notification`] per state change that a
//! receiver must hear about, stored durably in the outbox before it is sent.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a notification announces or ends an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Firing,
    Resolved,
}

/// One alert state change, as receivers see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique per notification; receivers use it as the idempotency key.
    pub id: String,
    /// Stable per alert (rule + device + attributes), hex.
    pub fingerprint: String,
    pub status: NotificationStatus,
    /// At least `alertname`, `device`, `hostname`, `department`, `class` and
    /// `severity`, plus the rule's own labels.
    pub labels: BTreeMap<String, String>,
    /// At least `summary` and `description`.
    pub annotations: BTreeMap<String, String>,
    pub starts_at_unix_ms: i64,
    /// Set when `status` is `Resolved`.
    pub ends_at_unix_ms: Option<i64>,
    /// Where a human can look at the alert (a `vaktctl` hint or a URL).
    pub generator_url: String,
}

/// The alerts firing right now, which Alertmanager expects to be re-sent
/// while they last (it resolves an alert it has not heard of for
/// `resolve_timeout`). Implemented by the alert engine.
pub trait FiringAlerts: Send + Sync {
    fn firing(&self) -> Vec<Notification>;
}
