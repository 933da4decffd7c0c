//! The inventory: what the machine is, rather than how it is doing.
//!
//! Lists are sorted so that an unchanged machine always hashes the same (sysinfo
//! hands interfaces out of a HashMap), and everything is trimmed to the
//! collector's limits here, so a strange machine produces a smaller inventory
//! instead of a report the collector refuses.

use super::{Collector, clean_text, is_pseudo_filesystem, read_trimmed};
use crate::config::Paths;
use std::collections::HashSet;
use std::path::Path;
use sysinfo::{CpuRefreshKind, DiskKind, DiskRefreshKind, MemoryRefreshKind};
use vakt_proto::v1::{Disk, Inventory, NetworkInterface};
use vakt_proto::validate::{MAX_DISKS, MAX_IP_ADDRESSES, MAX_NETWORK_INTERFACES, MAX_TEXT_BYTES};

/// Identity and model facts from the DMI tables (`sysfs/class/dmi/id`). Each is
/// empty when unreadable: VMs often have no DMI, and `product_serial` needs root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmiFacts {
    pub serial: String,
    pub product_uuid: String,
    pub manufacturer: String,
    pub model: String,
    pub bios_version: String,
    pub bios_date: String,
    pub chassis_type: String,
}

/// Placeholder strings vendors burn into DMI instead of leaving a field empty;
/// treating them as real serials would bind every such machine to one registration.
fn is_placeholder(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.is_empty()
        || v.chars().all(|c| c == '0' || c == '-' || c == ' ')
        || [
            "to be filled by o.e.m.",
            "default string",
            "system serial number",
            "not specified",
            "not applicable",
            "none",
            "n/a",
            "0123456789",
            "03000200-0400-0500-0006-000700080009",
        ]
        .contains(&v.as_str())
}

pub fn dmi_facts(sysfs: &Path) -> DmiFacts {
    let dir = sysfs.join("class/dmi/id");
    let read = |name: &str| read_trimmed(&dir.join(name)).unwrap_or_default();
    let ident = |name: &str| {
        let v = read(name);
        if is_placeholder(&v) { String::new() } else { v }
    };
    DmiFacts {
        serial: ident("product_serial"),
        product_uuid: ident("product_uuid"),
        manufacturer: read("sys_vendor"),
        model: read("product_name"),
        bios_version: read("bios_version"),
        bios_date: read("bios_date"),
        chassis_type: chassis_name(&read("chassis_type")),
    }
}

/// SMBIOS chassis type codes (DMTF DSP0134 §7.4.1) as words; unknown codes stay numeric.
fn chassis_name(code: &str) -> String {
    let name = match code.parse::<u32>() {
        Ok(1) => "other",
        Ok(2) => "unknown",
        Ok(3) => "desktop",
        Ok(4) => "low-profile-desktop",
        Ok(5) => "pizza-box",
        Ok(6) => "mini-tower",
        Ok(7) => "tower",
        Ok(8) => "portable",
        Ok(9) => "laptop",
        Ok(10) => "notebook",
        Ok(11) => "hand-held",
        Ok(12) => "docking-station",
        Ok(13) => "all-in-one",
        Ok(14) => "sub-notebook",
        Ok(15) => "space-saving",
        Ok(16) => "lunch-box",
        Ok(17) => "main-server-chassis",
        Ok(23) => "rack-mount",
        Ok(24) => "sealed-case-pc",
        Ok(28) => "blade",
        Ok(30) => "tablet",
        Ok(31) => "convertible",
        Ok(32) => "detachable",
        Ok(33) => "iot-gateway",
        Ok(34) => "embedded-pc",
        Ok(35) => "mini-pc",
        Ok(36) => "stick-pc",
        _ => return code.to_owned(),
    };
    name.to_owned()
}

pub fn machine_id(paths: &Paths) -> String {
    read_trimmed(&paths.etc_machine_id).unwrap_or_default()
}

/// `NAME` and `VERSION_ID` from os-release under the configured root.
pub fn os_release(rootfs: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(rootfs.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(rootfs.join("usr/lib/os-release")))
        .ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let name = field("NAME");
    (!name.is_empty()).then(|| (name, field("VERSION_ID")))
}

pub fn hostname(paths: &Paths) -> String {
    read_trimmed(&paths.procfs.join("sys/kernel/hostname"))
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_default()
}

pub fn boot_time_unix_ms(procfs: &Path) -> i64 {
    let from_stat = std::fs::read_to_string(procfs.join("stat"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        });
    from_stat
        .or_else(|| {
            sysinfo::System::boot_time()
                .ok()
                .and_then(|b| i64::try_from(b).ok())
        })
        .map_or(0, |s| s.saturating_mul(1000))
}

/// Model and serial of the block device behind `/dev/<name>`; a partition
/// (`sda1`) has them on its parent, which `<partition>/..` reaches in sysfs.
fn block_device_facts(sysfs: &Path, device: &str) -> (String, String) {
    let Some(name) = device.strip_prefix("/dev/") else {
        return Default::default();
    };
    if name.contains('/') || name.is_empty() {
        return Default::default();
    }
    let base = sysfs.join("class/block").join(name);
    for dir in [base.join("device"), base.join("../device")] {
        let model = read_trimmed(&dir.join("model"));
        let serial = read_trimmed(&dir.join("serial"));
        if model.is_some() || serial.is_some() {
            return (model.unwrap_or_default(), serial.unwrap_or_default());
        }
    }
    Default::default()
}

fn net_driver(sysfs: &Path, interface: &str) -> String {
    std::fs::read_link(
        sysfs
            .join("class/net")
            .join(interface)
            .join("device/driver"),
    )
    .ok()
    .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
    .unwrap_or_default()
}

pub(super) fn collect(c: &mut Collector) -> Inventory {
    let paths = c.paths.clone();
    let dmi = dmi_facts(&paths.sysfs);
    let (os_name, os_version) = os_release(&paths.rootfs).unwrap_or_else(|| {
        (
            sysinfo::System::name().unwrap_or_default(),
            sysinfo::System::os_version().unwrap_or_default(),
        )
    });
    c.system.refresh_cpu_list(CpuRefreshKind::nothing());
    c.system
        .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
    let cpu_model = c
        .system
        .cpus()
        .first()
        .map(|cpu| cpu.brand().to_owned())
        .unwrap_or_default();

    c.disks
        .refresh_specifics(true, DiskRefreshKind::nothing().with_storage().with_kind());
    let mut seen = HashSet::new();
    let mut disks: Vec<Disk> = c
        .disks
        .iter()
        .filter_map(|d| {
            let mount_point = d.mount_point().to_string_lossy().into_owned();
            let file_system = d.file_system().to_string_lossy().into_owned();
            if is_pseudo_filesystem(&file_system, &mount_point) || !seen.insert(mount_point.clone())
            {
                return None;
            }
            let name = d.name().to_string_lossy().into_owned();
            let (model, serial) = block_device_facts(&paths.sysfs, &name);
            Some(Disk {
                name,
                mount_point,
                file_system,
                total_bytes: d.total_space(),
                removable: d.is_removable(),
                kind: match d.kind() {
                    DiskKind::SSD => "ssd",
                    DiskKind::HDD => "hdd",
                    DiskKind::Unknown(_) => "unknown",
                }
                .to_owned(),
                model,
                serial,
            })
        })
        .collect();
    disks.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));

    c.networks.refresh(true);
    let mut network_interfaces: Vec<NetworkInterface> = c
        .networks
        .iter()
        .filter(|(name, _)| name.as_os_str() != "lo")
        .map(|(name, data)| {
            let name = name.to_string_lossy().into_owned();
            let mut ip_addresses: Vec<String> = data
                .ip_networks()
                .iter()
                .map(|n| n.addr.to_string())
                .collect();
            ip_addresses.sort();
            ip_addresses.dedup();
            let mac = data.mac_address();
            NetworkInterface {
                driver: net_driver(&paths.sysfs, &name),
                name,
                mac_address: if mac.is_unspecified() {
                    String::new()
                } else {
                    mac.to_string()
                },
                ip_addresses,
            }
        })
        .collect();
    network_interfaces.sort_by(|a, b| a.name.cmp(&b.name));

    let inventory = Inventory {
        hostname: hostname(&paths),
        os_name,
        os_version,
        kernel_version: read_trimmed(&paths.procfs.join("sys/kernel/osrelease"))
            .or_else(|| sysinfo::System::kernel_version().ok())
            .unwrap_or_default(),
        architecture: sysinfo::System::cpu_arch(),
        cpu_model,
        cpu_logical_cores: u32::try_from(c.system.cpus().len()).unwrap_or(u32::MAX),
        cpu_physical_cores: sysinfo::System::physical_core_count()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        memory_total_bytes: c.system.total_memory(),
        swap_total_bytes: c.system.total_swap(),
        disks,
        network_interfaces,
        serial: dmi.serial,
        product_uuid: dmi.product_uuid,
        machine_id: machine_id(&paths),
        manufacturer: dmi.manufacturer,
        model: dmi.model,
        bios_version: dmi.bios_version,
        bios_date: dmi.bios_date,
        chassis_type: dmi.chassis_type,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        boot_time_unix_ms: boot_time_unix_ms(&paths.procfs),
        // Read from the power_supply class by `Collector::inventory`.
        batteries: Vec::new(),
    };
    fit_limits(inventory)
}

/// Trims an inventory to what `vakt_proto::validate::inventory` accepts.
pub(crate) fn fit_limits(mut inv: Inventory) -> Inventory {
    let t = |s: &mut String| *s = clean_text(s, MAX_TEXT_BYTES);
    for s in [
        &mut inv.hostname,
        &mut inv.os_name,
        &mut inv.os_version,
        &mut inv.kernel_version,
        &mut inv.architecture,
        &mut inv.cpu_model,
        &mut inv.serial,
        &mut inv.product_uuid,
        &mut inv.machine_id,
        &mut inv.manufacturer,
        &mut inv.model,
        &mut inv.bios_version,
        &mut inv.bios_date,
        &mut inv.chassis_type,
        &mut inv.agent_version,
    ] {
        t(s);
    }
    inv.disks.truncate(MAX_DISKS);
    for d in &mut inv.disks {
        for s in [
            &mut d.name,
            &mut d.mount_point,
            &mut d.file_system,
            &mut d.kind,
            &mut d.model,
            &mut d.serial,
        ] {
            t(s);
        }
    }
    inv.network_interfaces.truncate(MAX_NETWORK_INTERFACES);
    for n in &mut inv.network_interfaces {
        t(&mut n.name);
        t(&mut n.mac_address);
        t(&mut n.driver);
        n.ip_addresses.truncate(MAX_IP_ADDRESSES);
        n.ip_addresses.iter_mut().for_each(t);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn fixture() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "sys/class/dmi/id/product_serial", "SRV-0042\n");
        write(
            root,
            "sys/class/dmi/id/product_uuid",
            "4C4C4544-0042-3510-8052-B4C04F4A4B32\n",
        );
        write(root, "sys/class/dmi/id/sys_vendor", "Dell Inc.\n");
        write(root, "sys/class/dmi/id/product_name", "PowerEdge R650\n");
        write(root, "sys/class/dmi/id/bios_version", "1.6.5\n");
        write(root, "sys/class/dmi/id/bios_date", "04/11/2022\n");
        write(root, "sys/class/dmi/id/chassis_type", "23\n");
        write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        write(
            root,
            "etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n",
        );
        write(root, "proc/sys/kernel/hostname", "srv42\n");
        write(root, "proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        write(
            root,
            "proc/stat",
            "cpu  1 2 3 4 5 6 7 8 0 0\nbtime 1700000000\n",
        );
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.to_owned(),
            etc_machine_id: root.join("etc/machine-id"),
        };
        (dir, paths)
    }

    #[test]
    fn inventory_reads_the_fixture_tree() {
        let (_dir, paths) = fixture();
        let inv = Collector::new(&paths).unwrap().inventory();
        assert_eq!(inv.serial, "SRV-0042");
        assert_eq!(inv.product_uuid, "4C4C4544-0042-3510-8052-B4C04F4A4B32");
        assert_eq!(inv.manufacturer, "Dell Inc.");
        assert_eq!(inv.model, "PowerEdge R650");
        assert_eq!(inv.bios_version, "1.6.5");
        assert_eq!(inv.bios_date, "04/11/2022");
        assert_eq!(inv.chassis_type, "rack-mount");
        assert_eq!(inv.machine_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(inv.os_name, "Debian GNU/Linux");
        assert_eq!(inv.os_version, "12");
        assert_eq!(inv.hostname, "srv42");
        assert_eq!(inv.kernel_version, "6.1.0-18-amd64");
        assert_eq!(inv.boot_time_unix_ms, 1_700_000_000_000);
        assert_eq!(inv.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(vakt_proto::validate::inventory(&inv), Ok(()));
    }

    #[test]
    fn missing_dmi_is_empty_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dmi_facts(dir.path()), DmiFacts::default());
        write(
            dir.path(),
            "class/dmi/id/product_serial",
            "To Be Filled By O.E.M.\n",
        );
        write(dir.path(), "class/dmi/id/sys_vendor", "QEMU\n");
        let facts = dmi_facts(dir.path());
        assert_eq!(facts.serial, "");
        assert_eq!(facts.manufacturer, "QEMU");
    }

    #[test]
    fn inventory_hash_is_stable_on_an_unchanged_machine() {
        let (_dir, paths) = fixture();
        let mut c = Collector::new(&paths).unwrap();
        let a = vakt_proto::inventory_hash(&c.inventory());
        let b = vakt_proto::inventory_hash(&c.inventory());
        assert_eq!(a, b);
    }

    #[test]
    fn oversized_fields_are_trimmed() {
        let inv = fit_limits(Inventory {
            hostname: "h".repeat(1000),
            model: "bad\u{0}model".into(),
            disks: vec![Disk::default(); MAX_DISKS + 3],
            ..Default::default()
        });
        assert_eq!(inv.hostname.len(), MAX_TEXT_BYTES);
        assert_eq!(inv.model, "badmodel");
        assert_eq!(vakt_proto::validate::inventory(&inv), Ok(()));
    }
}
