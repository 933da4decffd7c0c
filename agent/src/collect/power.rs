//! Temperatures (`sysfs/class/hwmon`) and batteries (`sysfs/class/power_supply`),
//! read straight from sysfs: the files are tiny, sysinfo's Components re-scans
//! every hwmon directory anyway, and only sysfs has design capacity and cycle
//! counts. Machines without sensors or batteries (VMs, most servers) simply
//! produce no samples; an unreadable file skips that one value.

use super::{clean_text, push_sample, read_trimmed};
use std::path::Path;
use vakt_proto::v1::{Battery, Sample};
use vakt_proto::validate::MAX_TEXT_BYTES;

/// Sorted entries of a sysfs class directory; empty when it is absent.
fn entries(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = listing
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

fn read_number(path: &Path) -> Option<f64> {
    read_trimmed(path)?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// `system.hardware.temperature` {sensor} in °C, one per `temp*_input`.
/// The sensor is named after its chip and label ("coretemp Package id 0"),
/// or its chip and input ("acpitz temp1") when the driver gives no label.
pub(super) fn temperatures(sysfs: &Path, out: &mut Vec<Sample>) {
    for (hwmon, dir) in entries(&sysfs.join("class/hwmon")) {
        let chip = read_trimmed(&dir.join("name")).unwrap_or(hwmon);
        for (file, path) in entries(&dir) {
            let Some(input) = file
                .strip_suffix("_input")
                .filter(|i| i.starts_with("temp"))
            else {
                continue;
            };
            // Some drivers report unplugged probes with a read error; skip those.
            let Some(millidegrees) = read_number(&path) else {
                continue;
            };
            let label = read_trimmed(&dir.join(format!("{input}_label")))
                .unwrap_or_else(|| input.to_owned());
            let sensor = clean_text(
                &format!("{chip} {label}"),
                vakt_proto::validate::MAX_VALUE_BYTES,
            );
            push_sample(
                out,
                "system.hardware.temperature",
                &[("sensor", &sensor)],
                millidegrees / 1000.0,
            );
        }
    }
}

/// The system batteries present: their names and sysfs directories.
fn system_batteries(sysfs: &Path) -> Vec<(String, std::path::PathBuf)> {
    entries(&sysfs.join("class/power_supply"))
        .into_iter()
        .filter(|(_, dir)| {
            let is_battery = read_trimmed(&dir.join("type")).is_some_and(|t| t == "Battery");
            // Wireless mice and headsets are batteries too, with scope "Device".
            let peripheral = read_trimmed(&dir.join("scope")).is_some_and(|s| s == "Device");
            let absent = read_trimmed(&dir.join("present")).is_some_and(|p| p == "0");
            is_battery && !peripheral && !absent
        })
        .collect()
}

/// What each system battery is, for the inventory. Design capacity in Wh from
/// `energy_full_design` (µWh), or `charge_full_design` (µAh) times the design
/// voltage (µV) for drivers that count charge; 0 when neither is known.
pub(super) fn battery_inventory(sysfs: &Path) -> Vec<Battery> {
    system_batteries(sysfs)
        .into_iter()
        .map(|(name, dir)| {
            let text = |file: &str| {
                read_trimmed(&dir.join(file))
                    .map(|v| clean_text(&v, MAX_TEXT_BYTES))
                    .unwrap_or_default()
            };
            let number = |file: &str| read_number(&dir.join(file)).filter(|v| *v > 0.0);
            let design_wh = number("energy_full_design")
                .map(|uwh| uwh / 1e6)
                .or_else(|| {
                    let volts = number("voltage_min_design").or_else(|| number("voltage_now"))?;
                    Some(number("charge_full_design")? * volts / 1e12)
                })
                .unwrap_or(0.0);
            Battery {
                name: clean_text(&name, MAX_TEXT_BYTES),
                manufacturer: text("manufacturer"),
                model: text("model_name"),
                serial: text("serial_number"),
                technology: text("technology"),
                design_capacity_wh: design_wh,
            }
        })
        .collect()
}

/// Battery charge, state, health and cycle count, per system battery.
pub(super) fn batteries(sysfs: &Path, out: &mut Vec<Sample>) {
    for (name, dir) in system_batteries(sysfs) {
        let number = |file: &str| read_number(&dir.join(file));
        let battery = [("battery", name.as_str())];

        // Drivers report energy (µWh) or charge (µAh); the ratios are the same.
        let ratio = |num: &str, den: &str| -> Option<f64> {
            let (n, d) = (number(num)?, number(den)?);
            (d > 0.0).then(|| n / d)
        };
        let charge = number("capacity")
            .map(|percent| percent / 100.0)
            .or_else(|| ratio("energy_now", "energy_full"))
            .or_else(|| ratio("charge_now", "charge_full"));
        if let Some(charge) = charge {
            push_sample(
                out,
                "system.battery.charge",
                &battery,
                charge.clamp(0.0, 1.0),
            );
        }

        if let Some(status) = read_trimmed(&dir.join("status")) {
            // "Charging", "Discharging", "Full", "Not charging", "Unknown".
            let state = status.to_lowercase().replace(' ', "_");
            let state = clean_text(&state, vakt_proto::validate::MAX_VALUE_BYTES);
            push_sample(
                out,
                "system.battery.state",
                &[("battery", &name), ("state", &state)],
                1.0,
            );
            push_sample(
                out,
                "system.battery.charging",
                &battery,
                if state == "charging" { 1.0 } else { 0.0 },
            );
        }

        let health = ratio("energy_full", "energy_full_design")
            .or_else(|| ratio("charge_full", "charge_full_design"));
        if let Some(health) = health {
            push_sample(out, "system.battery.health", &battery, health);
        }

        if let Some(cycles) = number("cycle_count") {
            push_sample(out, "system.battery.cycle_count", &battery, cycles);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::collect::tests::{value, write};

    /// A laptop: a degraded battery, AC adapter, a mouse, and two hwmon chips.
    pub(crate) fn laptop_sysfs(sys: &Path) {
        let bat = "class/power_supply/BAT0";
        for (file, content) in [
            ("type", "Battery"),
            ("present", "1"),
            ("status", "Discharging"),
            ("capacity", "64"),
            ("cycle_count", "412"),
            ("energy_now", "24320000"),
            ("energy_full", "38000000"),
            ("energy_full_design", "50000000"),
            ("manufacturer", "SMP"),
            ("model_name", "5B10W13975"),
        ] {
            write(sys, &format!("{bat}/{file}"), &format!("{content}\n"));
        }
        write(sys, "class/power_supply/AC/type", "Mains\n");
        write(sys, "class/power_supply/AC/online", "0\n");
        write(sys, "class/power_supply/hidpp_battery_0/type", "Battery\n");
        write(sys, "class/power_supply/hidpp_battery_0/scope", "Device\n");
        write(sys, "class/power_supply/hidpp_battery_0/capacity", "90\n");
        write(sys, "class/hwmon/hwmon0/name", "acpitz\n");
        write(sys, "class/hwmon/hwmon0/temp1_input", "45000\n");
        write(sys, "class/hwmon/hwmon1/name", "coretemp\n");
        write(sys, "class/hwmon/hwmon1/temp1_input", "52500\n");
        write(sys, "class/hwmon/hwmon1/temp1_label", "Package id 0\n");
        write(sys, "class/hwmon/hwmon1/temp1_max", "100000\n");
    }

    #[test]
    fn degraded_laptop_battery() {
        let dir = tempfile::tempdir().unwrap();
        laptop_sysfs(dir.path());
        let mut out = Vec::new();
        batteries(dir.path(), &mut out);
        let bat = [("battery", "BAT0")];
        assert_eq!(value(&out, "system.battery.charge", &bat), Some(0.64));
        let health = value(&out, "system.battery.health", &bat).unwrap();
        assert!((health - 0.76).abs() < 1e-9, "{health}");
        assert_eq!(value(&out, "system.battery.cycle_count", &bat), Some(412.0));
        assert_eq!(value(&out, "system.battery.charging", &bat), Some(0.0));
        assert_eq!(
            value(
                &out,
                "system.battery.state",
                &[("battery", "BAT0"), ("state", "discharging")]
            ),
            Some(1.0)
        );
        // Neither the mains adapter nor the mouse is a system battery.
        assert!(
            out.iter()
                .all(|s| s.attributes.iter().any(|a| a.value == "BAT0")),
            "{out:?}"
        );
    }

    #[test]
    fn battery_inventory_with_design_capacity() {
        let dir = tempfile::tempdir().unwrap();
        laptop_sysfs(dir.path());
        let bat1 = "class/power_supply/BAT1";
        for (file, content) in [
            ("type", "Battery"),
            ("technology", "Li-poly"),
            ("serial_number", " 4711 "),
            ("charge_full_design", "5000000"),
            ("voltage_min_design", "11400000"),
        ] {
            write(dir.path(), &format!("{bat1}/{file}"), content);
        }
        let list = battery_inventory(dir.path());
        assert_eq!(list.len(), 2, "the mouse is not a system battery: {list:?}");
        assert_eq!(
            (list[0].name.as_str(), list[0].manufacturer.as_str()),
            ("BAT0", "SMP")
        );
        assert_eq!(list[0].model, "5B10W13975");
        assert_eq!(list[0].design_capacity_wh, 50.0);
        assert_eq!(list[1].technology, "Li-poly");
        assert_eq!(list[1].serial, "4711");
        assert!((list[1].design_capacity_wh - 57.0).abs() < 1e-9);
    }

    #[test]
    fn charge_based_battery_without_capacity_file() {
        let dir = tempfile::tempdir().unwrap();
        let bat = "class/power_supply/BAT1";
        for (file, content) in [
            ("type", "Battery"),
            ("status", "Not charging"),
            ("charge_now", "2000000"),
            ("charge_full", "4000000"),
            ("charge_full_design", "5000000"),
        ] {
            write(dir.path(), &format!("{bat}/{file}"), content);
        }
        let mut out = Vec::new();
        batteries(dir.path(), &mut out);
        let b = [("battery", "BAT1")];
        assert_eq!(value(&out, "system.battery.charge", &b), Some(0.5));
        assert_eq!(value(&out, "system.battery.health", &b), Some(0.8));
        assert_eq!(value(&out, "system.battery.cycle_count", &b), None);
        assert!(
            value(
                &out,
                "system.battery.state",
                &[("battery", "BAT1"), ("state", "not_charging")]
            )
            .is_some()
        );
    }

    #[test]
    fn hwmon_temperatures_in_celsius() {
        let dir = tempfile::tempdir().unwrap();
        laptop_sysfs(dir.path());
        // An unplugged probe's read error is skipped, not fatal.
        write(dir.path(), "class/hwmon/hwmon1/temp2_input", "\n");
        let mut out = Vec::new();
        temperatures(dir.path(), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let t = |sensor| value(&out, "system.hardware.temperature", &[("sensor", sensor)]);
        assert_eq!(t("acpitz temp1"), Some(45.0));
        assert_eq!(t("coretemp Package id 0"), Some(52.5));
    }

    #[test]
    fn no_sensors_no_battery_no_samples() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        temperatures(dir.path(), &mut out);
        batteries(dir.path(), &mut out);
        assert!(out.is_empty());
    }
}
