//! Turns data into observations: what each rule says about a stored report
//! (thresholds, inventory changes, clock skew, spool drops, agent version)
//! and, on the periodic tick, about each device (absence, stale, never
//! seen, identity flags, disk-full forecasts). Reads the store but never
//! touches alert state, so it runs without the engine's lock.

use super::eval;
use super::rules::{Kind, Rule, RuleSet};
use crate::store::{DeviceForAlerts, DeviceRecord, IngestState, ReportStored, Store, StoreError};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use vakt_proto::v1;

/// The device facts alerts carry as labels and rules scope on.
#[derive(Clone, Debug, Default)]
pub struct DeviceCtx {
    pub device_id: String,
    pub hostname: String,
    pub department: String,
    pub class: String,
    pub labels: BTreeMap<String, String>,
}

impl DeviceCtx {
    pub fn of(record: &DeviceRecord, state: &IngestState) -> Self {
        let hostname = if state.hostname.is_empty() {
            record.enrolled_hostname.clone()
        } else {
            state.hostname.clone()
        };
        Self {
            device_id: record.device_id.clone(),
            hostname,
            department: record.department.clone(),
            class: record.class.clone(),
            labels: record.labels.clone(),
        }
    }

    /// The same from the tick's partial decode of the device record.
    pub fn for_tick(record: &DeviceForAlerts<'_>, state: &IngestState) -> Self {
        let hostname = if state.hostname.is_empty() {
            record.enrolled_hostname.as_ref()
        } else {
            state.hostname.as_str()
        };
        Self {
            device_id: record.device_id.clone().into_owned(),
            hostname: hostname.to_owned(),
            department: record.department.clone().into_owned(),
            class: record.class.clone().into_owned(),
            labels: record.labels.clone(),
        }
    }

    fn in_scope(&self, rule: &Rule) -> bool {
        rule.scope
            .matches(&self.department, &self.class, &self.labels)
    }
}

/// Whether the condition holds; thresholds are decided under the engine's
/// lock because hysteresis depends on the alert's current state.
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    Active(bool),
    Threshold {
        above: Option<f64>,
        below: Option<f64>,
        clear: f64,
    },
}

#[derive(Clone, Debug)]
pub struct Observation {
    pub rule: usize,
    pub device: usize,
    pub attributes: BTreeMap<String, String>,
    pub cond: Cond,
    pub value: f64,
    /// One-shot alerts stay firing this long after the last observation.
    pub hold: Option<Duration>,
    pub detail: Option<String>,
}

/// Observations plus the devices they refer to (by index).
#[derive(Default)]
pub struct Observations {
    pub devices: Vec<DeviceCtx>,
    pub items: Vec<Observation>,
}

impl Observations {
    fn push(&mut self, rule: usize, device: usize, cond: Cond, value: f64) -> &mut Observation {
        self.items.push(Observation {
            rule,
            device,
            attributes: BTreeMap::new(),
            cond,
            value,
            hold: None,
            detail: None,
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }
}

fn attrs_map(attributes: &[v1::Attribute]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect()
}

/// What the rules say about one durably stored report.
pub fn report(rules: &RuleSet, ctx: DeviceCtx, ev: &ReportStored) -> Observations {
    let mut out = Observations {
        devices: vec![ctx],
        items: Vec::new(),
    };
    let ctx = &out.devices[0];
    let mut items = Observations::default();
    for (ri, rule) in rules.rules.iter().enumerate() {
        if !ctx.in_scope(rule) {
            continue;
        }
        match &rule.kind {
            Kind::Threshold {
                metric,
                attributes,
                above,
                below,
                clear,
                ..
            } => {
                // The newest value of each matching series in this batch.
                let mut last: BTreeMap<BTreeMap<String, String>, (i64, f64)> = BTreeMap::new();
                for s in ev.samples.iter().filter(|s| &s.metric == metric) {
                    let attrs = attrs_map(&s.attributes);
                    if !attributes.iter().all(|(k, v)| attrs.get(k) == Some(v)) {
                        continue;
                    }
                    let ts = if s.timestamp_unix_ms == 0 {
                        ev.collected_at_ms
                    } else {
                        s.timestamp_unix_ms
                    };
                    let entry = last.entry(attrs).or_insert((ts, s.value));
                    if ts >= entry.0 {
                        *entry = (ts, s.value);
                    }
                }
                for (attrs, (_, value)) in last {
                    let cond = Cond::Threshold {
                        above: *above,
                        below: *below,
                        clear: *clear,
                    };
                    items.push(ri, 0, cond, value).attributes = attrs;
                }
            }
            Kind::ClockSkew { max } => {
                // Only a clock ahead is unambiguous: a report from the past may
                // simply have waited in the agent's spool.
                let ahead_ms = ev.collected_at_ms - ev.received_at_ms;
                let active = ahead_ms > i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
                items.push(ri, 0, Cond::Active(active), ahead_ms as f64 / 1000.0);
            }
            Kind::SpoolDrops { hold } if ev.dropped_reports > 0 => {
                let o = items.push(ri, 0, Cond::Active(true), ev.dropped_reports as f64);
                o.hold = Some(*hold);
                o.detail = Some(format!(
                    "{} reports dropped by the agent's spool",
                    ev.dropped_reports
                ));
            }
            Kind::InventoryChange { changes, hold } => {
                let (Some(old), Some(new)) = (&ev.old_inventory, &ev.new_inventory) else {
                    continue;
                };
                for d in eval::inventory_differences(old, new) {
                    if changes.contains(&d.change) {
                        let o = items.push(ri, 0, Cond::Active(true), 1.0);
                        o.attributes = d.attributes;
                        o.hold = Some(*hold);
                        o.detail = Some(d.detail);
                    }
                }
            }
            Kind::AgentVersion { minimum } => {
                if let Some(inv) = &ev.new_inventory {
                    let old = eval::version_older(&inv.agent_version, minimum);
                    let o = items.push(ri, 0, Cond::Active(old), 0.0);
                    o.detail = Some(format!(
                        "agent {} is older than {minimum}",
                        inv.agent_version
                    ));
                }
            }
            _ => {}
        }
    }
    out.items = items.items;
    out
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a tick found: observations, and which of the devices that had
/// alerts are still registered and not revoked.
#[derive(Default)]
pub struct Ticked {
    pub obs: Observations,
    pub seen: HashSet<String>,
}

/// What the time-based rules say about every device now. `due` says which
/// devices each forecast rule reads this tick (they read series history, so
/// each device is read less often). Only devices in `alerted` (those with an
/// alert) get observations that say "not active": for any other device such
/// an observation changes nothing, and skipping it saves a fingerprint and a
/// few strings per device and rule.
pub fn tick(
    rules: &RuleSet,
    store: &Store,
    report_interval: Duration,
    now: i64,
    due: &dyn Fn(usize, &str) -> bool,
    alerted: &HashSet<String>,
) -> Result<Ticked, StoreError> {
    let mut out = Ticked::default();
    store.for_each_device_for_alerts(|record: &DeviceForAlerts<'_>| {
        if record.revoked_at_ms != 0 {
            return Ok::<(), StoreError>(());
        }
        let has_alert = alerted.contains(record.device_id.as_ref());
        if has_alert {
            out.seen.insert(record.device_id.clone().into_owned());
        }
        let state = store.ingest_state(&record.device_id)?;
        let since_seen = now - state.last_seen_ms;
        // The device's index in `out.obs.devices`, once it has an observation.
        let mut di: Option<usize> = None;
        let mut ctx_index = |obs: &mut Observations| -> usize {
            *di.get_or_insert_with(|| {
                obs.devices.push(DeviceCtx::for_tick(record, &state));
                obs.devices.len() - 1
            })
        };
        for (ri, rule) in rules.rules.iter().enumerate() {
            if !rule
                .scope
                .matches(&record.department, &record.class, &record.labels)
            {
                continue;
            }
            let (cond, value, detail) = match &rule.kind {
                Kind::Offline {
                    missed_intervals,
                    excuse_events,
                } if state.last_seen_ms != 0 => {
                    let window = ms(report_interval) * i64::from(*missed_intervals);
                    let said = v1::EventKind::try_from(state.last_event).ok();
                    // The goodbye must be the last thing the device said.
                    let excused = said.is_some_and(|e| excuse_events.contains(&e))
                        && state.last_event_ms >= state.last_seen_ms - window;
                    let active = since_seen > window && !excused;
                    if !(active || has_alert) {
                        continue;
                    }
                    (
                        active,
                        since_seen as f64 / 1000.0,
                        Some(format!("last report {}s ago", since_seen / 1000)),
                    )
                }
                Kind::Stale { after } if state.last_seen_ms != 0 => {
                    let active = since_seen > ms(*after);
                    if !(active || has_alert) {
                        continue;
                    }
                    (
                        active,
                        since_seen as f64 / 1000.0,
                        Some(format!("last report {} days ago", since_seen / 86_400_000)),
                    )
                }
                Kind::NeverSeen { after } => {
                    let age = now - record.registered_at_ms;
                    let active = state.last_seen_ms == 0 && age > ms(*after);
                    if !(active || has_alert) {
                        continue;
                    }
                    (
                        active,
                        age as f64 / 1000.0,
                        Some(format!("registered {} days ago", age / 86_400_000)),
                    )
                }
                Kind::DeviceFlag { flags, hold } => {
                    let hit = record
                        .flags
                        .iter()
                        .filter(|f| flags.contains(&f.kind) && now - f.at_ms < ms(*hold))
                        .max_by_key(|f| f.at_ms);
                    if !(hit.is_some() || has_alert) {
                        continue;
                    }
                    (
                        hit.is_some(),
                        0.0,
                        hit.map(|f| format!("{}: {}", f.kind, f.detail)),
                    )
                }
                Kind::FilesystemFull {
                    metric,
                    within,
                    window,
                    min_points,
                    ..
                } if due(ri, &record.device_id) => {
                    let series = store.query_series(
                        &record.device_id,
                        metric,
                        &[],
                        now - ms(*window),
                        now,
                        100_000,
                    )?;
                    for s in series {
                        let points: Vec<(i64, f64)> = s
                            .points
                            .iter()
                            .map(|p| (p.timestamp_unix_ms, p.value))
                            .collect();
                        let eta = eval::ms_until_full(&points, now, *min_points);
                        let active = eta.is_some_and(|e| e <= within.as_millis() as f64);
                        if !(active || has_alert) {
                            continue;
                        }
                        let hours = eta.map_or(f64::INFINITY, |e| e / 3_600_000.0);
                        let d = ctx_index(&mut out.obs);
                        let o = out.obs.push(ri, d, Cond::Active(active), hours);
                        o.attributes = attrs_map(&s.attributes);
                        o.detail = eta.map(|e| {
                            format!(
                                "full in about {}",
                                humantime::format_duration(Duration::from_secs(
                                    (e / 1000.0) as u64
                                ))
                            )
                        });
                    }
                    continue;
                }
                _ => continue,
            };
            let d = ctx_index(&mut out.obs);
            out.obs.push(ri, d, Cond::Active(cond), value).detail = detail;
        }
        Ok(())
    })?;
    Ok(out)
}
