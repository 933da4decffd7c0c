//! The pure parts of evaluation: thresholds with hysteresis, inventory
//! differences, the least-squares disk forecast and version comparison.

use super::rules::{Change, parse_version};
use std::collections::BTreeMap;
use vakt_proto::v1;

/// Whether a threshold condition holds. An alert that is already active
/// stays active until the value is back past `clear` (hysteresis), so a
/// value hovering around the trigger does not fire and resolve every sample.
pub fn threshold_active(
    above: Option<f64>,
    below: Option<f64>,
    clear: f64,
    value: f64,
    was_active: bool,
) -> bool {
    match (above, below) {
        (Some(_), _) if was_active => value >= clear,
        (Some(a), _) => value > a,
        (None, Some(_)) if was_active => value <= clear,
        (None, Some(b)) => value < b,
        (None, None) => false,
    }
}

/// One difference between two inventories.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub change: Change,
    /// Distinguishes alerts of one rule (e.g. which disk).
    pub attributes: BTreeMap<String, String>,
    pub detail: String,
}

fn disk_id(d: &v1::Disk) -> String {
    if d.serial.is_empty() {
        format!("{} ({})", d.name, d.model)
    } else {
        format!("{} serial {}", d.name, d.serial)
    }
}

/// What changed from `old` to `new` that ops would want to know about.
pub fn inventory_differences(old: &v1::Inventory, new: &v1::Inventory) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |change: Change, attrs: &[(&str, &str)], detail: String| {
        out.push(Difference {
            change,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            detail,
        });
    };
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    // Memory totals jitter slightly with firmware reservations: 1 % slack.
    let (om, nm) = (old.memory_total_bytes, new.memory_total_bytes);
    if om > 0 && nm > 0 && nm.saturating_mul(100) < om.saturating_mul(99) {
        push(
            Change::MemoryDecreased,
            &[("change", "memory_decreased")],
            format!("memory went from {:.1} GiB to {:.1} GiB", gib(om), gib(nm)),
        );
    }
    if om > 0 && nm.saturating_mul(99) > om.saturating_mul(100) {
        push(
            Change::MemoryIncreased,
            &[("change", "memory_increased")],
            format!("memory went from {:.1} GiB to {:.1} GiB", gib(om), gib(nm)),
        );
    }
    // Removable media come and go; only fixed disks count as hardware.
    let fixed = |inv: &v1::Inventory| -> Vec<String> {
        let mut ids: Vec<String> = inv
            .disks
            .iter()
            .filter(|d| !d.removable)
            .map(disk_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let (old_disks, new_disks) = (fixed(old), fixed(new));
    for d in new_disks.iter().filter(|d| !old_disks.contains(d)) {
        push(
            Change::DiskAdded,
            &[("change", "disk_added"), ("disk", d)],
            format!("disk {d} appeared"),
        );
    }
    for d in old_disks.iter().filter(|d| !new_disks.contains(d)) {
        push(
            Change::DiskRemoved,
            &[("change", "disk_removed"), ("disk", d)],
            format!("disk {d} disappeared"),
        );
    }
    // An unreadable identifier (empty) is unknown, not changed.
    if !old.serial.is_empty() && !new.serial.is_empty() && old.serial != new.serial {
        push(
            Change::SerialChanged,
            &[("change", "serial_changed")],
            format!("serial changed from {} to {}", old.serial, new.serial),
        );
    }
    if !old.product_uuid.is_empty()
        && !new.product_uuid.is_empty()
        && old.product_uuid != new.product_uuid
    {
        push(
            Change::ProductUuidChanged,
            &[("change", "product_uuid_changed")],
            format!(
                "product UUID changed from {} to {}",
                old.product_uuid, new.product_uuid
            ),
        );
    }
    if old.os_name == new.os_name && version_older(&new.os_version, &old.os_version) {
        push(
            Change::OsDowngraded,
            &[("change", "os_downgraded")],
            format!(
                "{} went from {} to {}",
                new.os_name, old.os_version, new.os_version
            ),
        );
    }
    out
}

/// `version < minimum`, comparing dotted numbers; unparseable is not older.
pub fn version_older(version: &str, minimum: &str) -> bool {
    match (parse_version(version), parse_version(minimum)) {
        (Some(mut v), Some(mut m)) => {
            let len = v.len().max(m.len());
            v.resize(len, 0);
            m.resize(len, 0);
            v < m
        }
        _ => false,
    }
}

/// Milliseconds from `now` until a least-squares line through `points`
/// (timestamp ms, utilization 0..1) reaches 1.0; None if it is flat or
/// falling, or there are too few points.
pub fn ms_until_full(points: &[(i64, f64)], now: i64, min_points: usize) -> Option<f64> {
    if points.len() < min_points.max(2) {
        return None;
    }
    // Centre the times: squares of epoch milliseconds lose precision.
    let t0 = points[0].0;
    let n = points.len() as f64;
    let xs = points.iter().map(|(t, _)| (t - t0) as f64);
    let mean_x = xs.clone().sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for ((_, y), x) in points.iter().zip(xs) {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    if slope.is_nan() || slope <= 0.0 {
        return None;
    }
    let now_x = (now - t0) as f64;
    let fitted_now = mean_y + slope * (now_x - mean_x);
    Some(((1.0 - fitted_now) / slope).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis() {
        let t = |v, was| threshold_active(Some(0.9), None, 0.85, v, was);
        assert!(!t(0.88, false));
        assert!(t(0.91, false));
        assert!(t(0.88, true), "still active between clear and trigger");
        assert!(!t(0.84, true));
        let b = |v, was| threshold_active(None, Some(0.6), 0.62, v, was);
        assert!(b(0.59, false));
        assert!(b(0.61, true));
        assert!(!b(0.63, true));
        assert!(!b(0.61, false));
    }

    #[test]
    fn inventory_memory_disks_serial_and_os() {
        let disk = |name: &str, serial: &str| v1::Disk {
            name: name.into(),
            serial: serial.into(),
            ..Default::default()
        };
        let old = v1::Inventory {
            memory_total_bytes: 16 << 30,
            disks: vec![disk("sda", "A"), disk("sdb", "B")],
            serial: "S1".into(),
            os_name: "Debian".into(),
            os_version: "13.1".into(),
            ..Default::default()
        };
        let mut new = old.clone();
        new.memory_total_bytes = 8 << 30;
        new.disks = vec![disk("sda", "A"), disk("sdb", "C")];
        new.serial = "S2".into();
        new.os_version = "12.9".into();
        let changes: Vec<Change> = inventory_differences(&old, &new)
            .iter()
            .map(|d| d.change)
            .collect();
        assert_eq!(
            changes,
            vec![
                Change::MemoryDecreased,
                Change::DiskAdded,
                Change::DiskRemoved,
                Change::SerialChanged,
                Change::OsDowngraded
            ]
        );
        assert!(inventory_differences(&old, &old).is_empty());
        let mut unknown = old.clone();
        unknown.serial.clear();
        assert!(inventory_differences(&old, &unknown).is_empty());
    }

    #[test]
    fn versions() {
        assert!(version_older("0.1.0", "0.2"));
        assert!(!version_older("0.2.0", "0.2"));
        assert!(!version_older("1.10.0", "1.9.5"));
        assert!(!version_older("vakt-tests", "0.2"));
    }

    #[test]
    fn least_squares_forecast() {
        // +1 % per second from 50 %: full 50 s after the last point at 0.
        let points: Vec<(i64, f64)> = (0..10)
            .map(|i| (i * 1000 - 9000, 0.41 + 0.01 * i as f64))
            .collect();
        let ms = ms_until_full(&points, 0, 3).unwrap();
        assert!((ms - 50_000.0).abs() < 1.0, "{ms}");
        let flat: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, 0.5)).collect();
        assert_eq!(ms_until_full(&flat, 10_000, 3), None);
        assert_eq!(ms_until_full(&points[..2], 0, 3), None);
    }
}
