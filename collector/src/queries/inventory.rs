//! Inventory questions across the fleet: devices by OS version, by model,
//! by battery health, by installed package.

use super::{display_hostname, selected};
use crate::error::Error;
use crate::store::Store;
use crate::store::fleet_queries::FleetDevice;
use std::cmp::Ordering;
use vakt_proto::v1::{self, DeviceClass, inventory_query_request::Question};

/// The metric the agent reports battery health in (full / design capacity,
/// 0–1; `agent/src/collect/power.rs`), one series per `battery` attribute.
pub const BATTERY_HEALTH_METRIC: &str = "system.battery.health";

pub fn query(
    store: &Store,
    req: &v1::InventoryQueryRequest,
) -> Result<v1::InventoryQueryResponse, Error> {
    let question = req
        .question
        .as_ref()
        .ok_or_else(|| Error::Internal("validated request without a question".into()))?;
    let with_inventory = matches!(question, Question::ByOs(_) | Question::ByModel(_));
    let devices = store.fleet_devices(with_inventory, |r| {
        r.revoked_at_ms == 0 && selected(req.selector.as_ref(), r)
    })?;
    let mut matches = Vec::new();
    for device in &devices {
        match question {
            Question::ByOs(_) => matches.push(row(device, os_of(device.inventory.as_ref()), None)),
            Question::ByModel(_) => matches.push(row(device, model_of(device), None)),
            Question::BatteryHealthBelowPercent(percent) => {
                let threshold = percent / 100.0;
                let batteries = store.latest_values(
                    &device.record.device_id,
                    &device.state,
                    BATTERY_HEALTH_METRIC,
                    &[],
                )?;
                for battery in batteries {
                    if battery.value < threshold {
                        let name = battery
                            .attributes
                            .iter()
                            .find(|a| a.key == "battery")
                            .map(|a| a.value.clone())
                            .unwrap_or_default();
                        matches.push(row(device, name, Some(battery.value)));
                    }
                }
            }
            // Answered from the package index below, not per device.
            Question::Package(_) => {}
        }
    }
    if let Question::Package(package) = question {
        matches = package_matches(store, &devices, package)?;
    }
    matches.sort_by(|a, b| {
        let by_group = match question {
            // Battery rows: the worst first.
            Question::BatteryHealthBelowPercent(_) => {
                a.value.unwrap_or(0.0).total_cmp(&b.value.unwrap_or(0.0))
            }
            // Natural order, so "Debian 9" comes before "Debian 10";
            // devices without a value last.
            _ => (a.group.is_empty().cmp(&b.group.is_empty()))
                .then_with(|| compare_versions(&a.group, &b.group))
                .then_with(|| a.group.cmp(&b.group)),
        };
        by_group
            .then_with(|| a.hostname.cmp(&b.hostname))
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    Ok(v1::InventoryQueryResponse { matches })
}

/// Devices with the package installed (of the version, if given), from the
/// software index (`store/software.rs`); group = "<version> (<arch>)".
fn package_matches(
    store: &Store,
    devices: &[FleetDevice],
    package: &v1::PackageMatch,
) -> Result<Vec<v1::InventoryMatch>, Error> {
    let by_id: std::collections::HashMap<&str, &FleetDevice> = devices
        .iter()
        .map(|d| (d.record.device_id.as_str(), d))
        .collect();
    let mut out = Vec::new();
    for install in store.find_package(&package.name)? {
        if !package.version.is_empty() && install.version != package.version {
            continue;
        }
        // Not selected, or revoked.
        let Some(device) = by_id.get(install.device_id.as_str()) else {
            continue;
        };
        let group = if install.architecture.is_empty() {
            install.version
        } else {
            format!("{} ({})", install.version, install.architecture)
        };
        out.push(row(device, group, None));
    }
    Ok(out)
}

fn row(device: &FleetDevice, group: String, value: Option<f64>) -> v1::InventoryMatch {
    v1::InventoryMatch {
        device_id: device.record.device_id.clone(),
        hostname: display_hostname(&device.record, &device.state),
        department: device.record.department.clone(),
        class: DeviceClass::from_short_name(&device.record.class)
            .unwrap_or(DeviceClass::Unspecified) as i32,
        group,
        value,
    }
}

/// "Debian GNU/Linux 12"; "" when the device has sent no inventory.
pub fn os_of(inventory: Option<&v1::Inventory>) -> String {
    inventory
        .map(|i| format!("{} {}", i.os_name, i.os_version).trim().to_owned())
        .unwrap_or_default()
}

/// The model the hardware reports, else the one registered.
fn model_of(device: &FleetDevice) -> String {
    device
        .inventory
        .as_ref()
        .map(|i| i.model.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| device.record.model.clone())
}

/// Compares version strings the way people read them: runs of digits as
/// numbers, everything else as text, piece by piece ("9" < "10",
/// "22.04" < "24.04", "10.0.19045" < "10.0.22631", "12" < "12.1").
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (pa, pb) = (pieces(a), pieces(b));
    for (x, y) in pa.iter().zip(&pb) {
        let order = match (x, y) {
            (Piece::Number(x), Piece::Number(y)) => {
                // Compare without parsing, so any length of digits works.
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            (Piece::Number(_), Piece::Text(_)) => Ordering::Greater,
            (Piece::Text(_), Piece::Number(_)) => Ordering::Less,
            (Piece::Text(x), Piece::Text(y)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    pa.len().cmp(&pb.len())
}

enum Piece<'a> {
    Number(&'a str),
    Text(&'a str),
}

/// Digit runs and non-digit runs, separators ('.', '-', ' ', ...) dropped.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    while start < bytes.len() {
        let digit = bytes[start].is_ascii_digit();
        let end = bytes[start..]
            .iter()
            .position(|b| b.is_ascii_digit() != digit)
            .map_or(bytes.len(), |n| start + n);
        let run = &s[start..end];
        if digit {
            out.push(Piece::Number(run));
        } else {
            let text = run.trim_matches(|c: char| !c.is_alphanumeric());
            if !text.is_empty() {
                out.push(Piece::Text(text));
            }
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_like_people_read_them() {
        use Ordering::*;
        for (a, b, want) in [
            ("12", "13", Less),
            ("9", "10", Less),
            ("22.04", "24.04", Less),
            ("24.04", "22.04", Greater),
            ("10.0.19045", "10.0.22631", Less),
            ("12", "12.1", Less),
            ("12.04", "12.4", Equal),
            ("1.0-rc1", "1.0.1", Less),
            ("", "1", Less),
            ("", "", Equal),
            ("13 (trixie)", "13 (trixie)", Equal),
            ("99999999999999999999999", "100000000000000000000000", Less),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn os_label() {
        let inv = v1::Inventory {
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            ..Default::default()
        };
        assert_eq!(os_of(Some(&inv)), "Debian GNU/Linux 12");
        assert_eq!(os_of(None), "");
    }
}
