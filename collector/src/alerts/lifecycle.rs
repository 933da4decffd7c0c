//! One alert's life: pending → firing → resolved, acknowledgements, flap
//! damping, and which notifications receivers must hear. Pure state
//! transitions on a plain record (no I/O), so every rule is unit-tested here;
//! `engine.rs` decides when to call them and `store.rs` persists the result.

use super::notification::NotificationStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub author: String,
    pub comment: String,
    pub at_ms: i64,
    /// 0: until the alert resolves.
    pub until_ms: i64,
}

/// A notification written to the outbox, remembered on the alert for ops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub id: String,
    pub status: NotificationStatus,
    pub at_ms: i64,
    #[serde(default)]
    pub reason: String,
}

/// Newest notifications kept on the record (the outbox has them all).
const MAX_SENT: usize = 16;

/// The persisted alert record (JSON in the `alerts` tree, keyed by `id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The fingerprint (rule + device + attributes), hex.
    pub id: String,
    pub rule: String,
    pub device_id: String,
    pub attributes: BTreeMap<String, String>,
    pub severity: Severity,
    /// Everything receivers and silences match on: alertname, device,
    /// hostname, department, class, severity, rule labels, attributes.
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub description: String,
    pub state: State,
    /// When the condition last became true (start of pending).
    pub active_since_ms: i64,
    pub fired_at_ms: i64,
    pub resolved_at_ms: i64,
    pub updated_at_ms: i64,
    pub value: f64,
    /// How long the condition must hold before firing.
    pub for_ms: i64,
    /// One-shot alerts (inventory change, spool drops) end at this time.
    pub hold_until_ms: i64,
    pub ack: Option<Ack>,
    /// What receivers last heard about this alert.
    pub heard: Option<NotificationStatus>,
    /// Times of recent state changes (firing ↔ resolved), for flap damping.
    pub changes: Vec<i64>,
    pub flapping: bool,
    /// The one "flapping" notification has been written.
    pub flap_notified: bool,
    /// An acknowledgement expired while firing: tell receivers again.
    pub renotify: bool,
    pub sent: Vec<Sent>,
}

/// The engine's view of time and damping for one transition.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub flap_window_ms: i64,
    pub flap_max_changes: usize,
}

/// What a receiver must be told, decided by [`Alert::reconcile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Firing,
    Resolved,
    /// Firing again after an acknowledgement expired.
    Renotify,
    /// Started flapping: told once, then quiet until stable.
    Flapping,
}

impl Notice {
    pub fn status(self) -> NotificationStatus {
        match self {
            Notice::Resolved => NotificationStatus::Resolved,
            _ => NotificationStatus::Firing,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Notice::Firing => "firing",
            Notice::Resolved => "resolved",
            Notice::Renotify => "acknowledgement expired",
            Notice::Flapping => "flapping",
        }
    }
}

impl Alert {
    pub fn new(id: String, rule: String, device_id: String, now: i64) -> Self {
        Self {
            id,
            rule,
            device_id,
            attributes: BTreeMap::new(),
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            summary: String::new(),
            description: String::new(),
            state: State::Resolved,
            active_since_ms: 0,
            fired_at_ms: 0,
            resolved_at_ms: 0,
            updated_at_ms: now,
            value: 0.0,
            for_ms: 0,
            hold_until_ms: 0,
            ack: None,
            heard: None,
            changes: Vec::new(),
            flapping: false,
            flap_notified: false,
            renotify: false,
            sent: Vec::new(),
        }
    }

    /// Has this record never been anything but pending? (Then it can be
    /// forgotten when its condition clears: nobody has heard of it.)
    pub fn never_fired(&self) -> bool {
        self.fired_at_ms == 0
    }

    /// Acknowledged right now.
    pub fn acknowledged(&self, now: i64) -> bool {
        self.ack
            .as_ref()
            .is_some_and(|a| a.until_ms == 0 || a.until_ms > now)
    }

    /// The rule's condition was evaluated. Returns whether the state changed.
    pub fn observe(&mut self, active: bool, now: i64, policy: &Policy) -> bool {
        let before = self.state;
        match (self.state, active) {
            (State::Resolved, true) => {
                self.state = State::Pending;
                self.active_since_ms = now;
                self.promote(now, policy);
            }
            (State::Pending, true) => self.promote(now, policy),
            (State::Pending, false) => {
                // Never confirmed: back to what it was before.
                self.state = State::Resolved;
            }
            (State::Firing, false) => self.resolve(now, policy),
            (State::Firing, true) | (State::Resolved, false) => {}
        }
        if self.state != before {
            self.updated_at_ms = now;
        }
        self.state != before
    }

    fn promote(&mut self, now: i64, policy: &Policy) {
        if self.state == State::Pending && now - self.active_since_ms >= self.for_ms {
            self.state = State::Firing;
            self.fired_at_ms = now;
            self.resolved_at_ms = 0;
            self.changed(now, policy);
        }
    }

    fn resolve(&mut self, now: i64, policy: &Policy) {
        self.state = State::Resolved;
        self.resolved_at_ms = now;
        // An acknowledgement is for one firing episode.
        self.ack = None;
        self.renotify = false;
        self.changed(now, policy);
    }

    fn changed(&mut self, now: i64, policy: &Policy) {
        self.changes.push(now);
        self.prune_changes(now, policy);
        if !self.flapping && self.changes.len() > policy.flap_max_changes {
            self.flapping = true;
            self.flap_notified = false;
        }
    }

    fn prune_changes(&mut self, now: i64, policy: &Policy) {
        self.changes.retain(|t| now - t < policy.flap_window_ms);
    }

    /// Time passed: `for` elapsed, holds and acknowledgements expired, a
    /// flapping alert stable for a whole window. Returns whether anything changed.
    pub fn advance(&mut self, now: i64, policy: &Policy) -> bool {
        let before = (self.state, self.flapping, self.ack.is_some());
        if self.state == State::Pending {
            self.promote(now, policy);
        }
        if self.hold_until_ms != 0 && now >= self.hold_until_ms && self.state != State::Resolved {
            self.hold_until_ms = 0;
            if self.state == State::Firing {
                self.resolve(now, policy);
            } else {
                self.state = State::Resolved;
            }
        }
        if let Some(ack) = &self.ack
            && ack.until_ms != 0
            && ack.until_ms <= now
        {
            self.ack = None;
            if self.state == State::Firing {
                self.renotify = true;
            }
        }
        if self.flapping {
            self.prune_changes(now, policy);
            if self.changes.is_empty() {
                self.flapping = false;
                self.flap_notified = false;
            }
        }
        let changed = before != (self.state, self.flapping, self.ack.is_some()) || self.renotify;
        if changed {
            self.updated_at_ms = now;
        }
        changed
    }

    /// What receivers must hear now, given whether a silence covers the
    /// alert; updates `heard` as if it was written (the caller writes it in
    /// the same atomic batch as this record).
    pub fn reconcile(&mut self, silenced: bool) -> Option<Notice> {
        if self.flapping {
            self.renotify = false;
            if self.flap_notified || silenced {
                return None;
            }
            self.flap_notified = true;
            self.heard = Some(NotificationStatus::Firing);
            return Some(Notice::Flapping);
        }
        match self.state {
            State::Firing if silenced => {
                self.renotify = false;
                None
            }
            State::Firing if self.heard != Some(NotificationStatus::Firing) => {
                self.renotify = false;
                self.heard = Some(NotificationStatus::Firing);
                Some(Notice::Firing)
            }
            State::Firing if self.renotify => {
                self.renotify = false;
                Some(Notice::Renotify)
            }
            // Whoever heard it fire must hear it end, silence or not.
            State::Resolved if self.heard == Some(NotificationStatus::Firing) => {
                self.heard = Some(NotificationStatus::Resolved);
                Some(Notice::Resolved)
            }
            _ => None,
        }
    }

    /// Whether this record differs from `before` in more than its current
    /// value. A new value alone stays in the engine's memory (listings read
    /// it from there) and is written with the next real change: with 47,000
    /// `filesystem-high` alerts firing in a 19,000-device run, writing each
    /// report's value was a sled transaction and a watcher message per alert
    /// per report.
    pub fn changed_beyond_value(&self, before: &Alert) -> bool {
        let mut same_value = before.clone();
        same_value.value = self.value;
        *self != same_value
    }

    pub fn record_sent(&mut self, sent: Sent) {
        self.sent.push(sent);
        if self.sent.len() > MAX_SENT {
            let extra = self.sent.len() - MAX_SENT;
            self.sent.drain(..extra);
        }
    }

    /// The state shown to ops: acknowledged is a firing alert someone owns.
    pub fn shown_state(&self, now: i64) -> &'static str {
        if self.state == State::Firing && self.acknowledged(now) {
            "acknowledged"
        } else {
            self.state.name()
        }
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
