//! Delivery: everything after the outbox.
//!
//! The alert engine writes each [`Notification`] into the sled tree `outbox`
//! in the same atomic write as the state change it announces. Here, one
//! worker per configured receiver walks the outbox in key order and delivers
//! each record, retrying with exponential backoff and jitter until the
//! receiver answers 2xx; the record leaves the outbox only when every
//! receiver has taken it (`store::outbox`). A receiver that is down, or a
//! collector restart, delays a notification but never loses it.
//!
//! Delivery is **at least once**: a crash between a receiver's 2xx and the
//! durable record of it sends that notification again after the restart.
//! Every copy carries the same `Notification.id` (webhook: `Idempotency-Key`
//! header; Alertmanager de-duplicates by labels itself).
//!
//! Per receiver, records go out one at a time, in order, so a "resolved"
//! never overtakes its "firing"; one slow receiver never holds up another.

pub mod alertmanager;
pub mod config;
mod dispatch;
pub mod http;
pub mod metrics;
pub mod receiver;
pub mod webhook;

pub use config::NotifyConfig;

use crate::alerts::notification::{FiringAlerts, Notification};
use crate::service::SharedRef;
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The running delivery tasks.
pub struct Notifier {
    tasks: Vec<JoinHandle<()>>,
}

impl Notifier {
    /// Waits for every task to stop (after the stop signal).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts a worker per configured receiver (and, given the engine's
/// [`FiringAlerts`], the Alertmanager re-sends). Everything stops when `stop`
/// turns true.
pub fn start(
    shared: SharedRef,
    firing: Option<Arc<dyn FiringAlerts>>,
    stop: watch::Receiver<bool>,
) -> Result<Notifier> {
    let config = shared.config.notify.clone();
    let receivers: Vec<Arc<receiver::Receiver>> = receiver::build(&config)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let outbox = shared.store.outbox().context("open the outbox")?;
    let names: Arc<Vec<String>> = Arc::new(receivers.iter().map(|r| r.name.clone()).collect());
    outbox.tidy(&names).context("tidy the outbox")?;
    let mut tasks = Vec::new();
    if receivers.is_empty() {
        if !outbox.is_empty() {
            tracing::warn!(
                queued = outbox.len(),
                "notifications are queued but no receiver is configured ([notify] in collector.toml)"
            );
        }
        return Ok(Notifier { tasks });
    }

    // Every receiver's series exist from the start, so rate() and the
    // dashboard see a 0 rather than nothing.
    for name in names.iter() {
        let label = metrics::ReceiverLabel::new(name);
        let m = &shared.metrics.notify;
        let _ = m.sent.get_or_create(&label);
        let _ = m.failed.get_or_create(&label);
        let _ = m.refused.get_or_create(&label);
        let _ = m.queued.get_or_create(&label);
        if matches!(
            receivers.iter().find(|r| &r.name == name).map(|r| &r.sink),
            Some(receiver::Sink::Alertmanager(_))
        ) {
            let _ = m.resent.get_or_create(&label);
        }
    }
    let wakes: Vec<Arc<Notify>> = receivers.iter().map(|_| Arc::new(Notify::new())).collect();
    tasks.push(tokio::spawn(dispatch::watcher(
        outbox.watch(),
        wakes.clone(),
        stop.clone(),
    )));
    for (receiver, wake) in receivers.iter().zip(wakes) {
        tasks.push(tokio::spawn(dispatch::worker(dispatch::Worker {
            shared: shared.clone(),
            outbox: outbox.clone(),
            receiver: receiver.clone(),
            receivers: names.clone(),
            wake,
            stop: stop.clone(),
            max_backoff: config.retry_max_backoff,
        })));
        if let (Some(firing), receiver::Sink::Alertmanager(_)) = (&firing, &receiver.sink) {
            tasks.push(tokio::spawn(dispatch::resend(
                shared.clone(),
                receiver.clone(),
                firing.clone(),
                config.resend_interval,
                stop.clone(),
            )));
        }
    }
    tracing::info!(receivers = ?names, queued = outbox.len(), "notification delivery started");
    Ok(Notifier { tasks })
}

/// Refreshes the per-receiver queue gauges (called at scrape time).
pub fn update_queue_metrics(shared: &SharedRef) {
    let Ok(outbox) = shared.store.outbox() else {
        return;
    };
    for name in shared.config.notify.receiver_names() {
        if let Ok(n) = outbox.pending_for(&name) {
            shared
                .metrics
                .notify
                .queued
                .get_or_create(&metrics::ReceiverLabel::new(&name))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// For tests and tools: the notification as a receiver would see it.
pub fn webhook_body(n: &Notification) -> serde_json::Value {
    webhook::body(n)
}
