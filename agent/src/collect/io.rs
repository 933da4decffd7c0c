//! Disk and network counters that sysinfo does not give per device and
//! direction: `procfs/diskstats` and `procfs/net/dev`, read under the configured
//! roots so that tests can feed fixture trees. Counters are cumulative, as the
//! OpenTelemetry host-metrics sums are; the collector derives rates.

use super::push_sample;
use std::path::Path;
use vakt_proto::v1::Sample;

/// `diskstats` counts in 512-byte sectors whatever the device's sector size.
const SECTOR_BYTES: f64 = 512.0;

/// Devices that are not disks of their own: loop and RAM disks, and stacked
/// devices (device mapper, software RAID) whose I/O the disks below already count.
fn is_virtual(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "md", "fd", "nbd"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Whether `name` is a whole disk, not a partition. `sysfs/block` lists whole
/// disks only (partitions live one level down); without it (a fixture or a
/// container without /sys), fall back to the kernel's naming of partitions.
fn is_whole_disk(sysfs: &Path, name: &str) -> bool {
    if is_virtual(name) {
        return false;
    }
    let block = sysfs.join("block");
    if block.is_dir() {
        return block.join(name).exists();
    }
    let ends_in_digit = name.bytes().last().is_some_and(|b| b.is_ascii_digit());
    if name.starts_with("nvme") || name.starts_with("mmcblk") {
        // nvme0n1 is a disk, nvme0n1p2 a partition; mmcblk0 / mmcblk0p1 likewise
        // (neither prefix has a "p" of its own).
        !name.contains('p')
    } else {
        !ends_in_digit
    }
}

/// `system.disk.io` (bytes), `system.disk.operations` {device, direction} and
/// `system.disk.io_time` (seconds busy) {device} for every whole disk.
pub(super) fn disk_io(procfs: &Path, sysfs: &Path, out: &mut Vec<Sample>) {
    let Ok(text) = std::fs::read_to_string(procfs.join("diskstats")) else {
        return;
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // major minor name, then at least the 11 classic counters.
        if fields.len() < 14 {
            continue;
        }
        let name = fields[2];
        if !is_whole_disk(sysfs, name) {
            continue;
        }
        let counter = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let pairs = [
            ("read", counter(3), counter(5)),
            ("write", counter(7), counter(9)),
        ];
        for (direction, ops, sectors) in pairs {
            let attrs = [("device", name), ("direction", direction)];
            if let Some(sectors) = sectors {
                push_sample(out, "system.disk.io", &attrs, sectors as f64 * SECTOR_BYTES);
            }
            if let Some(ops) = ops {
                push_sample(out, "system.disk.operations", &attrs, ops as f64);
            }
        }
        if let Some(ms) = counter(12) {
            push_sample(
                out,
                "system.disk.io_time",
                &[("device", name)],
                ms as f64 / 1000.0,
            );
        }
    }
}

/// `system.network.dropped` {device, direction} from `procfs/net/dev` (sysinfo
/// has bytes and errors, not drops). Loopback is left out as everywhere else.
pub(super) fn network_dropped(procfs: &Path, out: &mut Vec<Sample>) {
    let Ok(text) = std::fs::read_to_string(procfs.join("net/dev")) else {
        return;
    };
    // Two header lines, then "  eth0: rx_bytes rx_packets rx_errs rx_drop … tx_bytes tx_packets tx_errs tx_drop …".
    let mut rows: Vec<(&str, Vec<u64>)> = text
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let values = rest
                .split_whitespace()
                .map_while(|f| f.parse().ok())
                .collect::<Vec<u64>>();
            (values.len() >= 12).then(|| (name.trim(), values))
        })
        .filter(|(name, _)| *name != "lo")
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    for (name, values) in rows {
        for (direction, dropped) in [("receive", values[3]), ("transmit", values[11])] {
            push_sample(
                out,
                "system.network.dropped",
                &[("device", name), ("direction", direction)],
                dropped as f64,
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::collect::tests::{value, write};

    /// A server with two SATA disks (one partitioned), an NVMe disk's
    /// partition line, a loop device and a device-mapper volume.
    pub(crate) const SERVER_DISKSTATS: &str = "\
   8       0 sda 120000 300 9600000 50000 80000 900 6400000 70000 0 90000 120000 0 0 0 0 0 0
   8       1 sda1 119000 300 9500000 49000 79000 900 6300000 69000 0 89000 118000 0 0 0 0 0 0
   8      16 sdb 4000 10 320000 2000 2000 5 160000 1000 0 2500 3000 0 0 0 0 0 0
   7       0 loop0 50 0 400 1 0 0 0 0 0 1 1 0 0 0 0 0 0
 253       0 dm-0 118000 0 9400000 51000 79000 0 6300000 72000 0 88000 123000 0 0 0 0 0 0
";

    #[test]
    fn diskstats_reports_whole_disks_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "proc/diskstats", SERVER_DISKSTATS);
        for disk in ["sda", "sdb"] {
            write(dir.path(), &format!("sys/block/{disk}/size"), "100\n");
        }
        let mut out = Vec::new();
        disk_io(&dir.path().join("proc"), &dir.path().join("sys"), &mut out);
        let io = |device, direction| {
            value(
                &out,
                "system.disk.io",
                &[("device", device), ("direction", direction)],
            )
        };
        assert_eq!(io("sda", "read"), Some(9_600_000.0 * 512.0));
        assert_eq!(io("sda", "write"), Some(6_400_000.0 * 512.0));
        assert_eq!(io("sdb", "read"), Some(320_000.0 * 512.0));
        let ops = value(
            &out,
            "system.disk.operations",
            &[("device", "sdb"), ("direction", "write")],
        );
        assert_eq!(ops, Some(2000.0));
        assert_eq!(
            value(&out, "system.disk.io_time", &[("device", "sda")]),
            Some(90.0)
        );
        let devices: std::collections::BTreeSet<&str> = out
            .iter()
            .flat_map(|s| s.attributes.iter())
            .filter(|a| a.key == "device")
            .map(|a| a.value.as_str())
            .collect();
        assert_eq!(devices.into_iter().collect::<Vec<_>>(), ["sda", "sdb"]);
    }

    #[test]
    fn partitions_are_told_by_name_without_sysfs_block() {
        let sysfs = Path::new("/nonexistent-sysfs");
        for (name, whole) in [
            ("sda", true),
            ("sda1", false),
            ("vdb", true),
            ("nvme0n1", true),
            ("nvme0n1p2", false),
            ("mmcblk0", true),
            ("mmcblk0p1", false),
            ("loop3", false),
            ("dm-0", false),
        ] {
            assert_eq!(is_whole_disk(sysfs, name), whole, "{name}");
        }
    }

    #[test]
    fn missing_or_damaged_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        disk_io(dir.path(), dir.path(), &mut out);
        network_dropped(dir.path(), &mut out);
        write(dir.path(), "diskstats", "garbage\n 8 0 sda x y z\n");
        write(dir.path(), "net/dev", "h1\nh2\n eth0: 1 2 3\n");
        disk_io(dir.path(), dir.path(), &mut out);
        network_dropped(dir.path(), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn net_dev_drops_per_interface() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "net/dev",
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  \
             eth0: 5000 50 1 7 0 0 0 0 6000 60 2 3 0 0 0 0\n",
        );
        let mut out = Vec::new();
        network_dropped(dir.path(), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let dropped = |direction| {
            value(
                &out,
                "system.network.dropped",
                &[("device", "eth0"), ("direction", direction)],
            )
        };
        assert_eq!(dropped("receive"), Some(7.0));
        assert_eq!(dropped("transmit"), Some(3.0));
    }
}
