//! `vaktctl summary`: the weekly overview — per department and class, where
//! the devices stand and what needs proactive work.

use super::connect::Admin;
use super::fleet_args::{SelectorArgs, class_name, group_cell};
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use vakt_proto::v1;

pub const SUMMARY_HELP: &str = "\
Fleet health per department and class: the weekly overview for proactive work.

Every device is counted in exactly one of ONLINE, ASLEEP, OFF (said it was sleeping or shutting \
down), OFFLINE (silent), STALE (not seen for --stale-after, whatever it last said), NEVER-SEEN \
(registered, never reported) and REVOKED. Then, for devices not revoked:

  LOW-DISK          a filesystem at or above --disk-threshold % (newest system.filesystem.utilization)
  DEGRADED-BATTERY  a battery below --battery-below % health (newest system.battery.health)
  OUTDATED-OS       an OS version older than the newest one seen in the fleet for the same OS name
  ALERTS            alerts firing (n/a while the collector has no alert engine)

Examples:
  vaktctl summary
  vaktctl summary --department IT --disk-threshold 80 -o csv
  vaktctl summary --stale-after 30d -o json";

#[derive(Clone, Debug, clap::Args)]
pub struct SummaryArgs {
    /// Low on disk at or above this filesystem utilization, in percent
    #[arg(long, value_name = "PCT", default_value_t = 90.0, value_parser = super::fleet_args::parse_percent)]
    pub disk_threshold: f64,
    /// Degraded battery below this health, in percent
    #[arg(long, value_name = "PCT", default_value_t = 80.0, value_parser = super::fleet_args::parse_percent)]
    pub battery_below: f64,
    /// Stale when not seen for this long
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,
    #[command(flatten)]
    pub select: SelectorArgs,
}

impl SummaryArgs {
    pub fn request(&self) -> v1::FleetSummaryRequest {
        v1::FleetSummaryRequest {
            selector: self.select.selector(),
            disk_utilization_threshold: self.disk_threshold / 100.0,
            battery_health_threshold: self.battery_below / 100.0,
            stale_after_seconds: self.stale_after.as_secs().max(1),
        }
    }
}

pub async fn run(admin: &mut Admin, args: &SummaryArgs, format: Format) -> Result<String> {
    let response = admin
        .client
        .fleet_summary(args.request())
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    Ok(render_summary(&response, format))
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    rows: Vec<RowJson<'a>>,
    total: RowJson<'a>,
    newest_os_versions: BTreeMap<&'a str, &'a str>,
    alerts_available: bool,
}

#[derive(Serialize)]
struct RowJson<'a> {
    department: &'a str,
    class: &'static str,
    devices: u32,
    online: u32,
    asleep: u32,
    off: u32,
    offline: u32,
    stale: u32,
    never_seen: u32,
    revoked: u32,
    low_disk: u32,
    degraded_battery: u32,
    outdated_os: u32,
    /// null when the collector has no alert engine.
    alerts_firing: Option<u32>,
}

fn row_json(r: &v1::FleetSummaryRow, alerts: bool) -> RowJson<'_> {
    RowJson {
        department: &r.department,
        class: class_name(r.class),
        devices: r.devices,
        online: r.online,
        asleep: r.asleep,
        off: r.off,
        offline: r.offline,
        stale: r.stale,
        never_seen: r.never_seen,
        revoked: r.revoked,
        low_disk: r.low_disk,
        degraded_battery: r.degraded_battery,
        outdated_os: r.outdated_os,
        alerts_firing: alerts.then_some(r.alerts_firing),
    }
}

const HEADER: [&str; 14] = [
    "DEPARTMENT",
    "CLASS",
    "DEVICES",
    "ONLINE",
    "ASLEEP",
    "OFF",
    "OFFLINE",
    "STALE",
    "NEVER-SEEN",
    "REVOKED",
    "LOW-DISK",
    "DEGRADED-BATTERY",
    "OUTDATED-OS",
    "ALERTS",
];

fn cells(r: &v1::FleetSummaryRow, alerts: bool) -> Vec<String> {
    let n = |v: u32| v.to_string();
    vec![
        r.department.clone(),
        class_name(r.class).to_owned(),
        n(r.devices),
        n(r.online),
        n(r.asleep),
        n(r.off),
        n(r.offline),
        n(r.stale),
        n(r.never_seen),
        n(r.revoked),
        n(r.low_disk),
        n(r.degraded_battery),
        n(r.outdated_os),
        if alerts {
            n(r.alerts_firing)
        } else {
            "n/a".to_owned()
        },
    ]
}

pub fn render_summary(response: &v1::FleetSummaryResponse, format: Format) -> String {
    let alerts = response.alerts_available;
    let total = response.total.clone().unwrap_or_default();
    match format {
        Format::Json => output::json(&SummaryJson {
            rows: response.rows.iter().map(|r| row_json(r, alerts)).collect(),
            total: RowJson {
                department: "",
                class: "",
                ..row_json(&total, alerts)
            },
            newest_os_versions: response
                .newest_os_versions
                .iter()
                .map(|a| (a.key.as_str(), a.value.as_str()))
                .collect(),
            alerts_available: alerts,
        }),
        Format::Csv => {
            let header: Vec<String> = HEADER
                .iter()
                .map(|h| h.to_lowercase().replace('-', "_"))
                .collect();
            let mut out = output::csv_row(&header);
            for r in &response.rows {
                out.push_str(&output::csv_row(&cells(r, alerts)));
            }
            let mut last = cells(&total, alerts);
            last[0] = "TOTAL".into();
            last[1] = String::new();
            out.push_str(&output::csv_row(&last));
            out
        }
        Format::Table => {
            let mut rows: Vec<Vec<String>> = response
                .rows
                .iter()
                .map(|r| {
                    let mut c = cells(r, alerts);
                    c[0] = group_cell(&r.department);
                    c
                })
                .collect();
            let mut last = cells(&total, alerts);
            last[0] = "TOTAL".into();
            last[1] = String::new();
            rows.push(last);
            let mut out = output::table(&HEADER, &rows);
            if !response.newest_os_versions.is_empty() {
                let newest: Vec<String> = response
                    .newest_os_versions
                    .iter()
                    .map(|a| format!("{} {}", a.key, a.value).trim().to_owned())
                    .collect();
                out.push_str(&format!(
                    "\nNewest OS versions: {}\n",
                    output::terminal_safe(&newest.join(", "))
                ));
            }
            out
        }
    }
}
