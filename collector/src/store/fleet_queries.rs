//! Store-level scans for fleet-wide questions, built only on the public
//! per-device accessors (`devices`, `ingest_state`, `inventory`,
//! `query_series`), so they keep working whatever the sample encoding is.

use super::{DeviceRecord, IngestState, Result, Store};
use vakt_proto::v1;

/// How far before a device's newest report its "current" value of a metric
/// is looked for: long enough for metrics an agent sends less often than
/// every report, short enough that the scan stays a small range per series.
pub const LATEST_LOOKBACK_MS: i64 = 3600 * 1000;

/// One device as fleet questions see it.
#[derive(Clone, Debug, Default)]
pub struct FleetDevice {
    pub record: DeviceRecord,
    pub state: IngestState,
    /// Only loaded when asked for (it is the largest per-device value).
    pub inventory: Option<v1::Inventory>,
}

/// The newest sample of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct LatestValue {
    pub attributes: Vec<v1::Attribute>,
    pub value: f64,
    pub timestamp_ms: i64,
}

impl Store {
    /// Every registered device that `keep` accepts, with its ingest state and
    /// (if `with_inventory`) its inventory.
    pub fn fleet_devices(
        &self,
        with_inventory: bool,
        keep: impl Fn(&DeviceRecord) -> bool,
    ) -> Result<Vec<FleetDevice>> {
        let mut out = Vec::new();
        for record in self.devices()? {
            if !keep(&record) {
                continue;
            }
            let state = self.ingest_state(&record.device_id)?;
            let inventory = if with_inventory {
                self.inventory(&record.device_id)?
            } else {
                None
            };
            out.push(FleetDevice {
                record,
                state,
                inventory,
            });
        }
        Ok(out)
    }

    /// The newest value of every series of `metric` (whose attributes include
    /// `filter`) that the device sent around its newest report. Anchored on
    /// the report rather than on "now", so a laptop that has been asleep for a
    /// week still has a current disk usage, and the scan is one short range.
    pub fn latest_values(
        &self,
        device_id: &str,
        state: &IngestState,
        metric: &str,
        filter: &[v1::Attribute],
    ) -> Result<Vec<LatestValue>> {
        if state.last_seen_ms == 0 {
            return Ok(Vec::new());
        }
        // The agent's clock (collected_at) and the collector's (last_seen)
        // may disagree; cover both.
        let anchors = [state.last_seen_ms, state.last_collected_ms];
        let newest = anchors.iter().copied().max().unwrap_or(0);
        let oldest = anchors
            .iter()
            .copied()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(newest);
        let series = self.query_series(
            device_id,
            metric,
            filter,
            oldest.saturating_sub(LATEST_LOOKBACK_MS).max(0),
            newest.saturating_add(vakt_proto::validate::MAX_CLOCK_AHEAD_MS),
            vakt_proto::validate::MAX_QUERY_POINTS,
        )?;
        Ok(series
            .into_iter()
            .filter_map(|s| {
                let last = s.points.last()?;
                Some(LatestValue {
                    value: last.value,
                    timestamp_ms: last.timestamp_unix_ms,
                    attributes: s.attributes,
                })
            })
            .collect())
    }

    /// Calls `visit` with every sample of the range the device has; returns
    /// how many. At most `max_points` are read for the device.
    pub fn visit_samples(
        &self,
        device_id: &str,
        range: &SeriesRange<'_>,
        max_points: usize,
        mut visit: impl FnMut(f64),
    ) -> Result<usize> {
        if self.resolution_for(range.since_ms, 0) == super::read::Resolution::Raw {
            // The samples themselves, without building points per series.
            let mut n = 0;
            for (_, _, points) in self.raw_samples(
                device_id,
                range.metric,
                range.filter,
                range.since_ms,
                range.until_ms,
            )? {
                n += points.len();
                if n > max_points {
                    return Err(super::StoreError::TooManyPoints(max_points));
                }
                points.iter().for_each(|(_, v)| visit(*v));
            }
            return Ok(n);
        }
        let series = self.query_series(
            device_id,
            range.metric,
            range.filter,
            range.since_ms,
            range.until_ms,
            max_points,
        )?;
        let mut n = 0;
        for point in series.iter().flat_map(|s| &s.points) {
            visit(point.value);
            n += 1;
        }
        Ok(n)
    }
}

/// Which samples of a device a fleet scan reads: the series of `metric`
/// whose attributes include `filter`, within `[since_ms, until_ms]`.
#[derive(Clone, Copy, Debug)]
pub struct SeriesRange<'a> {
    pub metric: &'a str,
    pub filter: &'a [v1::Attribute],
    pub since_ms: i64,
    pub until_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(metric: &str, mount: &str, value: f64, at: i64) -> v1::Sample {
        v1::Sample {
            metric: metric.into(),
            attributes: vec![v1::Attribute {
                key: "mountpoint".into(),
                value: mount.into(),
            }],
            value,
            timestamp_unix_ms: at,
        }
    }

    #[tokio::test]
    async fn latest_values_and_visits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), 1 << 20).expect("open");
        let now = vakt_proto::now_unix_ms();
        let m = "system.filesystem.utilization";
        // An old batch well outside the lookback, then the newest one.
        for (seq, at, root) in [(1, now - 3 * LATEST_LOOKBACK_MS, 0.1), (2, now - 1000, 0.5)] {
            let batch = v1::ReportBatch {
                sequence: seq,
                collected_at_unix_ms: at,
                samples: vec![sample(m, "/", root, at), sample(m, "/home", 0.9, at)],
                ..Default::default()
            };
            store.ingest("d-1", &batch, at).expect("ingest");
        }
        let state = store.ingest_state("d-1").expect("state");
        let latest = store.latest_values("d-1", &state, m, &[]).expect("latest");
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[0].value, 0.5);
        assert_eq!(latest[0].timestamp_ms, now - 1000);
        let filter = [v1::Attribute {
            key: "mountpoint".into(),
            value: "/home".into(),
        }];
        let latest = store
            .latest_values("d-1", &state, m, &filter)
            .expect("latest");
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].value, 0.9);
        // A device that never reported has no current values.
        let none = store
            .latest_values("d-2", &IngestState::default(), m, &[])
            .expect("latest");
        assert!(none.is_empty());

        let mut sum = 0.0;
        let n = store
            .visit_samples(
                "d-1",
                &SeriesRange {
                    metric: m,
                    filter: &[],
                    since_ms: 0,
                    until_ms: now,
                },
                1000,
                |v| sum += v,
            )
            .expect("visit");
        assert_eq!((n, sum), (4, 0.1 + 0.5 + 0.9 + 0.9));

        let devices = store.fleet_devices(true, |_| true).expect("fleet");
        assert!(devices.is_empty(), "ingest alone registers nothing");
    }
}
