//! `vaktctl top METRIC`: the current value of a metric on every device,
//! ranked, optionally per group.

use super::connect::Admin;
use super::fleet_args::{self, Group, SelectorArgs, class_name, group_cell, value_cell};
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use vakt_proto::v1;

pub const TOP_HELP: &str = "\
The current value of a metric on every device, highest first (--bottom: lowest first), \
k rows per group.

The current value of a series is the newest sample the device sent around its last report, \
however long ago that was; --max-age leaves out older ones. One row per series, so a device \
with two filesystems can appear twice. Revoked devices are left out.

Examples:
  vaktctl top system.filesystem.utilization -k 10
  vaktctl top system.filesystem.utilization --attr mountpoint=/ --by department -k 3
  vaktctl top system.battery.health --bottom --class laptop -o csv
  vaktctl top system.cpu.utilization --max-age 10m";

#[derive(Clone, Debug, clap::Args)]
pub struct TopArgs {
    /// Metric name, e.g. system.filesystem.utilization
    pub metric: String,
    /// Rows (per group with --by)
    #[arg(short = 'k', long = "limit", value_name = "K", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(vakt_proto::validate::MAX_TOP_K)))]
    pub k: u32,
    /// Lowest values first (e.g. battery health)
    #[arg(long)]
    pub bottom: bool,
    /// Rank within each department, class or label value
    #[arg(long, value_name = "GROUP", value_parser = fleet_args::parse_group)]
    pub by: Option<Group>,
    /// Only series with this attribute (repeatable), e.g. --attr mountpoint=/
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = super::parse_kv)]
    pub attributes: Vec<(String, String)>,
    /// Only values sampled within this long (10m, 24h) [default: any age]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_age: Option<Duration>,
    #[command(flatten)]
    pub select: SelectorArgs,
}

impl TopArgs {
    pub fn group(&self) -> Group {
        self.by.clone().unwrap_or_default()
    }

    pub fn request(&self, now_ms: i64) -> v1::FleetTopRequest {
        let (group_by, group_label) = self.group().wire();
        v1::FleetTopRequest {
            metric: self.metric.clone(),
            attributes: super::attributes(&self.attributes),
            k: self.k,
            ascending: self.bottom,
            group_by,
            group_label,
            newer_than_unix_ms: self.max_age.map_or(0, |age| {
                now_ms
                    .saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
                    .max(0)
            }),
            selector: self.select.selector(),
        }
    }
}

pub async fn run(admin: &mut Admin, args: &TopArgs, format: Format) -> Result<String> {
    let now = vakt_proto::now_unix_ms();
    let response = admin
        .client
        .fleet_top(args.request(now))
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    if response.values.is_empty() && format == Format::Table {
        eprintln!(
            "no device has a current {} value",
            output::terminal_safe(&args.metric)
        );
    }
    Ok(render_top(
        &args.metric,
        &args.group(),
        &response,
        now,
        format,
    ))
}

#[derive(Serialize)]
struct TopJson<'a> {
    metric: &'a str,
    by: &'a str,
    values: Vec<ValueJson<'a>>,
}

#[derive(Serialize)]
struct ValueJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    rank: usize,
    device_id: &'a str,
    hostname: &'a str,
    department: &'a str,
    class: &'static str,
    attributes: BTreeMap<&'a str, &'a str>,
    value: f64,
    timestamp: Option<String>,
    timestamp_unix_ms: i64,
}

/// Rank within the row's group, from 1 (rows arrive grouped and ranked).
fn ranks(values: &[v1::FleetValue]) -> Vec<usize> {
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let same_group = i > 0 && values[i - 1].group == v.group;
        out.push(if same_group { out[i - 1] + 1 } else { 1 });
    }
    out
}

pub fn render_top(
    metric: &str,
    group: &Group,
    response: &v1::FleetTopResponse,
    now_ms: i64,
    format: Format,
) -> String {
    let ranks = ranks(&response.values);
    let grouped = !group.is_fleet();
    match format {
        Format::Json => output::json(&TopJson {
            metric,
            by: group.name(),
            values: response
                .values
                .iter()
                .zip(&ranks)
                .map(|(v, rank)| ValueJson {
                    group: grouped.then_some(v.group.as_str()),
                    rank: *rank,
                    device_id: &v.device_id,
                    hostname: &v.hostname,
                    department: &v.department,
                    class: class_name(v.class),
                    attributes: v
                        .attributes
                        .iter()
                        .map(|a| (a.key.as_str(), a.value.as_str()))
                        .collect(),
                    value: v.value,
                    timestamp: output::rfc3339_millis(v.timestamp_unix_ms),
                    timestamp_unix_ms: v.timestamp_unix_ms,
                })
                .collect(),
        }),
        Format::Csv => {
            let mut header = vec![
                "rank",
                "device_id",
                "hostname",
                "department",
                "class",
                "attributes",
                "value",
                "timestamp",
            ];
            if grouped {
                header.insert(0, group.name());
            }
            let mut out = output::csv_row(&header);
            for (v, rank) in response.values.iter().zip(&ranks) {
                let mut row = vec![
                    rank.to_string(),
                    v.device_id.clone(),
                    v.hostname.clone(),
                    v.department.clone(),
                    class_name(v.class).to_owned(),
                    output::attributes(&v.attributes, ";"),
                    v.value.to_string(),
                    output::rfc3339_millis(v.timestamp_unix_ms).unwrap_or_default(),
                ];
                if grouped {
                    row.insert(0, v.group.clone());
                }
                out.push_str(&output::csv_row(&row));
            }
            out
        }
        Format::Table => {
            if response.values.is_empty() {
                return String::new();
            }
            let group_header = group.name().to_uppercase();
            let mut header = vec![
                "#",
                "HOSTNAME",
                "DEVICE",
                "DEPARTMENT",
                "CLASS",
                "ATTRIBUTES",
                metric,
                "SAMPLED",
            ];
            // The group column already says what the department or class is.
            let repeated = match group {
                Group::Department => Some(3),
                Group::Class => Some(4),
                _ => None,
            };
            if let Some(i) = repeated {
                header.remove(i);
            }
            if grouped {
                header.insert(0, &group_header);
            }
            let rows: Vec<Vec<String>> = response
                .values
                .iter()
                .zip(&ranks)
                .map(|(v, rank)| {
                    let mut row = vec![
                        rank.to_string(),
                        v.hostname.clone(),
                        v.device_id.clone(),
                        v.department.clone(),
                        class_name(v.class).to_owned(),
                        output::attributes(&v.attributes, ","),
                        value_cell(v.value),
                        output::relative(v.timestamp_unix_ms, now_ms),
                    ];
                    if let Some(i) = repeated {
                        row.remove(i);
                    }
                    if grouped {
                        row.insert(0, group_cell(&v.group));
                    }
                    row
                })
                .collect();
            output::table(&header, &rows)
        }
    }
}
