//! Alerting: rules → evaluation → lifecycle → notification outbox.
//!
//! The engine learns of new data from the store, never from the gRPC layer,
//! and hands every state change it wants delivered to the outbox as a
//! [`notification::Notification`]; delivery (Alertmanager, webhooks) only
//! ever reads the outbox.
//!
//! `rules` (format, defaults merge, line-precise errors) → `observe` (what
//! the rules say about a report or a tick) → `engine` (applies observations,
//! writes state and notifications atomically) using `lifecycle` (one alert's
//! transitions) and `silence`; `store` owns the sled trees.

pub mod defaults;
pub mod engine;
pub mod eval;
pub mod lifecycle;
pub mod notification;
pub mod notify;
pub mod observe;
pub mod rules;
pub mod schedule;
pub mod set;
pub mod silence;
pub mod store;

pub use engine::Engine;

use std::sync::Arc;

/// The engine as the notifier sees it: what is firing right now.
pub fn firing_alerts(engine: &Arc<Engine>) -> Arc<dyn notification::FiringAlerts> {
    engine.clone()
}
