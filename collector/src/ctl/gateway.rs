//! The tablet-gateway parts of `vaktctl`: `devices --refused`, and the child
//! and gateway facts of `device show` and the device JSON.

use super::connect::Admin;
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use vakt_proto::v1;

/// `vaktctl devices --refused [--via GATEWAY]`.
pub async fn refused(admin: &mut Admin, via: Option<&str>, format: Format) -> Result<String> {
    let request = v1::ListRefusedChildrenRequest {
        gateway: via.unwrap_or_default().to_string(),
    };
    let children = admin
        .client
        .list_refused_children(request)
        .await
        .map_err(|s| admin.error(s))?
        .into_inner()
        .children;
    Ok(render_refused(&children, format, vakt_proto::now_unix_ms()))
}

const REFUSED_HEADER: [&str; 7] = [
    "GATEWAY",
    "IDENTIFIER",
    "SERIAL",
    "REASON",
    "FIRST SEEN",
    "LAST SEEN",
    "REPORTS",
];
const REFUSED_CSV_HEADER: [&str; 7] = [
    "gateway_device_id",
    "identifier",
    "serial",
    "reason",
    "first_seen_at",
    "last_seen_at",
    "count",
];

pub fn render_refused(children: &[v1::RefusedChild], format: Format, now_ms: i64) -> String {
    match format {
        Format::Json => output::json(&children.iter().map(RefusedJson::from).collect::<Vec<_>>()),
        Format::Table => {
            let rows: Vec<Vec<String>> = children
                .iter()
                .map(|r| {
                    vec![
                        r.gateway_device_id.clone(),
                        r.identifier.clone(),
                        r.serial.clone(),
                        r.reason.clone(),
                        output::relative(r.first_seen_unix_ms, now_ms),
                        output::relative(r.last_seen_unix_ms, now_ms),
                        r.count.to_string(),
                    ]
                })
                .collect();
            output::table(&REFUSED_HEADER, &rows)
        }
        Format::Csv => {
            let mut out = output::csv_row(&REFUSED_CSV_HEADER);
            for r in children {
                out.push_str(&output::csv_row(&[
                    r.gateway_device_id.clone(),
                    r.identifier.clone(),
                    r.serial.clone(),
                    r.reason.clone(),
                    output::rfc3339_or_empty(r.first_seen_unix_ms),
                    output::rfc3339_or_empty(r.last_seen_unix_ms),
                    r.count.to_string(),
                ]));
            }
            out
        }
    }
}

#[derive(Serialize)]
pub struct RefusedJson<'a> {
    gateway_device_id: &'a str,
    identifier: &'a str,
    serial: &'a str,
    reason: &'a str,
    first_seen_at: Option<String>,
    last_seen_at: Option<String>,
    count: u64,
}

impl<'a> From<&'a v1::RefusedChild> for RefusedJson<'a> {
    fn from(r: &'a v1::RefusedChild) -> Self {
        RefusedJson {
            gateway_device_id: &r.gateway_device_id,
            identifier: &r.identifier,
            serial: &r.serial,
            reason: &r.reason,
            first_seen_at: output::rfc3339(r.first_seen_unix_ms),
            last_seen_at: output::rfc3339(r.last_seen_unix_ms),
            count: r.count,
        }
    }
}

/// What a gateway last reported about a child, in the device JSON.
#[derive(Serialize)]
pub struct ChildJson<'a> {
    gateway_device_id: &'a str,
    reported_at: Option<String>,
    identifier: &'a str,
    serial: &'a str,
    model: &'a str,
    os_name: &'a str,
    os_version: &'a str,
    battery_percent: Option<f64>,
    battery_health_percent: Option<f64>,
    storage_total_bytes: Option<u64>,
    storage_free_bytes: Option<u64>,
    last_sync: Option<String>,
    source: &'a str,
}

impl<'a> From<&'a v1::ChildState> for ChildJson<'a> {
    fn from(c: &'a v1::ChildState) -> Self {
        let r = c.reported.as_ref();
        let s = |f: fn(&v1::ChildDevice) -> &String| r.map_or("", |r| f(r).as_str());
        ChildJson {
            gateway_device_id: &c.gateway_device_id,
            reported_at: output::rfc3339(c.reported_at_unix_ms),
            identifier: s(|r| &r.identifier),
            serial: s(|r| &r.serial),
            model: s(|r| &r.model),
            os_name: s(|r| &r.os_name),
            os_version: s(|r| &r.os_version),
            battery_percent: r.and_then(|r| r.battery_percent),
            battery_health_percent: r.and_then(|r| r.battery_health_percent),
            storage_total_bytes: r.and_then(|r| r.storage_total_bytes),
            storage_free_bytes: r.and_then(|r| r.storage_free_bytes),
            last_sync: r.and_then(|r| output::rfc3339(r.last_sync_unix_ms)),
            source: s(|r| &r.source),
        }
    }
}

fn when(ms: i64, now_ms: i64) -> String {
    match output::rfc3339(ms) {
        Some(t) => format!("{t} ({})", output::relative(ms, now_ms)),
        None => "never".into(),
    }
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} %")).unwrap_or_default()
}

/// The `device show` section about a child (what its gateway reported) or a
/// gateway (what it reported that was refused); empty for other devices.
pub fn block(d: &v1::Device, now_ms: i64) -> String {
    let mut out = String::new();
    if let Some(child) = &d.child {
        let r = child.reported.clone().unwrap_or_default();
        let os = format!("{} {}", r.os_name, r.os_version).trim().to_string();
        let storage = match (r.storage_total_bytes, r.storage_free_bytes) {
            (Some(total), Some(free)) => {
                format!("{} free of {}", output::bytes(free), output::bytes(total))
            }
            (Some(total), None) => output::bytes(total),
            (None, Some(free)) => format!("{} free", output::bytes(free)),
            (None, None) => String::new(),
        };
        out.push_str("\nReported by gateway:\n");
        out.push_str(&output::key_values(
            "  ",
            &[
                ("Gateway", child.gateway_device_id.clone()),
                ("Reported", when(child.reported_at_unix_ms, now_ms)),
                ("Source", r.source),
                ("Identifier", r.identifier),
                ("Serial", r.serial),
                ("Model", r.model),
                ("OS", os),
                ("Battery", percent(r.battery_percent)),
                ("Battery health", percent(r.battery_health_percent)),
                ("Storage", storage),
                ("Last sync", when(r.last_sync_unix_ms, now_ms)),
            ],
        ));
    } else if !d.via_gateway.is_empty() {
        out.push_str("\nReported by gateway: not yet\n");
    }
    let is_gateway = d.class == v1::DeviceClass::Gateway as i32;
    if is_gateway {
        out.push_str(&format!(
            "\nRefused children: {} (invalid source lines so far: {})\n",
            if d.refused_children.is_empty() {
                "none".to_string()
            } else {
                d.refused_children.len().to_string()
            },
            d.invalid_child_lines_total
        ));
        if !d.refused_children.is_empty() {
            let rows: Vec<Vec<String>> = d
                .refused_children
                .iter()
                .map(|r| {
                    vec![
                        r.identifier.clone(),
                        r.serial.clone(),
                        r.reason.clone(),
                        output::relative(r.last_seen_unix_ms, now_ms),
                        r.count.to_string(),
                    ]
                })
                .collect();
            out.push_str(&output::table_indented(
                "  ",
                &["IDENTIFIER", "SERIAL", "REASON", "LAST SEEN", "REPORTS"],
                &rows,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn refused() -> v1::RefusedChild {
        v1::RefusedChild {
            gateway_device_id: "d-gw".into(),
            identifier: "mdm-9".into(),
            serial: "R9".into(),
            reason: "not registered".into(),
            first_seen_unix_ms: NOW - 3_600_000,
            last_seen_unix_ms: NOW - 60_000,
            count: 12,
        }
    }

    #[test]
    fn refused_children_in_every_format() {
        let table = render_refused(&[refused()], Format::Table, NOW);
        assert!(table.starts_with("GATEWAY"), "{table}");
        assert!(
            table.contains("mdm-9") && table.contains("not registered"),
            "{table}"
        );
        let csv = render_refused(&[refused()], Format::Csv, NOW);
        assert_eq!(
            csv.lines().nth(1),
            Some("d-gw,mdm-9,R9,not registered,2023-11-14T21:13:20Z,2023-11-14T22:12:20Z,12")
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_refused(&[refused()], Format::Json, NOW)).unwrap();
        assert_eq!(json[0]["identifier"], "mdm-9");
        assert_eq!(json[0]["count"], 12);
    }

    #[test]
    fn show_blocks_for_a_child_and_a_gateway() {
        let child = v1::Device {
            via_gateway: "d-gw".into(),
            child: Some(v1::ChildState {
                reported: Some(v1::ChildDevice {
                    identifier: "mdm-1".into(),
                    battery_percent: Some(81.0),
                    storage_total_bytes: Some(64 << 30),
                    storage_free_bytes: Some(16 << 30),
                    ..Default::default()
                }),
                gateway_device_id: "d-gw".into(),
                reported_at_unix_ms: NOW - 1000,
            }),
            ..Default::default()
        };
        let text = block(&child, NOW);
        assert!(text.contains("Gateway") && text.contains("d-gw"), "{text}");
        assert!(text.contains("81 %"), "{text}");
        let gateway = v1::Device {
            class: v1::DeviceClass::Gateway as i32,
            refused_children: vec![refused()],
            invalid_child_lines_total: 3,
            ..Default::default()
        };
        let text = block(&gateway, NOW);
        assert!(
            text.contains("Refused children: 1 (invalid source lines so far: 3)"),
            "{text}"
        );
        assert!(text.contains("mdm-9"), "{text}");
        assert_eq!(block(&v1::Device::default(), NOW), "");
    }
}
