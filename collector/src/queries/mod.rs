//! Fleet-wide questions: aggregations grouped by department, class or label,
//! current values ranked (top-k), inventory questions and the fleet summary.
//!
//! The gRPC adapter (`service/admin.rs`) validates and calls these; they read
//! through `Store` accessors only (`store/fleet_queries.rs`) and compute in
//! memory, one device at a time, so memory stays proportional to the answer
//! (and to the samples of one group for a p95).

pub mod fleet_rollups;
pub mod inventory;
pub mod step;
pub mod summary;

use crate::error::Error;
use crate::store::fleet_queries::{FleetDevice, SeriesRange};
use crate::store::{DeviceRecord, Store};
use std::collections::BTreeMap;
use vakt_proto::v1::{self, Aggregation, DeviceClass, GroupBy};
use vakt_proto::validate::{MAX_FLEET_QUERY_SAMPLES, MAX_QUERY_POINTS};

/// Whether a device is one the selector asks about. Revoked devices are no
/// longer part of the fleet; only the summary counts them.
pub fn selected(selector: Option<&v1::FleetSelector>, record: &DeviceRecord) -> bool {
    let Some(s) = selector else {
        return true;
    };
    if !s.department.is_empty() && record.department != s.department {
        return false;
    }
    let class = DeviceClass::try_from(s.class).unwrap_or(DeviceClass::Unspecified);
    if class != DeviceClass::Unspecified && record.class != class.short_name() {
        return false;
    }
    s.labels
        .iter()
        .all(|l| record.labels.get(&l.key) == Some(&l.value))
}

/// The group a device falls in; "" when it has no value for the grouping.
pub fn group_of(group_by: i32, label: &str, record: &DeviceRecord) -> String {
    match GroupBy::try_from(group_by).unwrap_or(GroupBy::None) {
        GroupBy::None => String::new(),
        GroupBy::Department => record.department.clone(),
        GroupBy::Class => record.class.clone(),
        GroupBy::Label => record.labels.get(label).cloned().unwrap_or_default(),
    }
}

/// Running aggregate of one group's samples.
#[derive(Debug, Default)]
pub struct Accumulator {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    /// Kept only when a percentile is asked for.
    values: Option<Vec<f64>>,
}

impl Accumulator {
    pub fn new(aggregation: Aggregation) -> Self {
        Self {
            values: (aggregation == Aggregation::P95).then(Vec::new),
            ..Default::default()
        }
    }

    pub fn add(&mut self, value: f64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
        self.last = value;
        if let Some(values) = &mut self.values {
            values.push(value);
        }
    }

    /// Adds a 5-minute rollup: its samples' min, max, sum and count (not
    /// for `Last` or percentiles, which need the samples themselves).
    pub fn add_rollup(&mut self, r: &crate::store::compact::Rollup) {
        if r.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = r.min;
            self.max = r.max;
        } else {
            self.min = self.min.min(r.min);
            self.max = self.max.max(r.max);
        }
        self.count += r.count;
        self.sum += r.sum;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The aggregate; `Count` gives the number of samples (callers wanting
    /// devices count those themselves). `None` without samples.
    pub fn finish(&mut self, aggregation: Aggregation) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        Some(match aggregation {
            Aggregation::Unspecified | Aggregation::Avg => self.sum / self.count as f64,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
            Aggregation::Last => self.last,
            Aggregation::Count => self.count as f64,
            Aggregation::Sum => self.sum,
            Aggregation::P95 => {
                // The rank's element alone, in linear time: a fleet's p95
                // can cover millions of samples.
                let values = self.values.as_mut()?;
                let rank = nearest_rank(values.len(), 95.0)?;
                *values.select_nth_unstable_by(rank - 1, f64::total_cmp).1
            }
        })
    }
}

/// The 1-based nearest rank of percentile `p` among `n` values: the sorted
/// position of the smallest value with at least `p` percent of the values at
/// or below it.
fn nearest_rank(n: usize, p: f64) -> Option<usize> {
    (n > 0).then(|| ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n))
}

/// `max(system.filesystem.utilization) by department` over a window.
pub fn aggregate(
    store: &Store,
    req: &v1::FleetAggregateRequest,
    now_ms: i64,
) -> Result<v1::FleetAggregateResponse, Error> {
    let aggregation = Aggregation::try_from(req.aggregation).unwrap_or(Aggregation::Avg);
    let until = if req.until_unix_ms == 0 {
        now_ms
    } else {
        req.until_unix_ms
    };
    let devices = store.fleet_devices(false, |r| {
        r.revoked_at_ms == 0 && selected(req.selector.as_ref(), r)
    })?;
    let range = SeriesRange {
        metric: &req.metric,
        filter: &req.attributes,
        since_ms: req.since_unix_ms,
        until_ms: until,
    };
    let mut groups: BTreeMap<String, (Accumulator, u32)> = BTreeMap::new();
    let mut scanned = 0usize;
    for device in &devices {
        let group = group_of(req.group_by, &req.group_label, &device.record);
        let (acc, with_samples) = groups
            .entry(group)
            .or_insert_with(|| (Accumulator::new(aggregation), 0));
        let budget = MAX_FLEET_QUERY_SAMPLES
            .saturating_sub(scanned)
            .min(MAX_QUERY_POINTS);
        // Aggregations that rollups answer read them, over whole 5-minute
        // buckets (see `fleet_rollups`).
        let visited = if fleet_rollups::answerable(aggregation) {
            fleet_rollups::visit(store, &device.record.device_id, &range, budget, |r| {
                acc.add_rollup(r)
            })
            .map(|(read, samples)| (read, samples > 0))
        } else {
            store
                .visit_samples(&device.record.device_id, &range, budget, |v| acc.add(v))
                .map(|n| (n, n > 0))
        };
        let (n, any) = visited.map_err(|e| match e {
            crate::store::StoreError::TooManyPoints(_) => Error::ResourceExhausted(format!(
                "more than {} samples per device or {MAX_FLEET_QUERY_SAMPLES} in all; \
                 use a shorter window",
                MAX_QUERY_POINTS
            )),
            other => other.into(),
        })?;
        scanned += n;
        if any {
            *with_samples += 1;
        }
    }
    let groups = groups
        .into_iter()
        .filter_map(|(group, (mut acc, devices))| {
            let samples = acc.count();
            let value = if aggregation == Aggregation::Count {
                f64::from(devices)
            } else {
                acc.finish(aggregation)?
            };
            (samples > 0).then_some(v1::FleetGroup {
                group,
                value,
                devices,
                samples,
            })
        })
        .collect::<Vec<_>>();
    Ok(v1::FleetAggregateResponse {
        groups: sort_groups_empty_last(groups, |g| &g.group),
        devices_scanned: u32::try_from(devices.len()).unwrap_or(u32::MAX),
    })
}

/// Named groups in order, the unnamed group ("no department") last.
fn sort_groups_empty_last<T>(mut items: Vec<T>, name: impl Fn(&T) -> &String) -> Vec<T> {
    items.sort_by(|a, b| {
        let (a, b) = (name(a), name(b));
        (a.is_empty(), a).cmp(&(b.is_empty(), b))
    });
    items
}

/// The newest value of `metric` of every series of every selected device,
/// ranked within each group; `k` rows per group.
pub fn top(store: &Store, req: &v1::FleetTopRequest) -> Result<v1::FleetTopResponse, Error> {
    let k = if req.k == 0 { 10 } else { req.k as usize };
    let devices = store.fleet_devices(false, |r| {
        r.revoked_at_ms == 0 && selected(req.selector.as_ref(), r)
    })?;
    let mut groups: BTreeMap<String, Vec<v1::FleetValue>> = BTreeMap::new();
    for FleetDevice { record, state, .. } in &devices {
        let latest = store.latest_values(&record.device_id, state, &req.metric, &req.attributes)?;
        for value in latest {
            if value.timestamp_ms < req.newer_than_unix_ms {
                continue;
            }
            let group = group_of(req.group_by, &req.group_label, record);
            groups
                .entry(group.clone())
                .or_default()
                .push(v1::FleetValue {
                    device_id: record.device_id.clone(),
                    hostname: display_hostname(record, state),
                    department: record.department.clone(),
                    class: DeviceClass::from_short_name(&record.class)
                        .unwrap_or(DeviceClass::Unspecified) as i32,
                    attributes: value.attributes,
                    value: value.value,
                    timestamp_unix_ms: value.timestamp_ms,
                    group,
                });
        }
    }
    let mut ranked: Vec<(String, Vec<v1::FleetValue>)> = groups.into_iter().collect();
    ranked = sort_groups_empty_last(ranked, |(g, _)| g);
    let mut values = Vec::new();
    for (_, mut rows) in ranked {
        rows.sort_by(|a, b| {
            let by_value = if req.ascending {
                a.value.total_cmp(&b.value)
            } else {
                b.value.total_cmp(&a.value)
            };
            by_value
                .then_with(|| a.hostname.cmp(&b.hostname))
                .then_with(|| a.device_id.cmp(&b.device_id))
        });
        rows.truncate(k);
        values.extend(rows);
    }
    Ok(v1::FleetTopResponse { values })
}

/// The hostname ops know a device by: what it last reported, else what it
/// enrolled with.
pub fn display_hostname(record: &DeviceRecord, state: &crate::store::IngestState) -> String {
    if state.hostname.is_empty() {
        record.enrolled_hostname.clone()
    } else {
        state.hostname.clone()
    }
}

#[cfg(test)]
mod tests;
