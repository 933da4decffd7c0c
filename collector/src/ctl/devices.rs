//! `vaktctl devices` and `vaktctl device show`: the fleet as a table, JSON or
//! CSV. The JSON object is a contract (integration tests and scripts parse
//! it): field names are fixed, times are RFC 3339 UTC or null, enums are the
//! short names used on the command line.

use super::connect::Admin;
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use vakt_proto::v1;

#[derive(Clone, Debug, clap::Args)]
pub struct DevicesArgs {
    /// Only devices of this department
    #[arg(long, value_name = "D")]
    pub department: Option<String>,
    /// Only devices of this class
    #[arg(long, value_name = "C", value_parser = super::class_parser())]
    pub class: Option<i32>,
    /// Only devices in this state
    #[arg(long, value_name = "S", value_parser = super::status_parser())]
    pub status: Option<i32>,
    /// Only devices carrying this label (repeatable; all must match)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::parse_kv)]
    pub labels: Vec<(String, String)>,
    /// Only devices with a security flag (clone suspected, enrollment mismatch)
    #[arg(long)]
    pub flagged: bool,
}

impl DevicesArgs {
    pub fn request(&self) -> v1::ListDevicesRequest {
        v1::ListDevicesRequest {
            department: self.department.clone().unwrap_or_default(),
            class: self.class.unwrap_or_default(),
            status: self.status.unwrap_or_default(),
            labels: super::attributes(&self.labels),
        }
    }
}

pub async fn list(admin: &mut Admin, args: &DevicesArgs, format: Format) -> Result<String> {
    let mut devices = admin
        .client
        .list_devices(args.request())
        .await
        .map_err(|s| admin.error(s))?
        .into_inner()
        .devices;
    // The collector has no flag filter; flagged devices are few, and the
    // listing is complete anyway, so filtering here is exact.
    if args.flagged {
        devices.retain(|d| !d.flags.is_empty());
    }
    Ok(render_devices(&devices, format, vakt_proto::now_unix_ms()))
}

pub async fn show(admin: &mut Admin, device: &str, format: Format) -> Result<String> {
    let request = v1::GetDeviceRequest {
        device: device.to_string(),
    };
    let device = admin
        .client
        .get_device(request)
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    Ok(render_device(&device, format, vakt_proto::now_unix_ms()))
}

fn class_name(class: i32) -> &'static str {
    v1::DeviceClass::try_from(class).map_or("unknown", |c| c.short_name())
}

fn status_name(status: i32) -> &'static str {
    v1::DeviceStatus::try_from(status).map_or("unknown", |s| s.short_name())
}

fn event_name(kind: i32) -> Option<&'static str> {
    v1::EventKind::try_from(kind)
        .ok()
        .map(|k| k.short_name())
        .filter(|n| !n.is_empty())
}

const LIST_HEADER: [&str; 9] = [
    "ID",
    "HOSTNAME",
    "CLASS",
    "DEPARTMENT",
    "STATUS",
    "FLAGS",
    "LAST SEEN",
    "REGISTERED",
    "SERIAL",
];
/// The first seven columns are those of earlier versions, in the same order,
/// so scripts that read columns by position keep working.
const LIST_CSV_HEADER: [&str; 9] = [
    "device_id",
    "hostname",
    "class",
    "department",
    "status",
    "last_seen_at",
    "serial",
    "registered_at",
    "flags",
];

/// The distinct flag kinds, in the order first raised.
fn flag_kinds(d: &v1::Device) -> Vec<&str> {
    let mut kinds: Vec<&str> = Vec::new();
    for flag in &d.flags {
        if !kinds.contains(&flag.kind.as_str()) {
            kinds.push(&flag.kind);
        }
    }
    kinds
}

/// `2023-11-14` (UTC): enough to tell a device registered last week from
/// one forgotten since spring.
fn date(ms: i64) -> String {
    output::rfc3339(ms)
        .and_then(|t| t.get(..10).map(str::to_string))
        .unwrap_or_default()
}

/// The listing in any format; `now_ms` only affects the relative times of
/// the table.
pub fn render_devices(devices: &[v1::Device], format: Format, now_ms: i64) -> String {
    match format {
        Format::Json => output::json(&devices.iter().map(DeviceJson::from).collect::<Vec<_>>()),
        Format::Table => {
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|d| {
                    let mut row = common_cells(d);
                    row[5] = output::relative(d.last_seen_at_unix_ms, now_ms);
                    // Empty shows as `-`, like every empty cell.
                    row.insert(5, flag_kinds(d).join(","));
                    row.insert(7, date(d.registered_at_unix_ms));
                    row
                })
                .collect();
            output::table(&LIST_HEADER, &rows)
        }
        Format::Csv => {
            let mut out = output::csv_row(&LIST_CSV_HEADER);
            for d in devices {
                let mut row = common_cells(d);
                row[5] = output::rfc3339_or_empty(d.last_seen_at_unix_ms);
                row.push(output::rfc3339_or_empty(d.registered_at_unix_ms));
                // `;` like the label lists of `register --csv`.
                row.push(flag_kinds(d).join(";"));
                out.push_str(&output::csv_row(&row));
            }
            out
        }
    }
}

fn common_cells(d: &v1::Device) -> Vec<String> {
    vec![
        d.device_id.clone(),
        d.hostname.clone(),
        class_name(d.class).to_string(),
        d.department.clone(),
        status_name(d.status).to_string(),
        String::new(),
        d.serial.clone(),
    ]
}

/// One device in any format (CSV: the same columns as the listing).
pub fn render_device(d: &v1::Device, format: Format, now_ms: i64) -> String {
    match format {
        Format::Json => output::json(&DeviceJson::from(d)),
        Format::Csv => render_devices(std::slice::from_ref(d), Format::Csv, now_ms),
        Format::Table => device_block(d, now_ms),
    }
}

/// `absolute (relative)`, or `never`.
fn when(ms: i64, now_ms: i64) -> String {
    match output::rfc3339(ms) {
        Some(t) => format!("{t} ({})", output::relative(ms, now_ms)),
        None => "never".into(),
    }
}

fn device_block(d: &v1::Device, now_ms: i64) -> String {
    let status = match event_name(d.last_event) {
        Some(event) => format!("{} (last event: {event})", status_name(d.status)),
        None => status_name(d.status).to_string(),
    };
    let certificate = match output::rfc3339(d.certificate_not_after_unix_ms) {
        Some(t) => format!(
            "valid until {t} ({})",
            output::relative(d.certificate_not_after_unix_ms, now_ms)
        ),
        None => "none".into(),
    };
    let interval = match d.report_interval_seconds {
        0 => String::new(),
        s => format!("{s}s"),
    };
    let revoked = match d.revoked_at_unix_ms {
        0 => "no".to_string(),
        ms => when(ms, now_ms),
    };
    let flags = match flag_kinds(d) {
        kinds if kinds.is_empty() => "none".to_string(),
        kinds => format!("{} (below)", kinds.join(", ")),
    };
    let mut out = output::key_values(
        "",
        &[
            ("Device", d.device_id.clone()),
            ("Hostname", d.hostname.clone()),
            ("Status", status),
            ("Last seen", when(d.last_seen_at_unix_ms, now_ms)),
            ("Class", class_name(d.class).to_string()),
            ("Department", d.department.clone()),
            ("Owner", d.owner.clone()),
            ("Labels", output::attributes(&d.labels, ", ")),
            ("Model", d.model.clone()),
            ("Serial", d.serial.clone()),
            ("Product UUID", d.product_uuid.clone()),
            ("Machine ID", d.machine_id.clone()),
            ("Registered", when(d.registered_at_unix_ms, now_ms)),
            ("Enrolled", when(d.enrolled_at_unix_ms, now_ms)),
            ("Certificate", certificate),
            ("Report interval", interval),
            ("Last sequence", d.last_sequence.to_string()),
            ("Dropped reports", d.dropped_reports_total.to_string()),
            ("Revoked", revoked),
            ("Flags", flags),
        ],
    );
    if !d.flags.is_empty() {
        out.push_str("\nSecurity flags:\n");
        let rows: Vec<Vec<String>> = d
            .flags
            .iter()
            .map(|f| vec![f.kind.clone(), when(f.at_unix_ms, now_ms), f.detail.clone()])
            .collect();
        out.push_str(&output::table_indented(
            "  ",
            &["KIND", "RAISED", "DETAIL"],
            &rows,
        ));
    }
    match &d.inventory {
        None => out.push_str("\nInventory: none reported yet\n"),
        Some(inv) => {
            out.push_str("\nInventory:\n");
            out.push_str(&inventory_block(inv, now_ms));
        }
    }
    out
}

pub(super) fn inventory_block(inv: &v1::Inventory, now_ms: i64) -> String {
    let os = [inv.os_name.as_str(), inv.os_version.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let cpu = if inv.cpu_model.is_empty() && inv.cpu_logical_cores == 0 {
        String::new()
    } else {
        format!(
            "{} ({} logical / {} physical cores)",
            inv.cpu_model, inv.cpu_logical_cores, inv.cpu_physical_cores
        )
        .trim_start()
        .to_string()
    };
    let memory = format!(
        "{} (swap {})",
        output::bytes(inv.memory_total_bytes),
        output::bytes(inv.swap_total_bytes)
    );
    let hardware = [
        inv.manufacturer.as_str(),
        inv.model.as_str(),
        inv.chassis_type.as_str(),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" / ");
    let bios = [inv.bios_version.as_str(), inv.bios_date.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let boot = if inv.boot_time_unix_ms == 0 {
        String::new()
    } else {
        when(inv.boot_time_unix_ms, now_ms)
    };
    let mut out = output::key_values(
        "  ",
        &[
            ("OS", os),
            ("Kernel", inv.kernel_version.clone()),
            ("Architecture", inv.architecture.clone()),
            ("CPU", cpu),
            ("Memory", memory),
            ("Hardware", hardware),
            ("BIOS", bios),
            ("Agent", inv.agent_version.clone()),
            ("Booted", boot),
        ],
    );
    if !inv.disks.is_empty() {
        out.push_str("  Disks:\n");
        let rows: Vec<Vec<String>> = inv
            .disks
            .iter()
            .map(|disk| {
                vec![
                    disk.name.clone(),
                    disk.mount_point.clone(),
                    disk.file_system.clone(),
                    output::bytes(disk.total_bytes),
                    disk.kind.clone(),
                    if disk.removable {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    disk.model.clone(),
                    disk.serial.clone(),
                ]
            })
            .collect();
        out.push_str(&output::table_indented(
            "    ",
            &[
                "NAME",
                "MOUNT",
                "FS",
                "SIZE",
                "KIND",
                "REMOVABLE",
                "MODEL",
                "SERIAL",
            ],
            &rows,
        ));
    }
    if !inv.network_interfaces.is_empty() {
        out.push_str("  Interfaces:\n");
        let rows: Vec<Vec<String>> = inv
            .network_interfaces
            .iter()
            .map(|nic| {
                vec![
                    nic.name.clone(),
                    nic.mac_address.clone(),
                    nic.ip_addresses.join(", "),
                    nic.driver.clone(),
                ]
            })
            .collect();
        out.push_str(&output::table_indented(
            "    ",
            &["NAME", "MAC", "ADDRESSES", "DRIVER"],
            &rows,
        ));
    }
    out
}

/// The device JSON object. Field order is the declaration order.
#[derive(Serialize)]
pub struct DeviceJson<'a> {
    device_id: &'a str,
    hostname: &'a str,
    serial: &'a str,
    product_uuid: &'a str,
    machine_id: &'a str,
    model: &'a str,
    class: &'static str,
    department: &'a str,
    owner: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    status: &'static str,
    registered_at: Option<String>,
    enrolled_at: Option<String>,
    last_seen_at: Option<String>,
    last_sequence: u64,
    certificate_not_after: Option<String>,
    report_interval_seconds: u32,
    last_event: Option<&'static str>,
    inventory: Option<InventoryJson<'a>>,
    flags: Vec<FlagJson<'a>>,
    revoked_at: Option<String>,
    dropped_reports_total: u64,
}

#[derive(Serialize)]
struct FlagJson<'a> {
    kind: &'a str,
    at: Option<String>,
    detail: &'a str,
}

#[derive(Serialize)]
pub(super) struct InventoryJson<'a> {
    hostname: &'a str,
    os_name: &'a str,
    os_version: &'a str,
    kernel_version: &'a str,
    architecture: &'a str,
    cpu_model: &'a str,
    cpu_logical_cores: u32,
    cpu_physical_cores: u32,
    memory_total_bytes: u64,
    swap_total_bytes: u64,
    serial: &'a str,
    product_uuid: &'a str,
    machine_id: &'a str,
    manufacturer: &'a str,
    model: &'a str,
    bios_version: &'a str,
    bios_date: &'a str,
    chassis_type: &'a str,
    agent_version: &'a str,
    boot_time: Option<String>,
    disks: Vec<DiskJson<'a>>,
    network_interfaces: Vec<InterfaceJson<'a>>,
    batteries: Vec<super::inventory::BatteryJson<'a>>,
}

#[derive(Serialize)]
struct DiskJson<'a> {
    name: &'a str,
    mount_point: &'a str,
    file_system: &'a str,
    total_bytes: u64,
    removable: bool,
    kind: &'a str,
    model: &'a str,
    serial: &'a str,
}

#[derive(Serialize)]
struct InterfaceJson<'a> {
    name: &'a str,
    mac_address: &'a str,
    ip_addresses: &'a [String],
    driver: &'a str,
}

impl<'a> From<&'a v1::Device> for DeviceJson<'a> {
    fn from(d: &'a v1::Device) -> Self {
        DeviceJson {
            device_id: &d.device_id,
            hostname: &d.hostname,
            serial: &d.serial,
            product_uuid: &d.product_uuid,
            machine_id: &d.machine_id,
            model: &d.model,
            class: class_name(d.class),
            department: &d.department,
            owner: &d.owner,
            labels: d
                .labels
                .iter()
                .map(|a| (a.key.as_str(), a.value.as_str()))
                .collect(),
            status: status_name(d.status),
            registered_at: output::rfc3339(d.registered_at_unix_ms),
            enrolled_at: output::rfc3339(d.enrolled_at_unix_ms),
            last_seen_at: output::rfc3339(d.last_seen_at_unix_ms),
            last_sequence: d.last_sequence,
            certificate_not_after: output::rfc3339(d.certificate_not_after_unix_ms),
            report_interval_seconds: d.report_interval_seconds,
            last_event: event_name(d.last_event),
            inventory: d.inventory.as_ref().map(InventoryJson::from),
            flags: d
                .flags
                .iter()
                .map(|f| FlagJson {
                    kind: &f.kind,
                    at: output::rfc3339(f.at_unix_ms),
                    detail: &f.detail,
                })
                .collect(),
            revoked_at: output::rfc3339(d.revoked_at_unix_ms),
            dropped_reports_total: d.dropped_reports_total,
        }
    }
}

impl<'a> From<&'a v1::Inventory> for InventoryJson<'a> {
    fn from(i: &'a v1::Inventory) -> Self {
        InventoryJson {
            hostname: &i.hostname,
            os_name: &i.os_name,
            os_version: &i.os_version,
            kernel_version: &i.kernel_version,
            architecture: &i.architecture,
            cpu_model: &i.cpu_model,
            cpu_logical_cores: i.cpu_logical_cores,
            cpu_physical_cores: i.cpu_physical_cores,
            memory_total_bytes: i.memory_total_bytes,
            swap_total_bytes: i.swap_total_bytes,
            serial: &i.serial,
            product_uuid: &i.product_uuid,
            machine_id: &i.machine_id,
            manufacturer: &i.manufacturer,
            model: &i.model,
            bios_version: &i.bios_version,
            bios_date: &i.bios_date,
            chassis_type: &i.chassis_type,
            agent_version: &i.agent_version,
            boot_time: output::rfc3339(i.boot_time_unix_ms),
            disks: i
                .disks
                .iter()
                .map(|d| DiskJson {
                    name: &d.name,
                    mount_point: &d.mount_point,
                    file_system: &d.file_system,
                    total_bytes: d.total_bytes,
                    removable: d.removable,
                    kind: &d.kind,
                    model: &d.model,
                    serial: &d.serial,
                })
                .collect(),
            network_interfaces: i
                .network_interfaces
                .iter()
                .map(|n| InterfaceJson {
                    name: &n.name,
                    mac_address: &n.mac_address,
                    ip_addresses: &n.ip_addresses,
                    driver: &n.driver,
                })
                .collect(),
            batteries: super::inventory::batteries_json(&i.batteries),
        }
    }
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
