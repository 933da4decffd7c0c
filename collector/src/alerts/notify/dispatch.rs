//! The delivery loops: one worker per receiver, the outbox watcher that
//! wakes them, and the Alertmanager re-send of what is still firing.

use super::metrics::ReceiverLabel;
use super::receiver::{Failure, Receiver, Sink};
use crate::alerts::notification::FiringAlerts;
use crate::service::SharedRef;
use crate::store::outbox::{Outbox, OutboxKey};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// The first retry waits about this long; each further one twice as long, up
/// to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Workers look at the outbox at least this often even without a wake-up
/// (a safety net under the sled subscription).
const POLL: Duration = Duration::from_secs(1);
/// A worker reads from the start again at least this often, for records
/// committed out of id order (two writers: the later id committed first).
const RESCAN: Duration = Duration::from_secs(10);

/// Sleeps `d`; true if told to stop meanwhile.
async fn stopped_during(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// "Equal jitter": half the backoff fixed, half random, so retries of many
/// collectors spread out but never collapse to zero.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    let extra = rand::rng().random_range(0..=half.as_millis().max(1));
    half + Duration::from_millis(u64::try_from(extra).unwrap_or(0))
}

pub(super) async fn watcher(
    mut events: sled::Subscriber,
    wakes: Vec<Arc<Notify>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            event = &mut events => {
                if event.is_none() {
                    return;
                }
                // notify_one keeps a permit for a worker that is busy now.
                for wake in &wakes {
                    wake.notify_one();
                }
            }
            _ = stop.changed() => return,
        }
    }
}

pub(super) struct Worker {
    pub shared: SharedRef,
    pub outbox: Outbox,
    pub receiver: Arc<Receiver>,
    /// Every configured receiver: a record leaves when all have taken it.
    pub receivers: Arc<Vec<String>>,
    pub wake: Arc<Notify>,
    pub stop: watch::Receiver<bool>,
    pub max_backoff: Duration,
}

pub(super) async fn worker(mut w: Worker) {
    let name = w.receiver.name.clone();
    let label = ReceiverLabel::new(&name);
    let mut cursor: Option<OutboxKey> = None;
    let mut last_full_scan = Instant::now();
    loop {
        if *w.stop.borrow() {
            return;
        }
        let entry = match w.outbox.next_for(&name, cursor) {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                if cursor.is_some() && last_full_scan.elapsed() >= RESCAN {
                    cursor = None;
                    last_full_scan = Instant::now();
                    continue;
                }
                w.receiver.set_drained(true);
                tokio::select! {
                    _ = w.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = w.stop.changed() => return,
                }
                continue;
            }
            Err(e) => {
                tracing::error!(receiver = %name, error = %e, "read the outbox");
                if stopped_during(&mut w.stop, POLL).await {
                    return;
                }
                continue;
            }
        };
        w.receiver.set_drained(false);
        let notification = match entry.notification {
            Ok(n) => n,
            Err(reason) => {
                match w.outbox.bury(&entry.key, &reason) {
                    Ok(true) => {
                        w.shared.metrics.notify.unreadable.inc();
                        tracing::error!(
                            key = %hex::encode(entry.key),
                            %reason,
                            "unreadable outbox record moved to outbox_dead; it will not be sent"
                        );
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "set aside an unreadable outbox record");
                        if stopped_during(&mut w.stop, POLL).await {
                            return;
                        }
                    }
                }
                continue;
            }
        };

        let mut backoff = FIRST_BACKOFF;
        let mut attempts: u32 = 0;
        loop {
            let outcome = tokio::select! {
                outcome = w.receiver.deliver(&notification) => outcome,
                // Whether it arrived is unknown; it stays queued (at least once).
                _ = w.stop.changed() => return,
            };
            attempts += 1;
            match outcome {
                Ok(()) => {
                    w.shared.metrics.notify.sent.get_or_create(&label).inc();
                    if attempts > 1 {
                        tracing::info!(receiver = %name, id = %notification.id, attempts, "notification delivered after retries");
                    } else {
                        tracing::debug!(receiver = %name, id = %notification.id, "notification delivered");
                    }
                    break;
                }
                Err(Failure::Refused(why)) => {
                    w.shared.metrics.notify.refused.get_or_create(&label).inc();
                    tracing::error!(
                        receiver = %name, id = %notification.id, error = %why,
                        "receiver refused the notification; set aside in outbox_dead, not retried"
                    );
                    if let Err(e) = w.outbox.record_refusal(&entry.key, &name, &why) {
                        tracing::error!(error = %e, "keep the refused notification");
                    }
                    break;
                }
                Err(Failure::Transient(why)) => {
                    w.shared.metrics.notify.failed.get_or_create(&label).inc();
                    // Loud on the first failure and then ever more rarely:
                    // a receiver down for a day must not flood the log.
                    if attempts.is_power_of_two() {
                        tracing::warn!(receiver = %name, id = %notification.id, attempts, error = %why, "notification delivery failed; will retry");
                    } else {
                        tracing::debug!(receiver = %name, id = %notification.id, attempts, error = %why, "notification delivery failed; will retry");
                    }
                    let wait = jittered(backoff);
                    backoff = (backoff * 2).min(w.max_backoff);
                    if stopped_during(&mut w.stop, wait).await {
                        return;
                    }
                }
            }
        }
        if let Err(e) = w.outbox.ack(&entry.key, &name, &w.receivers) {
            // Not recorded: it will be sent again (at least once).
            tracing::error!(receiver = %name, error = %e, "record a delivery in the outbox");
            if stopped_during(&mut w.stop, POLL).await {
                return;
            }
            continue;
        }
        // Made durable before moving on, so a crash re-sends at most the
        // deliveries of the last group commit.
        if let Err(e) = w.shared.store.durable().await {
            tracing::warn!(error = %e, "flush the outbox");
        }
        cursor = Some(entry.key);
    }
}

/// Re-sends every alert still firing to one Alertmanager every `interval`,
/// once that receiver's queue is drained (so a queued resolve always goes
/// first).
pub(super) async fn resend(
    shared: SharedRef,
    receiver: Arc<Receiver>,
    firing: Arc<dyn FiringAlerts>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let Sink::Alertmanager(am) = &receiver.sink else {
        return;
    };
    let label = ReceiverLabel::new(&receiver.name);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !receiver.is_drained() {
            continue;
        }
        let source = firing.clone();
        let alerts = match tokio::task::spawn_blocking(move || source.firing()).await {
            Ok(alerts) => alerts,
            Err(e) => {
                tracing::error!(error = %e, "list the firing alerts");
                continue;
            }
        };
        for chunk in alerts.chunks(super::alertmanager::RESEND_BATCH) {
            match am.send(chunk).await {
                Ok(()) => {
                    shared.metrics.notify.resent.get_or_create(&label).inc();
                }
                Err(e) => {
                    shared.metrics.notify.failed.get_or_create(&label).inc();
                    tracing::debug!(receiver = %receiver.name, error = %e, "re-send of firing alerts failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_full() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }
}
