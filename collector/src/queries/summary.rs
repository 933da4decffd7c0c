//! `vaktctl summary`: per department and class, where every device stands
//! (online, asleep, off, offline, stale, never seen, revoked) and what needs
//! proactive work (low disk, degraded batteries, outdated OS, alerts firing).

use super::inventory::{BATTERY_HEALTH_METRIC, compare_versions};
use super::selected;
use crate::error::Error;
use crate::fleet;
use crate::store::Store;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use vakt_proto::v1::{self, DeviceClass, DeviceStatus};

pub const FILESYSTEM_UTILIZATION_METRIC: &str = "system.filesystem.utilization";
pub const DEFAULT_DISK_THRESHOLD: f64 = 0.9;
pub const DEFAULT_BATTERY_THRESHOLD: f64 = 0.8;
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Firing alerts per device id, as the alert engine holds them now (the
/// service adapter takes this snapshot so queries never reach into the
/// engine).
pub fn firing_by_device(
    alerts: &[(crate::alerts::lifecycle::Alert, bool)],
) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for (alert, _silenced) in alerts {
        if alert.state == crate::alerts::lifecycle::State::Firing {
            *counts.entry(alert.device_id.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// Where one device stands; each device is in exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Online,
    Asleep,
    Off,
    Offline,
    /// Seen before, but not within the stale-after period.
    Stale,
    NeverSeen,
    Revoked,
}

/// What the summary needs to know about one device.
#[derive(Clone, Debug)]
pub struct Facts {
    pub department: String,
    pub class: String,
    pub standing: Standing,
    pub low_disk: bool,
    pub degraded_battery: bool,
    /// OS name and version from the inventory.
    pub os: Option<(String, String)>,
    pub alerts_firing: u32,
}

pub fn standing(status: DeviceStatus, last_seen_ms: i64, now_ms: i64, stale_ms: i64) -> Standing {
    let stale = now_ms.saturating_sub(last_seen_ms) > stale_ms;
    match status {
        DeviceStatus::Revoked => Standing::Revoked,
        DeviceStatus::NeverSeen | DeviceStatus::Unspecified => Standing::NeverSeen,
        DeviceStatus::Online => Standing::Online,
        _ if stale => Standing::Stale,
        DeviceStatus::Asleep => Standing::Asleep,
        DeviceStatus::Off => Standing::Off,
        DeviceStatus::Offline => Standing::Offline,
    }
}

pub fn summary(
    store: &Store,
    req: &v1::FleetSummaryRequest,
    now_ms: i64,
    report_interval: Duration,
    firing_by_device: &HashMap<String, u32>,
) -> Result<v1::FleetSummaryResponse, Error> {
    let or = |v: f64, default: f64| if v == 0.0 { default } else { v };
    let disk = or(req.disk_utilization_threshold, DEFAULT_DISK_THRESHOLD);
    let battery = or(req.battery_health_threshold, DEFAULT_BATTERY_THRESHOLD);
    let stale = if req.stale_after_seconds == 0 {
        DEFAULT_STALE_AFTER
    } else {
        Duration::from_secs(req.stale_after_seconds)
    };
    let stale_ms = i64::try_from(stale.as_millis()).unwrap_or(i64::MAX);
    let devices = store.fleet_devices(true, |r| selected(req.selector.as_ref(), r))?;
    let mut facts = Vec::with_capacity(devices.len());
    for device in &devices {
        let (record, state) = (&device.record, &device.state);
        let status = fleet::status(record, state, now_ms, report_interval);
        let standing = standing(status, state.last_seen_ms, now_ms, stale_ms);
        let active = standing != Standing::Revoked;
        let any_latest = |metric: &str, bad: &dyn Fn(f64) -> bool| -> Result<bool, Error> {
            if !active {
                return Ok(false);
            }
            let latest = store.latest_values(&record.device_id, state, metric, &[])?;
            Ok(latest.iter().any(|l| bad(l.value)))
        };
        facts.push(Facts {
            department: record.department.clone(),
            class: record.class.clone(),
            standing,
            low_disk: any_latest(FILESYSTEM_UTILIZATION_METRIC, &|v| v >= disk)?,
            degraded_battery: any_latest(BATTERY_HEALTH_METRIC, &|v| v < battery)?,
            os: device
                .inventory
                .as_ref()
                .filter(|_| active)
                .filter(|i| !i.os_name.is_empty() || !i.os_version.is_empty())
                .map(|i| (i.os_name.clone(), i.os_version.clone())),
            alerts_firing: if active {
                firing_by_device
                    .get(&record.device_id)
                    .copied()
                    .unwrap_or(0)
            } else {
                0
            },
        });
    }
    Ok(summarize(&facts, true))
}

/// Counts per (department, class), sorted (no department last), and the total.
pub fn summarize(facts: &[Facts], alerts_available: bool) -> v1::FleetSummaryResponse {
    let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, version) in facts.iter().filter_map(|f| f.os.as_ref()) {
        let entry = newest.entry(name).or_insert(version);
        if compare_versions(version, entry) == Ordering::Greater {
            *entry = version;
        }
    }
    let mut rows: BTreeMap<(bool, &str, &str), v1::FleetSummaryRow> = BTreeMap::new();
    let mut total = v1::FleetSummaryRow::default();
    for f in facts {
        let outdated = f.os.as_ref().is_some_and(|(name, version)| {
            newest
                .get(name.as_str())
                .is_some_and(|n| compare_versions(version, n) == Ordering::Less)
        });
        let row = rows
            .entry((f.department.is_empty(), &f.department, &f.class))
            .or_insert_with(|| v1::FleetSummaryRow {
                department: f.department.clone(),
                class: DeviceClass::from_short_name(&f.class).unwrap_or(DeviceClass::Unspecified)
                    as i32,
                ..Default::default()
            });
        for r in [&mut *row, &mut total] {
            r.devices += 1;
            *match f.standing {
                Standing::Online => &mut r.online,
                Standing::Asleep => &mut r.asleep,
                Standing::Off => &mut r.off,
                Standing::Offline => &mut r.offline,
                Standing::Stale => &mut r.stale,
                Standing::NeverSeen => &mut r.never_seen,
                Standing::Revoked => &mut r.revoked,
            } += 1;
            r.low_disk += u32::from(f.low_disk);
            r.degraded_battery += u32::from(f.degraded_battery);
            r.outdated_os += u32::from(outdated);
            r.alerts_firing += f.alerts_firing;
        }
    }
    v1::FleetSummaryResponse {
        rows: rows.into_values().collect(),
        total: Some(total),
        newest_os_versions: newest
            .into_iter()
            .map(|(k, v)| v1::Attribute {
                key: k.to_owned(),
                value: v.to_owned(),
            })
            .collect(),
        alerts_available,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn fact(dept: &str, class: &str, standing: Standing, os: Option<(&str, &str)>) -> Facts {
        Facts {
            department: dept.into(),
            class: class.into(),
            standing,
            low_disk: false,
            degraded_battery: false,
            os: os.map(|(n, v)| (n.into(), v.into())),
            alerts_firing: 0,
        }
    }

    #[test]
    fn standings() {
        let now = 100 * DAY;
        use DeviceStatus as S;
        let stale = 7 * DAY;
        assert_eq!(standing(S::Online, now, now, stale), Standing::Online);
        assert_eq!(
            standing(S::Offline, now - DAY, now, stale),
            Standing::Offline
        );
        assert_eq!(
            standing(S::Offline, now - 8 * DAY, now, stale),
            Standing::Stale
        );
        assert_eq!(
            standing(S::Asleep, now - 8 * DAY, now, stale),
            Standing::Stale
        );
        assert_eq!(standing(S::Asleep, now - DAY, now, stale), Standing::Asleep);
        assert_eq!(standing(S::Off, now - DAY, now, stale), Standing::Off);
        assert_eq!(standing(S::NeverSeen, 0, now, stale), Standing::NeverSeen);
        assert_eq!(standing(S::Revoked, 0, now, stale), Standing::Revoked);
    }

    #[test]
    fn rows_per_department_and_class_with_outdated_os() {
        let deb = "Debian GNU/Linux";
        let mut low = fact("IT", "laptop", Standing::Online, Some((deb, "12")));
        low.low_disk = true;
        low.degraded_battery = true;
        let facts = [
            low,
            fact("IT", "laptop", Standing::Asleep, Some((deb, "13"))),
            fact("IT", "server", Standing::Stale, Some(("Ubuntu", "24.04"))),
            fact("HR", "laptop", Standing::NeverSeen, None),
            fact("", "laptop", Standing::Revoked, None),
            fact("HR", "laptop", Standing::Offline, Some(("Ubuntu", "22.04"))),
        ];
        let got = summarize(&facts, false);
        let keys: Vec<(&str, i32, u32)> = got
            .rows
            .iter()
            .map(|r| (r.department.as_str(), r.class, r.devices))
            .collect();
        let (laptop, server) = (DeviceClass::Laptop as i32, DeviceClass::Server as i32);
        assert_eq!(
            keys,
            vec![
                ("HR", laptop, 2),
                ("IT", laptop, 2),
                ("IT", server, 1),
                ("", laptop, 1)
            ]
        );
        let it = &got.rows[1];
        assert_eq!((it.online, it.asleep, it.low_disk), (1, 1, 1));
        assert_eq!((it.degraded_battery, it.outdated_os), (1, 1));
        let hr = &got.rows[0];
        assert_eq!((hr.never_seen, hr.offline, hr.outdated_os), (1, 1, 1));
        let total = got.total.expect("total");
        assert_eq!(total.devices, 6);
        assert_eq!(
            (
                total.stale,
                total.revoked,
                total.outdated_os,
                total.low_disk
            ),
            (1, 1, 2, 1)
        );
        assert_eq!(
            got.newest_os_versions
                .iter()
                .map(|a| (a.key.as_str(), a.value.as_str()))
                .collect::<Vec<_>>(),
            vec![(deb, "13"), ("Ubuntu", "24.04")]
        );
    }
}
