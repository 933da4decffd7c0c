//! What the agent knows about its machine: health samples every interval and
//! the inventory now and then.
//!
//! One long-lived sysinfo `System`, `Disks` and `Networks` are refreshed in place
//! (re-creating them each time would re-read far more than a report needs).
//! Small text files (`/proc/stat`, DMI, os-release, machine-id) are read under
//! the configured roots so that tests can feed fixture trees.

mod health;
mod inventory;
mod io;
mod power;
pub mod software;

use crate::config::Paths;
use std::path::Path;
use vakt_proto::v1::{Attribute, Inventory, Sample};

pub use inventory::{DmiFacts, boot_time_unix_ms, dmi_facts, hostname, machine_id, os_release};

pub struct Collector {
    paths: Paths,
    system: sysinfo::System,
    disks: sysinfo::Disks,
    networks: sysinfo::Networks,
    cpu: health::CpuTimes,
    software: software::SoftwareReader,
}

impl Collector {
    pub fn new(paths: &Paths) -> anyhow::Result<Self> {
        use anyhow::Context;
        let mut collector = Self {
            paths: paths.clone(),
            system: sysinfo::System::new().context("cannot read system information")?,
            disks: sysinfo::Disks::new().context("cannot read the list of disks")?,
            networks: sysinfo::Networks::new().context("cannot read network interfaces")?,
            cpu: health::CpuTimes::default(),
            software: software::SoftwareReader::new(&paths.rootfs),
        };
        // CPU utilization is a difference between two readings; take the first now.
        collector.prime_cpu();
        Ok(collector)
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Health samples for one report; the batch's `collected_at` is their timestamp.
    pub fn health(&mut self) -> Vec<Sample> {
        health::collect(self)
    }

    pub fn inventory(&mut self) -> Inventory {
        let mut inventory = inventory::collect(self);
        inventory.batteries = power::battery_inventory(&self.paths.sysfs);
        inventory
    }

    /// The installed packages' hash; None when no package database is
    /// readable. Cheap when nothing changed (one `stat` per database file).
    pub fn software_hash(&mut self) -> Option<Vec<u8>> {
        self.software.hash().map(<[u8]>::to_vec)
    }

    /// The installed packages, read now (the set is not kept in memory).
    pub fn software(&self) -> Option<software::Software> {
        self.software.load()
    }
}

pub(crate) fn attrs(pairs: &[(&str, &str)]) -> Vec<Attribute> {
    pairs
        .iter()
        .map(|(k, v)| Attribute {
            key: (*k).to_owned(),
            value: (*v).to_owned(),
        })
        .collect()
}

/// Appends a sample (timestamped by its batch); non-finite values are left out
/// because the collector refuses them.
pub(crate) fn push_sample(
    out: &mut Vec<Sample>,
    metric: &str,
    attributes: &[(&str, &str)],
    value: f64,
) {
    if value.is_finite() {
        out.push(Sample {
            metric: metric.to_owned(),
            attributes: attrs(attributes),
            value,
            timestamp_unix_ms: 0,
        });
    }
}

/// A small text file, trimmed; None when missing or unreadable (no DMI on VMs,
/// no root for `product_serial`): absence is normal, never an error.
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Fits free text into what the collector accepts: no control characters, at
/// most `max` bytes (cut on a character boundary).
pub(crate) fn clean_text(value: &str, max: usize) -> String {
    let mut out: String = value.chars().filter(|c| !c.is_control()).collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// File systems that hold no user data; their usage says nothing about the
/// machine's health. Network mounts are left out as well, because `statvfs` on a
/// hard-mounted NFS share that went away blocks the whole agent.
pub(crate) fn is_pseudo_filesystem(fs_type: &str, mount_point: &str) -> bool {
    const SKIPPED: &[&str] = &[
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "fuse.lxcfs",
        "fuse.portal",
        "fuse.gvfsd-fuse",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "erofs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
    ];
    SKIPPED.contains(&fs_type)
        || [
            "/proc",
            "/sys",
            "/dev",
            "/run/credentials",
            "/var/lib/docker/",
            "/var/lib/containers/",
            "/snap/",
        ]
        .iter()
        .any(|prefix| {
            mount_point == prefix.trim_end_matches('/')
                || mount_point.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a fixture file under `root`, creating its directories.
    pub(crate) fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// The value of the sample of `metric` with exactly these attributes.
    pub(crate) fn value(
        samples: &[Sample],
        metric: &str,
        attributes: &[(&str, &str)],
    ) -> Option<f64> {
        let wanted = attrs(attributes);
        samples
            .iter()
            .find(|s| s.metric == metric && s.attributes == wanted)
            .map(|s| s.value)
    }

    fn fixture_paths(root: &Path) -> Paths {
        Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.to_path_buf(),
            etc_machine_id: root.join("etc/machine-id"),
        }
    }

    #[test]
    fn laptop_fixture_reports_its_degraded_battery_and_temperatures() {
        let dir = tempfile::tempdir().unwrap();
        power::tests::laptop_sysfs(&dir.path().join("sys"));
        write(dir.path(), "sys/class/dmi/id/chassis_type", "9\n");
        let mut collector = Collector::new(&fixture_paths(dir.path())).unwrap();
        let health = collector.health();
        let bat = [("battery", "BAT0")];
        let h = value(&health, "system.battery.health", &bat).unwrap();
        assert!((h - 0.76).abs() < 1e-9, "{h}");
        assert_eq!(value(&health, "system.battery.charge", &bat), Some(0.64));
        assert_eq!(
            value(&health, "system.battery.cycle_count", &bat),
            Some(412.0)
        );
        assert_eq!(
            value(
                &health,
                "system.battery.state",
                &[("battery", "BAT0"), ("state", "discharging")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &health,
                "system.hardware.temperature",
                &[("sensor", "coretemp Package id 0")]
            ),
            Some(52.5)
        );
        assert_eq!(collector.inventory().chassis_type, "laptop");
    }

    #[test]
    fn server_fixture_reports_both_disks_and_its_serial() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "proc/diskstats", io::tests::SERVER_DISKSTATS);
        for disk in ["sda", "sdb"] {
            write(
                dir.path(),
                &format!("sys/block/{disk}/queue/rotational"),
                "1\n",
            );
        }
        write(dir.path(), "sys/class/dmi/id/product_serial", "SRV-0042\n");
        write(dir.path(), "sys/class/dmi/id/chassis_type", "23\n");
        let mut collector = Collector::new(&fixture_paths(dir.path())).unwrap();
        let health = collector.health();
        let disks: std::collections::BTreeSet<String> = health
            .iter()
            .filter(|s| s.metric == "system.disk.io")
            .flat_map(|s| s.attributes.iter().filter(|a| a.key == "device"))
            .map(|a| a.value.clone())
            .collect();
        assert_eq!(disks.into_iter().collect::<Vec<_>>(), ["sda", "sdb"]);
        assert!(
            health
                .iter()
                .all(|s| !s.metric.starts_with("system.battery"))
        );
        let inventory = collector.inventory();
        assert_eq!(inventory.serial, "SRV-0042");
        assert_eq!(inventory.chassis_type, "rack-mount");
    }

    #[test]
    fn clean_text_cuts_on_char_boundaries() {
        assert_eq!(clean_text("a\nb\u{7}c", 10), "abc");
        assert_eq!(clean_text("ååå", 5), "åå");
        assert_eq!(clean_text("plain", 256), "plain");
    }

    #[test]
    fn pseudo_filesystems_are_recognised() {
        assert!(is_pseudo_filesystem("tmpfs", "/run"));
        assert!(is_pseudo_filesystem("overlay", "/"));
        assert!(is_pseudo_filesystem("ext4", "/var/lib/docker/overlay2/x"));
        assert!(is_pseudo_filesystem("ext4", "/snap/core/1"));
        assert!(!is_pseudo_filesystem("ext4", "/"));
        assert!(!is_pseudo_filesystem("xfs", "/srv/data"));
        assert!(!is_pseudo_filesystem("vfat", "/boot/efi"));
        assert!(!is_pseudo_filesystem("ext4", "/devices"));
    }
}
