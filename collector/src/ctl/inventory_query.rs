//! `vaktctl inventory query`: inventory questions across the fleet — which
//! OS versions and models there are (and on which devices), which batteries
//! are degraded, which devices have a package.

use super::connect::Admin;
use super::fleet_args::{SelectorArgs, class_name, group_cell};
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use vakt_proto::v1::{self, inventory_query_request::Question};

pub const INVENTORY_QUERY_HELP: &str = "\
Ask one inventory question about the fleet (revoked devices are left out):

  --os                  how many devices run each OS version (with --list: every device and its OS)
  --model               the same per hardware model (as the device reports it, else as registered)
  --battery-below PCT   devices with a battery whose health (full / design capacity) is below PCT %,
                        worst first (from the newest system.battery.health sample)
  --package NAME[=VER]  devices with an installed package (of that version)

The JSON output always lists the devices of each group.

Examples:
  vaktctl inventory query --os
  vaktctl inventory query --os --list --department IT -o csv
  vaktctl inventory query --model --class laptop
  vaktctl inventory query --battery-below 80
  vaktctl inventory query --package openssl=3.0.15-1";

#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("question").required(true)
    .args(["os", "model", "battery_below", "package"])))]
pub struct InventoryQueryArgs {
    /// Devices per OS name and version
    #[arg(long)]
    pub os: bool,
    /// Devices per hardware model
    #[arg(long)]
    pub model: bool,
    /// Devices with a battery below this health, in percent (1-100)
    #[arg(long, value_name = "PCT", value_parser = super::fleet_args::parse_percent)]
    pub battery_below: Option<f64>,
    /// Devices with this package installed, optionally of this version
    #[arg(long, value_name = "NAME[=VERSION]")]
    pub package: Option<String>,
    /// With --os or --model: one row per device instead of counts
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub select: SelectorArgs,
}

impl InventoryQueryArgs {
    pub fn question(&self) -> Question {
        if let Some(percent) = self.battery_below {
            Question::BatteryHealthBelowPercent(percent)
        } else if let Some(package) = &self.package {
            let (name, version) = package.split_once('=').unwrap_or((package, ""));
            Question::Package(v1::PackageMatch {
                name: name.to_owned(),
                version: version.to_owned(),
            })
        } else if self.model {
            Question::ByModel(true)
        } else {
            Question::ByOs(true)
        }
    }

    pub fn request(&self) -> v1::InventoryQueryRequest {
        v1::InventoryQueryRequest {
            question: Some(self.question()),
            selector: self.select.selector(),
        }
    }
}

pub async fn run(admin: &mut Admin, args: &InventoryQueryArgs, format: Format) -> Result<String> {
    let response = admin
        .client
        .inventory_query(args.request())
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    if response.matches.is_empty() && format == Format::Table {
        eprintln!("no device matches");
    }
    Ok(render_inventory_query(
        &args.question(),
        args.list,
        &response,
        format,
    ))
}

/// What the question groups by, as a column name.
fn subject(question: &Question) -> &'static str {
    match question {
        Question::ByOs(_) => "os",
        Question::ByModel(_) => "model",
        Question::BatteryHealthBelowPercent(_) => "battery",
        Question::Package(_) => "version",
    }
}

#[derive(Serialize)]
struct GroupsJson<'a> {
    question: &'static str,
    groups: Vec<GroupJson<'a>>,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    value: &'a str,
    count: usize,
    devices: Vec<DeviceJson<'a>>,
}

#[derive(Serialize)]
struct DeviceJson<'a> {
    device_id: &'a str,
    hostname: &'a str,
    department: &'a str,
    class: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    battery: Option<&'a str>,
    /// Battery health in percent, rounded to one decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    health_percent: Option<f64>,
}

#[derive(Serialize)]
struct BatteriesJson<'a> {
    question: &'static str,
    below_percent: f64,
    devices: Vec<DeviceJson<'a>>,
}

fn device_json(m: &v1::InventoryMatch, battery: bool) -> DeviceJson<'_> {
    DeviceJson {
        device_id: &m.device_id,
        hostname: &m.hostname,
        department: &m.department,
        class: class_name(m.class),
        battery: battery.then_some(m.group.as_str()),
        health_percent: m.value.filter(|_| battery).map(percent),
    }
}

fn percent(fraction: f64) -> f64 {
    (fraction * 1000.0).round() / 10.0
}

/// Consecutive matches with the same group (the collector sorts by group).
fn groups(matches: &[v1::InventoryMatch]) -> Vec<(&str, Vec<&v1::InventoryMatch>)> {
    let mut out: Vec<(&str, Vec<&v1::InventoryMatch>)> = Vec::new();
    for m in matches {
        match out.last_mut() {
            Some((g, members)) if *g == m.group => members.push(m),
            _ => out.push((&m.group, vec![m])),
        }
    }
    out
}

pub fn render_inventory_query(
    question: &Question,
    list: bool,
    response: &v1::InventoryQueryResponse,
    format: Format,
) -> String {
    let subject = subject(question);
    if let Question::BatteryHealthBelowPercent(below) = question {
        return match format {
            Format::Json => output::json(&BatteriesJson {
                question: "battery-below",
                below_percent: *below,
                devices: response
                    .matches
                    .iter()
                    .map(|m| device_json(m, true))
                    .collect(),
            }),
            _ => device_rows(response, subject, format, |m| {
                m.value
                    .map(|v| format!("{}%", percent(v)))
                    .unwrap_or_default()
            }),
        };
    }
    let grouped = groups(&response.matches);
    match format {
        Format::Json => output::json(&GroupsJson {
            question: subject,
            groups: grouped
                .iter()
                .map(|(value, members)| GroupJson {
                    value,
                    count: members.len(),
                    devices: members.iter().map(|m| device_json(m, false)).collect(),
                })
                .collect(),
        }),
        _ if list => device_rows(response, subject, format, |_| String::new()),
        Format::Csv => {
            let mut out = output::csv_row(&[subject, "devices"]);
            for (value, members) in &grouped {
                out.push_str(&output::csv_row(&[
                    value.to_string(),
                    members.len().to_string(),
                ]));
            }
            out
        }
        Format::Table => {
            if grouped.is_empty() {
                return String::new();
            }
            let rows: Vec<Vec<String>> = grouped
                .iter()
                .map(|(value, members)| vec![group_cell(value), members.len().to_string()])
                .collect();
            output::table(&[&subject.to_uppercase(), "DEVICES"], &rows)
        }
    }
}

/// One row per device: who it is, the group value and (batteries) the health.
fn device_rows(
    response: &v1::InventoryQueryResponse,
    subject: &str,
    format: Format,
    measure: impl Fn(&v1::InventoryMatch) -> String,
) -> String {
    let battery = subject == "battery";
    let rows: Vec<Vec<String>> = response
        .matches
        .iter()
        .map(|m| {
            let mut row = vec![
                m.hostname.clone(),
                m.device_id.clone(),
                m.department.clone(),
                class_name(m.class).to_owned(),
                m.group.clone(),
            ];
            if battery {
                row.push(measure(m));
            }
            row
        })
        .collect();
    let mut header = vec!["hostname", "device_id", "department", "class", subject];
    if battery {
        header.push("health");
    }
    match format {
        Format::Csv => {
            let mut out = output::csv_row(&header);
            for row in &rows {
                out.push_str(&output::csv_row(row));
            }
            out
        }
        _ => {
            if rows.is_empty() {
                return String::new();
            }
            let upper: Vec<String> = header
                .iter()
                .map(|h| {
                    if *h == "device_id" {
                        "DEVICE".into()
                    } else {
                        h.to_uppercase()
                    }
                })
                .collect();
            let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
            output::table(&upper, &rows)
        }
    }
}
