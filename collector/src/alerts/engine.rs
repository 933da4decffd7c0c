//! The alert engine: holds every alert and silence in memory (mirrored in
//! sled), applies observations to alerts, and writes each state change
//! together with the notifications it causes in one atomic batch.
//!
//! It runs as one task (`run`): "report stored" events from the store, a
//! periodic tick for time-based rules and expiries, and rule reloads
//! (SIGHUP or the Admin RPC) that keep every alert's state.

use super::lifecycle::{Ack, Alert, Notice, Policy, Sent, State};
use super::notification::{FiringAlerts, Notification};
use super::observe::{self, Cond, DeviceCtx, Observations};
use super::rules::{Kind, Rule, RuleSet};
use super::schedule;
use super::set::AlertSet;
use super::silence::Silence;
use super::store::{AlertTrees, Write};
use crate::error::Error;
use crate::metrics::SeverityLabel;
use crate::store::{ReportStored, Store};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;

/// One alert's new record (None: forget it) and the notifications it caused.
type Changed = (String, Option<Alert>, Vec<(u64, Notification)>);

/// Resolved alerts are listed for this long, then forgotten.
const RESOLVED_RETENTION_MS: i64 = 7 * 86_400_000;

pub struct Engine {
    trees: AlertTrees,
    inner: Mutex<Inner>,
    rules_path: Option<PathBuf>,
    report_interval: Duration,
    changes: broadcast::Sender<Alert>,
    firing_gauge: Family<SeverityLabel, Gauge>,
    reports: Mutex<Option<broadcast::Receiver<Arc<ReportStored>>>>,
}

struct Inner {
    rules: Arc<RuleSet>,
    alerts: AlertSet,
    silences: Vec<Silence>,
    /// When each forecast rule last ran over every device (by rule name);
    /// only for rules whose `every` is not longer than a tick.
    last_forecast: HashMap<String, i64>,
    /// Ticks so far: which slice of the fleet a long-period forecast reads.
    ticks: u64,
}

/// The fingerprint: rule + device + attributes, hex.
pub fn fingerprint(rule: &str, device: &str, attributes: &BTreeMap<String, String>) -> String {
    let mut h = sha2::Sha256::new();
    h.update(rule.as_bytes());
    h.update([0]);
    h.update(device.as_bytes());
    for (k, v) in attributes {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([0x1f]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

impl Engine {
    /// Loads rules (defaults merged with `rules_path`) and the persisted
    /// alerts and silences; subscribes to stored reports right away so
    /// nothing stored after this call is missed.
    pub fn open(
        store: &Store,
        rules_path: Option<PathBuf>,
        report_interval: Duration,
        firing_gauge: Family<SeverityLabel, Gauge>,
    ) -> anyhow::Result<Self> {
        let rules = super::rules::load(rules_path.as_deref())?;
        let trees = AlertTrees::open(store)?;
        let alerts = AlertSet::new(trees.load_alerts()?);
        let silences = trees.load_silences()?;
        let engine = Self {
            trees,
            inner: Mutex::new(Inner {
                rules: Arc::new(rules),
                alerts,
                silences,
                last_forecast: HashMap::new(),
                ticks: 0,
            }),
            rules_path,
            report_interval,
            changes: broadcast::channel(1024).0,
            firing_gauge,
            reports: Mutex::new(Some(store.subscribe_reports())),
        };
        engine.update_gauge(&engine.lock());
        Ok(engine)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.lock().rules.clone()
    }

    /// Runs until the store's event channel closes: reports, ticks, SIGHUP.
    pub async fn run(self: Arc<Self>, store: &Store) {
        let Some(mut reports) = self
            .reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            tracing::error!("the alert engine is already running");
            return;
        };
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut interval = tokio::time::interval(self.rules().evaluation_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let result = tokio::select! {
                ev = reports.recv() => match ev {
                    Ok(ev) => self.on_report(store, &ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "alert engine fell behind; some reports were not evaluated");
                        Ok(())
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = interval.tick() => self.tick(store).await,
                _ = hup => match self.reload() {
                    Ok(names) => {
                        tracing::info!(rules = names.len(), "alert rules reloaded (SIGHUP)");
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "alert rules not reloaded; keeping the old ones");
                        Ok(())
                    }
                },
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "alert evaluation failed");
            }
            let period = self.rules().evaluation_interval;
            if interval.period() != period {
                interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
        }
    }

    /// Evaluates the rules that look at reports.
    pub async fn on_report(&self, store: &Store, ev: &ReportStored) -> Result<(), Error> {
        let Some(record) = store.device(&ev.device_id)? else {
            return Ok(());
        };
        if record.revoked_at_ms != 0 {
            return Ok(());
        }
        let state = store.ingest_state(&ev.device_id)?;
        let rules = self.rules();
        let obs = observe::report(&rules, DeviceCtx::of(&record, &state), ev);
        if obs.items.is_empty() {
            return Ok(());
        }
        let now = vakt_proto::now_unix_ms();
        let wrote = {
            let mut inner = self.lock();
            let dirty = apply(&mut inner, &rules, &obs, now);
            self.commit(store, &mut inner, dirty, now, false)?
        };
        if wrote {
            store.durable().await?;
        }
        Ok(())
    }

    /// Time-based rules, pending → firing after `for`, expiries, silences.
    /// A pass over every device: it runs where blocking is allowed (the
    /// report streams' async workers stay free), and only the write's
    /// durability is awaited.
    pub async fn tick(&self, store: &Store) -> Result<(), Error> {
        let wrote = schedule::blocking(|| self.tick_now(store, vakt_proto::now_unix_ms()))?;
        if wrote {
            store.durable().await?;
        }
        Ok(())
    }

    fn tick_now(&self, store: &Store, now: i64) -> Result<bool, Error> {
        let rules = self.rules();
        let (plans, alerted) = {
            let mut inner = self.lock();
            inner.ticks = inner.ticks.wrapping_add(1);
            let ticks = inner.ticks;
            let plans = schedule::forecast_plans(&rules, &mut inner.last_forecast, ticks, now);
            // Devices with an alert: only they need observations that
            // say "not active" (for the others those change nothing).
            let alerted: HashSet<String> =
                inner.alerts.values().map(|a| a.device_id.clone()).collect();
            (plans, alerted)
        };
        let due = |ri: usize, device_id: &str| plans.get(ri).is_some_and(|p| p.due(device_id));
        let ticked = observe::tick(&rules, store, self.report_interval, now, &due, &alerted)?;
        let mut inner = self.lock();
        let mut dirty = apply(&mut inner, &rules, &ticked.obs, now);
        let policy = policy(&rules);
        dirty.extend(inner.alerts.update_all(|alert| {
            // Its device was deregistered or revoked since, or its rule removed.
            let gone = alerted.contains(&alert.device_id)
                && !ticked.seen.contains(&alert.device_id)
                || !rules.rules.iter().any(|r| r.name == alert.rule);
            let mut changed = gone && alert.observe(false, now, &policy);
            changed |= alert.advance(now, &policy);
            changed
        }));
        self.commit(store, &mut inner, dirty, now, true)
    }

    /// Decides notifications for the changed alerts (all alerts on a tick,
    /// so silence ends are noticed), writes them atomically, and tells
    /// watchers. Returns whether anything was written.
    fn commit(
        &self,
        store: &Store,
        inner: &mut Inner,
        mut dirty: Vec<String>,
        now: i64,
        all: bool,
    ) -> Result<bool, Error> {
        let explicit: std::collections::HashSet<String> = dirty.iter().cloned().collect();
        if all {
            dirty.extend(inner.alerts.keys().cloned());
        }
        dirty.sort();
        dirty.dedup();
        let mut changed: Vec<Changed> = Vec::new();
        for id in dirty {
            let silenced = match inner.alerts.get(&id) {
                Some(a) => inner.silences.iter().any(|s| s.covers(&a.labels, now)),
                None => continue,
            };
            let outcome = inner
                .alerts
                .update(&id, |alert| -> Result<Option<Changed>, Error> {
                    let before = alert.clone();
                    let mut notes = Vec::new();
                    if let Some(notice) = alert.reconcile(silenced) {
                        let key = store.generate_id()?;
                        let n = notification(alert, key, notice, now);
                        alert.record_sent(Sent {
                            id: n.id.clone(),
                            status: n.status,
                            at_ms: now,
                            reason: notice.reason().to_owned(),
                        });
                        notes.push((key, n));
                    }
                    let forget = alert.state == State::Resolved
                        && (alert.never_fired() && alert.heard.is_none()
                            || now - alert.resolved_at_ms > RESOLVED_RETENTION_MS);
                    Ok(if forget {
                        Some((id.clone(), None, notes))
                    } else if explicit.contains(&id) || *alert != before || !notes.is_empty() {
                        Some((id.clone(), Some(alert.clone()), notes))
                    } else {
                        None
                    })
                });
            if let Some(c) = outcome.transpose()?.flatten() {
                changed.push(c);
            }
        }
        if changed.is_empty() {
            return Ok(false);
        }
        let writes: Vec<Write<'_>> = changed
            .iter()
            .map(|(id, alert, notes)| Write {
                id,
                alert: alert.as_ref(),
                notifications: notes,
            })
            .collect();
        self.trees.write(&writes)?;
        for (id, alert, _) in &changed {
            match alert {
                Some(a) => {
                    let _ = self.changes.send(a.clone());
                }
                None => {
                    if let Some(mut a) = inner.alerts.remove(id) {
                        a.state = State::Resolved;
                        let _ = self.changes.send(a);
                    }
                }
            }
        }
        self.update_gauge(inner);
        Ok(true)
    }

    /// Sets the firing gauge from the counts `AlertSet` keeps as alerts
    /// change: O(severities), not O(alerts), per commit.
    fn update_gauge(&self, inner: &Inner) {
        for (severity, n) in inner.alerts.firing() {
            self.firing_gauge
                .get_or_create(&SeverityLabel {
                    severity: severity.name(),
                })
                .set(n);
        }
    }

    /// Replaces the rules with the defaults merged with the rules file;
    /// alerts keep their state (those of removed rules resolve on the next tick).
    pub fn reload(&self) -> anyhow::Result<Vec<String>> {
        let rules = super::rules::load(self.rules_path.as_deref())?;
        let names = rules.rules.iter().map(|r| r.name.clone()).collect();
        self.lock().rules = Arc::new(rules);
        Ok(names)
    }

    /// A stream of alert changes (for WatchAlerts).
    pub fn watch(&self) -> broadcast::Receiver<Alert> {
        self.changes.subscribe()
    }

    /// A snapshot of every alert and whether a silence covers it now.
    pub fn alerts(&self) -> Vec<(Alert, bool)> {
        let now = vakt_proto::now_unix_ms();
        let inner = self.lock();
        inner
            .alerts
            .values()
            .map(|a| {
                let silenced = inner.silences.iter().any(|s| s.covers(&a.labels, now));
                (a.clone(), silenced)
            })
            .collect()
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.lock().silences.clone()
    }

    /// Acknowledges a firing or pending alert by id (or a unique id prefix).
    pub async fn ack(&self, store: &Store, id: &str, ack: Ack) -> Result<Alert, Error> {
        let alert = {
            let mut inner = self.lock();
            let id = resolve_id(&inner, id)?;
            match inner.alerts.get(&id) {
                None => return Err(Error::NotFound(format!("no alert {id}"))),
                Some(a) if a.state == State::Resolved => {
                    return Err(Error::FailedPrecondition(format!(
                        "alert {id} is resolved; there is nothing to acknowledge"
                    )));
                }
                Some(_) => {}
            }
            let Some(alert) = inner.alerts.update(&id, |alert| {
                alert.ack = Some(ack);
                alert.renotify = false;
                alert.updated_at_ms = vakt_proto::now_unix_ms();
                alert.clone()
            }) else {
                return Err(Error::NotFound(format!("no alert {id}")));
            };
            self.trees.write(&[Write {
                id: &alert.id,
                alert: Some(&alert),
                notifications: &[],
            }])?;
            alert
        };
        store.durable().await?;
        let _ = self.changes.send(alert.clone());
        Ok(alert)
    }

    pub async fn add_silence(&self, store: &Store, mut silence: Silence) -> Result<Silence, Error> {
        silence.id = format!("s-{:012x}", store.generate_id()?);
        self.trees.put_silence(&silence)?;
        store.durable().await?;
        self.lock().silences.push(silence.clone());
        Ok(silence)
    }

    /// Ends a silence now; alerts it hid notify on the next tick.
    pub async fn expire_silence(&self, store: &Store, id: &str) -> Result<Silence, Error> {
        let now = vakt_proto::now_unix_ms();
        let silence = {
            let mut inner = self.lock();
            let Some(s) = inner.silences.iter_mut().find(|s| s.id == id) else {
                return Err(Error::NotFound(format!("no silence {id}")));
            };
            s.ends_at_ms = s.ends_at_ms.min(now);
            s.starts_at_ms = s.starts_at_ms.min(now);
            let s = s.clone();
            self.trees.put_silence(&s)?;
            s
        };
        store.durable().await?;
        Ok(silence)
    }
}

fn resolve_id(inner: &Inner, id: &str) -> Result<String, Error> {
    if inner.alerts.contains_key(id) {
        return Ok(id.to_owned());
    }
    let matches: Vec<&String> = inner
        .alerts
        .keys()
        .filter(|k| id.len() >= 4 && k.starts_with(id))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::NotFound(format!("no alert {id}"))),
        _ => Err(Error::NotFound(format!(
            "{id} names more than one alert; give more of the id"
        ))),
    }
}

fn policy(rules: &RuleSet) -> Policy {
    Policy {
        flap_window_ms: i64::try_from(rules.flap.window.as_millis()).unwrap_or(i64::MAX),
        flap_max_changes: rules.flap.max_changes,
    }
}

/// Applies observations to alerts; returns the ids that changed.
fn apply(inner: &mut Inner, rules: &RuleSet, obs: &Observations, now: i64) -> Vec<String> {
    let policy = policy(rules);
    let mut dirty = Vec::new();
    for o in &obs.items {
        let (Some(rule), Some(ctx)) = (rules.rules.get(o.rule), obs.devices.get(o.device)) else {
            continue;
        };
        let id = fingerprint(&rule.name, &ctx.device_id, &o.attributes);
        let existing = inner.alerts.get(&id);
        let was_active = existing.is_some_and(|a| a.state != State::Resolved);
        let active = match o.cond {
            Cond::Active(a) => a,
            Cond::Threshold {
                above,
                below,
                clear,
            } => super::eval::threshold_active(above, below, clear, o.value, was_active),
        };
        if existing.is_none() && !active {
            continue;
        }
        let changed = inner.alerts.upsert(
            &id,
            || Alert::new(id.clone(), rule.name.clone(), ctx.device_id.clone(), now),
            |alert| {
                let before = alert.clone();
                describe(alert, rule, ctx, o.attributes.clone(), o.detail.as_deref());
                alert.value = o.value;
                if active && let Some(hold) = o.hold {
                    alert.hold_until_ms =
                        now + i64::try_from(hold.as_millis()).unwrap_or(i64::MAX / 2);
                }
                // One-shot alerts end by their hold, not by a quiet observation.
                if active || o.hold.is_none() {
                    alert.observe(active, now, &policy);
                }
                // A new value alone is not written (see `changed_beyond_value`).
                alert.changed_beyond_value(&before)
            },
        );
        if changed {
            dirty.push(id);
        }
    }
    dirty
}

/// Labels and texts from the rule and the device (they may change with a reload).
fn describe(
    alert: &mut Alert,
    rule: &Rule,
    ctx: &DeviceCtx,
    attributes: BTreeMap<String, String>,
    detail: Option<&str>,
) {
    let mut labels = rule.labels.clone();
    labels.extend(attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in [
        ("alertname", rule.name.as_str()),
        ("device", ctx.device_id.as_str()),
        ("hostname", ctx.hostname.as_str()),
        ("department", ctx.department.as_str()),
        ("class", ctx.class.as_str()),
        ("severity", rule.severity.name()),
    ] {
        labels.insert(k.to_owned(), v.to_owned());
    }
    alert.labels = labels;
    alert.attributes = attributes;
    alert.severity = rule.severity;
    alert.summary = format!("{}: {}", display_name(ctx), rule.summary);
    alert.description = match detail {
        Some(d) if rule.description.is_empty() => d.to_owned(),
        Some(d) => format!("{} ({d})", rule.description),
        None => rule.description.clone(),
    };
    alert.for_ms = match &rule.kind {
        Kind::Threshold { for_, .. } => i64::try_from(for_.as_millis()).unwrap_or(i64::MAX),
        _ => 0,
    };
}

fn display_name(ctx: &DeviceCtx) -> &str {
    if ctx.hostname.is_empty() {
        &ctx.device_id
    } else {
        &ctx.hostname
    }
}

fn notification(alert: &Alert, key: u64, notice: Notice, now: i64) -> Notification {
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_owned(), alert.summary.clone());
    annotations.insert("description".to_owned(), alert.description.clone());
    if notice == Notice::Flapping {
        annotations.insert(
            "flapping".to_owned(),
            "state changes too often; further changes are not notified until it is stable"
                .to_owned(),
        );
    }
    if notice == Notice::Renotify {
        annotations.insert(
            "renotify".to_owned(),
            "acknowledgement expired while still firing".to_owned(),
        );
    }
    Notification {
        id: format!("{key:016x}"),
        fingerprint: alert.id.clone(),
        status: notice.status(),
        labels: alert.labels.clone(),
        annotations,
        starts_at_unix_ms: if alert.fired_at_ms != 0 {
            alert.fired_at_ms
        } else {
            now
        },
        ends_at_unix_ms: (notice == Notice::Resolved)
            .then_some(alert.resolved_at_ms.max(alert.fired_at_ms)),
        generator_url: format!("vaktctl alerts --device {}", alert.device_id),
    }
}

impl FiringAlerts for Engine {
    fn firing(&self) -> Vec<Notification> {
        let now = vakt_proto::now_unix_ms();
        let inner = self.lock();
        inner
            .alerts
            .values()
            .filter(|a| a.state == State::Firing && !a.acknowledged(now))
            .filter(|a| !inner.silences.iter().any(|s| s.covers(&a.labels, now)))
            .map(|a| {
                let mut n = notification(a, 0, Notice::Firing, now);
                // Stable per firing episode, so re-sends deduplicate.
                n.id = format!("{}-{}", a.id, a.fired_at_ms);
                n
            })
            .collect()
    }
}
