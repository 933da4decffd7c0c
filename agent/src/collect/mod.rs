//! What the agent knows about its machine: health samples every interval and
//! the inventory now and then.
//!
//! One long-lived sysinfo `System`, `Disks` and `Networks` are refreshed in place
//! (re-creating them each time would re-read far more than a report needs).
//! Small text files (`/proc/stat`, DMI, os-release, machine-id) are read under
//! the configured roots so that tests can feed fixture trees.

mod health;
mod inventory;

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
        inventory::collect(self)
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
mod tests {
    use super::*;

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
