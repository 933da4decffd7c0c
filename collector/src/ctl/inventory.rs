//! `vaktctl inventory DEVICE [--software] [--history]`: what a device is, what
//! is installed on it, and how that changed.

use super::connect::Admin;
use super::metrics::{When, parse_when};
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use vakt_proto::v1;

#[derive(Clone, Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct InventoryArgs {
    /// Fleet-wide inventory questions: `vaktctl inventory query --help`
    #[command(subcommand)]
    pub command: Option<super::InventoryCommand>,
    /// Device id, hostname or serial
    #[arg(required = true)]
    pub device: Option<String>,
    /// The installed packages (with --history: only software changes)
    #[arg(long)]
    pub software: bool,
    /// How the inventory and installed software changed, oldest first
    #[arg(long)]
    pub history: bool,
    /// With --history: start, a duration ago (30d) or an RFC 3339 time
    #[arg(long, value_name = "WHEN", default_value = "365d", value_parser = parse_when)]
    pub since: When,
    /// With --history: at most this many changes, the newest ones
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = parse_limit)]
    pub limit: u32,
}

fn parse_limit(s: &str) -> Result<u32, String> {
    let max = vakt_proto::validate::MAX_HISTORY_ENTRIES;
    match s.parse::<u32>() {
        Ok(n) if n >= 1 && n as usize <= max => Ok(n),
        _ => Err(format!("expected a number from 1 to {max}")),
    }
}

pub async fn run(admin: &mut Admin, args: &InventoryArgs, format: Format) -> Result<String> {
    let device = args.device.clone().unwrap_or_default();
    if args.history {
        let request = v1::ListInventoryHistoryRequest {
            device: device.clone(),
            since_unix_ms: args.since.unix_ms(vakt_proto::now_unix_ms()).max(0),
            limit: args.limit,
        };
        let response = admin
            .client
            .list_inventory_history(request)
            .await
            .map_err(|s| admin.error(s))?
            .into_inner();
        let changes: Vec<&v1::InventoryChange> = response
            .changes
            .iter()
            .filter(|c| !args.software || c.kind == "software")
            .collect();
        return Ok(render_history(&changes, format));
    }
    let request = v1::GetInventoryRequest {
        device: device.clone(),
        software: args.software,
    };
    let response = admin
        .client
        .get_inventory(request)
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    Ok(if args.software {
        render_packages(&response, format)
    } else {
        render_inventory(&response, format, vakt_proto::now_unix_ms())
    })
}

#[derive(Serialize)]
pub(super) struct BatteryJson<'a> {
    name: &'a str,
    manufacturer: &'a str,
    model: &'a str,
    serial: &'a str,
    technology: &'a str,
    design_capacity_wh: f64,
}

pub(super) fn batteries_json(list: &[v1::Battery]) -> Vec<BatteryJson<'_>> {
    list.iter()
        .map(|b| BatteryJson {
            name: &b.name,
            manufacturer: &b.manufacturer,
            model: &b.model,
            serial: &b.serial,
            technology: &b.technology,
            design_capacity_wh: b.design_capacity_wh,
        })
        .collect()
}

#[derive(Serialize)]
struct SoftwareSummaryJson {
    package_count: u32,
    hash: String,
    updated_at: Option<String>,
}

fn summary(r: &v1::GetInventoryResponse) -> SoftwareSummaryJson {
    SoftwareSummaryJson {
        package_count: r.package_count,
        hash: hex::encode(&r.software_hash),
        updated_at: output::rfc3339(r.software_updated_at_unix_ms),
    }
}

#[derive(Serialize)]
struct InventoryViewJson<'a> {
    device_id: &'a str,
    inventory: Option<super::devices::InventoryJson<'a>>,
    software: SoftwareSummaryJson,
}

#[derive(Serialize)]
struct PackageJson<'a> {
    name: &'a str,
    version: &'a str,
    architecture: &'a str,
    source: &'a str,
}

#[derive(Serialize)]
struct PackagesJson<'a> {
    device_id: &'a str,
    software: SoftwareSummaryJson,
    packages: Vec<PackageJson<'a>>,
}

fn software_line(r: &v1::GetInventoryResponse, now_ms: i64) -> String {
    if r.software_hash.is_empty() {
        return "unknown (no package database reported)".into();
    }
    match output::rfc3339(r.software_updated_at_unix_ms) {
        Some(t) => format!(
            "{} packages (last change {t}, {})",
            r.package_count,
            output::relative(r.software_updated_at_unix_ms, now_ms)
        ),
        None => format!("{} packages", r.package_count),
    }
}

pub fn render_inventory(r: &v1::GetInventoryResponse, format: Format, now_ms: i64) -> String {
    match format {
        Format::Json => output::json(&InventoryViewJson {
            device_id: &r.device_id,
            inventory: r
                .inventory
                .as_ref()
                .map(super::devices::InventoryJson::from),
            software: summary(r),
        }),
        // One key/value row per fact: the shape a spreadsheet takes.
        Format::Csv => {
            let mut out = output::csv_row(&["device_id", "key", "value"]);
            let mut row = |k: &str, v: String| {
                out.push_str(&output::csv_row(&[r.device_id.clone(), k.to_owned(), v]));
            };
            if let Some(i) = &r.inventory {
                for (k, v) in [
                    ("hostname", &i.hostname),
                    ("os_name", &i.os_name),
                    ("os_version", &i.os_version),
                    ("kernel_version", &i.kernel_version),
                    ("architecture", &i.architecture),
                    ("cpu_model", &i.cpu_model),
                    ("serial", &i.serial),
                    ("manufacturer", &i.manufacturer),
                    ("model", &i.model),
                    ("bios_version", &i.bios_version),
                    ("chassis_type", &i.chassis_type),
                ] {
                    row(k, v.clone());
                }
                row("memory_total_bytes", i.memory_total_bytes.to_string());
                for b in &i.batteries {
                    row(
                        &format!("battery.{}.design_capacity_wh", b.name),
                        b.design_capacity_wh.to_string(),
                    );
                }
            }
            row("software.package_count", r.package_count.to_string());
            row("software.hash", hex::encode(&r.software_hash));
            out
        }
        Format::Table => {
            let mut out = format!("Device: {}\n", r.device_id);
            match &r.inventory {
                None => out.push_str("Inventory: none reported yet\n"),
                Some(inv) => {
                    out.push_str("Inventory:\n");
                    out.push_str(&super::devices::inventory_block(inv, now_ms));
                    if !inv.batteries.is_empty() {
                        out.push_str("  Batteries:\n");
                        let rows: Vec<Vec<String>> = inv
                            .batteries
                            .iter()
                            .map(|b| {
                                vec![
                                    b.name.clone(),
                                    b.manufacturer.clone(),
                                    b.model.clone(),
                                    b.serial.clone(),
                                    b.technology.clone(),
                                    if b.design_capacity_wh > 0.0 {
                                        format!("{:.1} Wh", b.design_capacity_wh)
                                    } else {
                                        String::new()
                                    },
                                ]
                            })
                            .collect();
                        out.push_str(&output::table_indented(
                            "    ",
                            &[
                                "NAME",
                                "MANUFACTURER",
                                "MODEL",
                                "SERIAL",
                                "TECHNOLOGY",
                                "DESIGN",
                            ],
                            &rows,
                        ));
                    }
                }
            }
            out.push_str(&format!("Software: {}\n", software_line(r, now_ms)));
            out
        }
    }
}

pub fn render_packages(r: &v1::GetInventoryResponse, format: Format) -> String {
    match format {
        Format::Json => output::json(&PackagesJson {
            device_id: &r.device_id,
            software: summary(r),
            packages: r
                .packages
                .iter()
                .map(|p| PackageJson {
                    name: &p.name,
                    version: &p.version,
                    architecture: &p.architecture,
                    source: &p.source,
                })
                .collect(),
        }),
        Format::Csv => {
            let mut out = output::csv_row(&["name", "version", "architecture", "source"]);
            for p in &r.packages {
                out.push_str(&output::csv_row(&[
                    &p.name,
                    &p.version,
                    &p.architecture,
                    &p.source,
                ]));
            }
            out
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = r
                .packages
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.version.clone(),
                        p.architecture.clone(),
                        p.source.clone(),
                    ]
                })
                .collect();
            output::table(&["NAME", "VERSION", "ARCH", "SOURCE"], &rows)
        }
    }
}

#[derive(Serialize)]
struct ChangeJson<'a> {
    at: Option<String>,
    sequence: u64,
    kind: &'a str,
    /// "full" or "incremental" for software; empty for inventory.
    mode: &'a str,
    changed_fields: &'a [String],
    added: u32,
    removed: u32,
    changed: u32,
    packages: Vec<PackageChangeJson<'a>>,
}

#[derive(Serialize)]
struct PackageChangeJson<'a> {
    name: &'a str,
    architecture: &'a str,
    old_version: &'a str,
    new_version: &'a str,
}

fn mode(c: &v1::InventoryChange) -> &'static str {
    match (c.kind.as_str(), c.incremental) {
        ("software", true) => "incremental",
        ("software", false) => "full",
        _ => "",
    }
}

/// What changed, in a few words: fields, or package counts and a few names.
fn detail(c: &v1::InventoryChange) -> String {
    if c.kind != "software" {
        return c.changed_fields.join(",");
    }
    const NAMES_SHOWN: usize = 5;
    let mut names: Vec<String> = c
        .packages
        .iter()
        .take(NAMES_SHOWN)
        .map(
            |p| match (p.old_version.is_empty(), p.new_version.is_empty()) {
                (true, _) => format!("+{} {}", p.name, p.new_version),
                (_, true) => format!("-{}", p.name),
                _ => format!("{} {}→{}", p.name, p.old_version, p.new_version),
            },
        )
        .collect();
    if c.packages.len() > NAMES_SHOWN {
        names.push("…".into());
    }
    format!(
        "+{} -{} ~{}: {}",
        c.added,
        c.removed,
        c.changed,
        names.join(", ")
    )
}

pub fn render_history(changes: &[&v1::InventoryChange], format: Format) -> String {
    match format {
        Format::Json => output::json(
            &changes
                .iter()
                .map(|c| ChangeJson {
                    at: output::rfc3339(c.at_unix_ms),
                    sequence: c.sequence,
                    kind: &c.kind,
                    mode: mode(c),
                    changed_fields: &c.changed_fields,
                    added: c.added,
                    removed: c.removed,
                    changed: c.changed,
                    packages: c
                        .packages
                        .iter()
                        .map(|p| PackageChangeJson {
                            name: &p.name,
                            architecture: &p.architecture,
                            old_version: &p.old_version,
                            new_version: &p.new_version,
                        })
                        .collect(),
                })
                .collect::<Vec<_>>(),
        ),
        Format::Csv => {
            let mut out = output::csv_row(&[
                "at", "sequence", "kind", "mode", "added", "removed", "changed", "detail",
            ]);
            for c in changes {
                out.push_str(&output::csv_row(&[
                    output::rfc3339_or_empty(c.at_unix_ms),
                    c.sequence.to_string(),
                    c.kind.clone(),
                    mode(c).to_owned(),
                    c.added.to_string(),
                    c.removed.to_string(),
                    c.changed.to_string(),
                    detail(c),
                ]));
            }
            out
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| {
                    vec![
                        output::rfc3339_or_empty(c.at_unix_ms),
                        c.sequence.to_string(),
                        c.kind.clone(),
                        mode(c).to_owned(),
                        detail(c),
                    ]
                })
                .collect();
            output::table(&["TIME", "SEQ", "KIND", "MODE", "DETAIL"], &rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> v1::InventoryChange {
        v1::InventoryChange {
            at_unix_ms: 1_700_000_000_000,
            sequence: 7,
            kind: "software".into(),
            incremental: true,
            added: 1,
            removed: 1,
            packages: vec![
                v1::PackageChange {
                    name: "vim".into(),
                    architecture: "amd64".into(),
                    old_version: "9.0".into(),
                    ..Default::default()
                },
                v1::PackageChange {
                    name: "jq".into(),
                    architecture: "amd64".into(),
                    new_version: "1.6".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn history_in_every_format() {
        let c = change();
        let table = render_history(&[&c], Format::Table);
        assert!(table.starts_with("TIME"), "{table}");
        assert!(
            table.contains("incremental   +1 -1 ~0: -vim, +jq 1.6"),
            "{table}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_history(&[&c], Format::Json)).unwrap();
        assert_eq!(json[0]["mode"], "incremental");
        assert_eq!(json[0]["packages"][1]["new_version"], "1.6");
        let csv = render_history(&[&c], Format::Csv);
        assert_eq!(csv.lines().count(), 2);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("2023-11-14T22:13:20Z,7,software,incremental,1,1,0,")
        );
    }

    #[test]
    fn packages_and_inventory() {
        let r = v1::GetInventoryResponse {
            device_id: "d-1".into(),
            inventory: Some(v1::Inventory {
                hostname: "lt-1".into(),
                batteries: vec![v1::Battery {
                    name: "BAT0".into(),
                    design_capacity_wh: 50.0,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            packages: vec![v1::Package {
                name: "bash".into(),
                version: "5.2".into(),
                architecture: "amd64".into(),
                source: "dpkg".into(),
            }],
            package_count: 1,
            software_hash: vec![0xab; 32],
            software_updated_at_unix_ms: 0,
        };
        let table = render_packages(&r, Format::Table);
        assert_eq!(
            table.lines().nth(1).unwrap(),
            "bash   5.2       amd64   dpkg"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_packages(&r, Format::Json)).unwrap();
        assert_eq!(json["software"]["package_count"], 1);
        assert_eq!(json["packages"][0]["name"], "bash");
        let text = render_inventory(&r, Format::Table, 0);
        assert!(text.contains("BAT0") && text.contains("50.0 Wh"), "{text}");
        assert!(text.contains("Software: 1 packages"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&render_inventory(&r, Format::Json, 0)).unwrap();
        assert_eq!(
            json["inventory"]["batteries"][0]["design_capacity_wh"],
            50.0
        );
        let csv = render_inventory(&r, Format::Csv, 0);
        assert!(
            csv.contains("d-1,battery.BAT0.design_capacity_wh,50\n"),
            "{csv}"
        );
    }
}
