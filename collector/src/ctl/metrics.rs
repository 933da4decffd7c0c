//! `vaktctl metrics DEVICE METRIC`: one metric of one device over a time
//! range, raw or aggregated per step, one series per attribute set.

pub const METRICS_HELP: &str = "\
One metric of one device over a time range: raw samples, or with --step one point per step \
(aligned to multiples of the step, stamped with the step's start) combined by --agg: avg \
(default), min, max, last, count, sum or p95. One series per attribute set.

Long ranges are cheap with --agg avg (the default): with a step of 5 minutes or more, or where \
raw samples are past their retention (default 14 days), the collector answers from its 5-minute \
rollups, so a year at --step 1d reads rollups, not every sample. The other aggregations read raw \
samples, so they cover the raw retention only and may ask for a larger step.

Examples:
  vaktctl metrics web-1 system.cpu.utilization --since 24h --step 5m
  vaktctl metrics web-1 system.filesystem.utilization --attr mountpoint=/ --since 30d --step 1d --agg max
  vaktctl metrics SN123 system.battery.health --since 400d --step 7d -o csv";

use super::connect::Admin;
use super::fleet_args::Agg;
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vakt_proto::v1;

#[derive(Clone, Debug, clap::Args)]
pub struct MetricsArgs {
    /// Device id, hostname or serial
    pub device: String,
    /// Metric name, e.g. system.cpu.utilization
    pub metric: String,
    /// Start: a duration ago (24h, 30m) or an RFC 3339 time
    #[arg(long, value_name = "WHEN", default_value = "1h", value_parser = parse_when)]
    pub since: When,
    /// End: a duration ago or an RFC 3339 time [default: now]
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub until: Option<When>,
    /// One point per step (5m, 1h), combined by --agg [default: raw samples]
    #[arg(long, value_name = "DURATION", value_parser = parse_step)]
    pub step: Option<Duration>,
    /// How each step's samples are combined (with --step)
    #[arg(long, value_enum, value_name = "AGG", default_value_t = Agg::Avg, requires = "step")]
    pub agg: Agg,
    /// Only series with this attribute (repeatable), e.g. --attr mountpoint=/
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = super::parse_kv)]
    pub attributes: Vec<(String, String)>,
}

/// A point in time given relative to now or absolutely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Ago(Duration),
    At(SystemTime),
}

impl When {
    pub fn unix_ms(self, now_ms: i64) -> i64 {
        match self {
            When::Ago(d) => now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            When::At(t) => t
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

pub fn parse_when(s: &str) -> Result<When, String> {
    if s == "now" {
        return Ok(When::Ago(Duration::ZERO));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(When::Ago(d));
    }
    humantime::parse_rfc3339_weak(s).map(When::At).map_err(|_| {
        "expected a duration ago like 24h or 30m, or a time like 2025-05-01T12:00:00Z".into()
    })
}

fn parse_step(s: &str) -> Result<Duration, String> {
    if s == "0" || s == "raw" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected e.g. 5m, 1h, or 0 for raw samples)"))
}

impl MetricsArgs {
    pub fn request(&self, now_ms: i64) -> v1::QueryMetricsRequest {
        v1::QueryMetricsRequest {
            device: self.device.clone(),
            metric: self.metric.clone(),
            since_unix_ms: self.since.unix_ms(now_ms),
            until_unix_ms: self.until.map_or(0, |u| u.unix_ms(now_ms)),
            step_ms: self
                .step
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            attributes: super::attributes(&self.attributes),
            step_aggregation: self.agg.wire() as i32,
        }
    }
}

pub async fn run(admin: &mut Admin, args: &MetricsArgs, format: Format) -> Result<String> {
    let now = vakt_proto::now_unix_ms();
    let request = args.request(now);
    // Checked here too so the message names the flags, not wire fields.
    let until = if request.until_unix_ms == 0 {
        now
    } else {
        request.until_unix_ms
    };
    if request.since_unix_ms > until {
        anyhow::bail!("--since must be before --until");
    }
    if until - request.since_unix_ms > vakt_proto::validate::MAX_QUERY_RANGE_MS {
        anyhow::bail!("--since/--until: at most 400 days per query");
    }
    let response = admin
        .client
        .query_metrics(request)
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    if response.series.is_empty() && format == Format::Table {
        // stderr, so a pipeline sees empty output rather than prose.
        eprintln!(
            "no {} samples for {} in that range",
            output::terminal_safe(&args.metric),
            output::terminal_safe(&args.device)
        );
    }
    Ok(render_metrics(&response, &args.metric, format))
}

#[derive(Serialize)]
struct MetricsJson<'a> {
    device_id: &'a str,
    metric: &'a str,
    series: Vec<SeriesJson<'a>>,
}

#[derive(Serialize)]
struct SeriesJson<'a> {
    attributes: BTreeMap<&'a str, &'a str>,
    points: Vec<PointJson>,
}

#[derive(Serialize)]
struct PointJson {
    timestamp: Option<String>,
    timestamp_unix_ms: i64,
    /// Non-finite values cannot occur (validated on ingest); serde_json would
    /// write them as null.
    value: f64,
}

/// `metric` is what was asked for; a series' own name wins when set.
pub fn render_metrics(response: &v1::QueryMetricsResponse, metric: &str, format: Format) -> String {
    match format {
        Format::Json => output::json(&MetricsJson {
            device_id: &response.device_id,
            metric,
            series: response
                .series
                .iter()
                .map(|s| SeriesJson {
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.as_str(), a.value.as_str()))
                        .collect(),
                    points: s
                        .points
                        .iter()
                        .map(|p| PointJson {
                            timestamp: output::rfc3339_millis(p.timestamp_unix_ms),
                            timestamp_unix_ms: p.timestamp_unix_ms,
                            value: p.value,
                        })
                        .collect(),
                })
                .collect(),
        }),
        Format::Csv => {
            let mut out = output::csv_row(&["timestamp", "attributes", "value"]);
            for s in &response.series {
                let attrs = output::attributes(&s.attributes, ";");
                for p in &s.points {
                    out.push_str(&output::csv_row(&[
                        output::rfc3339_millis(p.timestamp_unix_ms).unwrap_or_default(),
                        attrs.clone(),
                        p.value.to_string(),
                    ]));
                }
            }
            out
        }
        Format::Table => {
            let mut blocks = Vec::new();
            for s in &response.series {
                let name = if s.metric.is_empty() {
                    metric
                } else {
                    &s.metric
                };
                let title = if s.attributes.is_empty() {
                    output::terminal_safe(name)
                } else {
                    output::terminal_safe(&format!(
                        "{name} {{{}}}",
                        output::attributes(&s.attributes, ", ")
                    ))
                };
                let rows: Vec<Vec<String>> = s
                    .points
                    .iter()
                    .map(|p| {
                        vec![
                            output::rfc3339_millis(p.timestamp_unix_ms)
                                .unwrap_or_else(|| p.timestamp_unix_ms.to_string()),
                            p.value.to_string(),
                        ]
                    })
                    .collect();
                blocks.push(format!(
                    "{title}\n{}",
                    output::table(&["TIME", "VALUE"], &rows)
                ));
            }
            blocks.join("\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(k: &str, v: &str) -> v1::Attribute {
        v1::Attribute {
            key: k.into(),
            value: v.into(),
        }
    }

    fn response() -> v1::QueryMetricsResponse {
        let point = |t, v| v1::Point {
            timestamp_unix_ms: t,
            value: v,
        };
        v1::QueryMetricsResponse {
            device_id: "dev-1".into(),
            series: vec![
                v1::Series {
                    metric: "system.filesystem.utilization".into(),
                    attributes: vec![attr("mountpoint", "/"), attr("device", "sda1")],
                    points: vec![
                        point(1_700_000_000_000, 0.5),
                        point(1_700_000_300_000, 0.625),
                    ],
                },
                v1::Series {
                    metric: "system.filesystem.utilization".into(),
                    attributes: vec![attr("mountpoint", "/srv,data")],
                    points: vec![point(1_700_000_000_250, 1.0)],
                },
            ],
        }
    }

    const METRIC: &str = "system.filesystem.utilization";

    #[test]
    fn table_has_one_block_per_series() {
        assert_eq!(
            render_metrics(&response(), METRIC, Format::Table),
            "system.filesystem.utilization {mountpoint=/, device=sda1}\n\
             TIME                       VALUE\n\
             2023-11-14T22:13:20.000Z   0.5\n\
             2023-11-14T22:18:20.000Z   0.625\n\
             \n\
             system.filesystem.utilization {mountpoint=/srv,data}\n\
             TIME                       VALUE\n\
             2023-11-14T22:13:20.250Z   1\n"
        );
        assert_eq!(
            render_metrics(&v1::QueryMetricsResponse::default(), METRIC, Format::Table),
            ""
        );
    }

    #[test]
    fn csv_rows_carry_attributes() {
        assert_eq!(
            render_metrics(&response(), METRIC, Format::Csv),
            "timestamp,attributes,value\n\
             2023-11-14T22:13:20.000Z,mountpoint=/;device=sda1,0.5\n\
             2023-11-14T22:18:20.000Z,mountpoint=/;device=sda1,0.625\n\
             2023-11-14T22:13:20.250Z,\"mountpoint=/srv,data\",1\n"
        );
    }

    #[test]
    fn json_shape() {
        let out = render_metrics(&response(), METRIC, Format::Json);
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
        assert_eq!(v["device_id"], "dev-1");
        assert_eq!(v["metric"], METRIC);
        assert_eq!(v["series"][0]["attributes"]["mountpoint"], "/");
        assert_eq!(
            v["series"][0]["points"][1]["timestamp"],
            "2023-11-14T22:18:20.000Z"
        );
        assert_eq!(
            v["series"][0]["points"][1]["timestamp_unix_ms"],
            1_700_000_300_000_i64
        );
        assert_eq!(v["series"][0]["points"][1]["value"], 0.625);
        assert_eq!(v["series"][1]["points"][0]["value"], 1.0);
        assert!(out.starts_with("{\n  \"device_id\": \"dev-1\",\n  \"metric\": \"system.filesystem.utilization\",\n  \"series\": ["));
    }

    #[test]
    fn time_arguments() {
        let now = 1_700_000_000_000;
        assert_eq!(
            parse_when("24h").map(|w| w.unix_ms(now)),
            Ok(now - 86_400_000)
        );
        assert_eq!(parse_when("now").map(|w| w.unix_ms(now)), Ok(now));
        assert_eq!(
            parse_when("2023-11-14T22:13:20Z").map(|w| w.unix_ms(0)),
            Ok(now)
        );
        assert!(parse_when("yesterday").is_err());
        assert_eq!(parse_step("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_step("0"), Ok(Duration::ZERO));
        let args = MetricsArgs {
            device: "web-1".into(),
            metric: METRIC.into(),
            since: When::Ago(Duration::from_secs(3600)),
            until: None,
            step: Some(Duration::from_secs(300)),
            agg: Agg::Max,
            attributes: vec![("mountpoint".into(), "/".into())],
        };
        let req = args.request(now);
        assert_eq!(
            (req.since_unix_ms, req.until_unix_ms, req.step_ms),
            (now - 3_600_000, 0, 300_000)
        );
        assert_eq!(req.step_aggregation, v1::Aggregation::Max as i32);
        assert_eq!(req.attributes, vec![attr("mountpoint", "/")]);
    }
}
