//! `vaktctl query`: one aggregation of a metric over a window, across the
//! fleet, grouped by department, class or a label.

use super::connect::Admin;
use super::fleet_args::{self, Agg, Group, SelectorArgs, group_cell, value_cell};
use super::metrics::{When, parse_when};
use super::output::{self, Format};
use super::query_expr::{self, Expr};
use anyhow::{Result, bail};
use serde::Serialize;
use vakt_proto::v1;

pub const QUERY_HELP: &str = "\
Aggregate one metric over a time window across the fleet, per group.

Give an expression, or the same with flags (not both):

  AGG(METRIC{key=\"value\", ...}) by GROUP

AGG is avg, min, max, count, sum or p95 (nearest rank), over every sample in the window of the \
matching series of the devices in the group; count is the number of devices with samples. The \
{...} part keeps only series with those attributes. GROUP is department, class or a label key \
(by site groups by the site= label); without it the whole selected fleet is one group. Revoked \
devices are left out. Groups without samples in the window are not listed. avg, min, max, sum \
and count are answered from 5-minute rollups and cover whole 5-minute buckets: the window is \
widened to the bucket edges around --since and --until; p95 uses the window as given.

Examples:
  vaktctl query 'max(system.filesystem.utilization) by department' --since 24h
  vaktctl query 'p95(system.cpu.utilization) by class' --since 7d -o csv
  vaktctl query 'avg(system.filesystem.utilization{mountpoint=\"/\"}) by site' --class laptop
  vaktctl query --agg count --metric system.cpu.utilization --by department --since 1h";

#[derive(Clone, Debug, clap::Args)]
pub struct QueryArgs {
    /// AGG(METRIC{k="v",...}) [by GROUP], e.g. 'max(system.filesystem.utilization) by department'
    #[arg(value_name = "EXPR", value_parser = query_expr::parse_expr,
          conflicts_with_all = ["metric", "agg", "by", "attributes"],
          required_unless_present = "metric")]
    pub expr: Option<Expr>,
    /// Metric name (instead of an expression)
    #[arg(long, value_name = "METRIC")]
    pub metric: Option<String>,
    /// Aggregation (with --metric)
    #[arg(long, value_enum, value_name = "AGG")]
    pub agg: Option<Agg>,
    /// Group by department, class or a label key (with --metric) [default: whole fleet]
    #[arg(long, value_name = "GROUP", value_parser = fleet_args::parse_group)]
    pub by: Option<Group>,
    /// Only series with this attribute (repeatable, with --metric), e.g. --attr mountpoint=/
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = super::parse_kv)]
    pub attributes: Vec<(String, String)>,
    /// Start of the window: a duration ago (24h, 7d) or an RFC 3339 time
    #[arg(long, value_name = "WHEN", default_value = "1h", value_parser = parse_when)]
    pub since: When,
    /// End of the window [default: now]
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub until: Option<When>,
    #[command(flatten)]
    pub select: SelectorArgs,
}

impl QueryArgs {
    /// The expression, whether given as text or as flags.
    pub fn expr(&self) -> Expr {
        match &self.expr {
            Some(e) => e.clone(),
            None => Expr {
                agg: self.agg.unwrap_or_default(),
                metric: self.metric.clone().unwrap_or_default(),
                attributes: self.attributes.clone(),
                group: self.by.clone().unwrap_or_default(),
            },
        }
    }

    pub fn request(&self, now_ms: i64) -> Result<v1::FleetAggregateRequest> {
        let expr = self.expr();
        if expr.agg == Agg::Last {
            bail!(
                "--agg last is not a fleet aggregation; `vaktctl top METRIC` lists current values"
            );
        }
        let since = self.since.unix_ms(now_ms);
        let until = self.until.map_or(now_ms, |u| u.unix_ms(now_ms));
        if since > until {
            bail!("--since must be before --until");
        }
        if until - since > vakt_proto::validate::MAX_QUERY_RANGE_MS {
            bail!("--since/--until: at most 400 days per query");
        }
        let (group_by, group_label) = expr.group.wire();
        Ok(v1::FleetAggregateRequest {
            metric: expr.metric,
            attributes: super::attributes(&expr.attributes),
            aggregation: expr.agg.wire() as i32,
            group_by,
            group_label,
            since_unix_ms: since,
            until_unix_ms: self.until.map_or(0, |u| u.unix_ms(now_ms)),
            selector: self.select.selector(),
        })
    }
}

pub async fn run(admin: &mut Admin, args: &QueryArgs, format: Format) -> Result<String> {
    let now = vakt_proto::now_unix_ms();
    let request = args.request(now)?;
    let until = if request.until_unix_ms == 0 {
        now
    } else {
        request.until_unix_ms
    };
    let (since, metric) = (request.since_unix_ms, request.metric.clone());
    let response = admin
        .client
        .fleet_aggregate(request)
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    if response.groups.is_empty() && format == Format::Table {
        eprintln!(
            "no {} samples from the {} selected device(s) in that window",
            output::terminal_safe(&metric),
            response.devices_scanned
        );
    }
    Ok(render_query(&args.expr(), &response, since, until, format))
}

#[derive(Serialize)]
struct QueryJson<'a> {
    metric: &'a str,
    aggregation: &'a str,
    by: &'a str,
    since: Option<String>,
    until: Option<String>,
    devices_scanned: u32,
    groups: Vec<GroupJson<'a>>,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    group: &'a str,
    value: f64,
    devices: u32,
    samples: u64,
}

pub fn render_query(
    expr: &Expr,
    response: &v1::FleetAggregateResponse,
    since_ms: i64,
    until_ms: i64,
    format: Format,
) -> String {
    let by = expr.group.name();
    match format {
        Format::Json => output::json(&QueryJson {
            metric: &expr.metric,
            aggregation: expr.agg.name(),
            by,
            since: output::rfc3339(since_ms),
            until: output::rfc3339(until_ms),
            devices_scanned: response.devices_scanned,
            groups: response
                .groups
                .iter()
                .map(|g| GroupJson {
                    group: &g.group,
                    value: g.value,
                    devices: g.devices,
                    samples: g.samples,
                })
                .collect(),
        }),
        Format::Csv => {
            let mut out = output::csv_row(&[by, expr.agg.name(), "devices", "samples"]);
            for g in &response.groups {
                out.push_str(&output::csv_row(&[
                    g.group.clone(),
                    g.value.to_string(),
                    g.devices.to_string(),
                    g.samples.to_string(),
                ]));
            }
            out
        }
        Format::Table => {
            if response.groups.is_empty() {
                return String::new();
            }
            let first = by.to_uppercase();
            let value = format!("{}({})", expr.agg.name(), expr.metric);
            let rows: Vec<Vec<String>> = response
                .groups
                .iter()
                .map(|g| {
                    vec![
                        if expr.group.is_fleet() {
                            "(all)".to_owned()
                        } else {
                            group_cell(&g.group)
                        },
                        value_cell(g.value),
                        g.devices.to_string(),
                        g.samples.to_string(),
                    ]
                })
                .collect();
            output::table(&[&first, &value, "DEVICES", "SAMPLES"], &rows)
        }
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
