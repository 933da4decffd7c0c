//! Health samples, named by the OpenTelemetry host-metrics conventions.

use super::{Collector, attrs, is_pseudo_filesystem};
use std::collections::HashSet;
use std::path::Path;
use sysinfo::{DiskRefreshKind, MemoryRefreshKind};
use vakt_proto::v1::Sample;

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuTimes {
    pub valid: bool,
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map_while(|f| f.parse().ok())
            .collect();
        if v.len() < 4 {
            return None;
        }
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        // guest and guest_nice are already counted in user and nice.
        Some(Self {
            valid: true,
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
        })
    }

    fn states(&self) -> [(&'static str, u64); 8] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("interrupt", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
        ]
    }
}

fn read_cpu_times(procfs: &Path) -> Option<CpuTimes> {
    CpuTimes::parse(&std::fs::read_to_string(procfs.join("stat")).ok()?)
}

impl Collector {
    pub(super) fn prime_cpu(&mut self) {
        match read_cpu_times(&self.paths.procfs) {
            Some(times) => self.cpu = times,
            // No /proc/stat (another OS, or a fixture without it): sysinfo then.
            None => self.system.refresh_cpu_usage(),
        }
    }
}

pub(super) fn collect(c: &mut Collector) -> Vec<Sample> {
    let mut out = Vec::with_capacity(64);
    let mut push = |metric: &str, attributes: &[(&str, &str)], value: f64| {
        if value.is_finite() {
            out.push(Sample {
                metric: metric.to_owned(),
                attributes: attrs(attributes),
                value,
                timestamp_unix_ms: 0,
            });
        }
    };
    let procfs = c.paths.procfs.clone();

    // CPU
    match read_cpu_times(&procfs) {
        Some(now) => {
            let before = std::mem::replace(&mut c.cpu, now);
            if before.valid {
                let deltas: Vec<(&str, u64)> = now
                    .states()
                    .iter()
                    .zip(before.states())
                    .map(|((name, n), (_, b))| (*name, n.saturating_sub(b)))
                    .collect();
                let total: u64 = deltas.iter().map(|(_, d)| d).sum();
                if total > 0 {
                    let idle = now.idle.saturating_sub(before.idle)
                        + now.iowait.saturating_sub(before.iowait);
                    push(
                        "system.cpu.utilization",
                        &[],
                        1.0 - idle as f64 / total as f64,
                    );
                    for (state, d) in deltas {
                        push(
                            "system.cpu.utilization",
                            &[("state", state)],
                            d as f64 / total as f64,
                        );
                    }
                }
            }
        }
        None => {
            c.system.refresh_cpu_usage();
            push(
                "system.cpu.utilization",
                &[],
                f64::from(c.system.global_cpu_usage()) / 100.0,
            );
        }
    }

    // Load
    let load = std::fs::read_to_string(procfs.join("loadavg"))
        .ok()
        .and_then(|text| {
            let v: Vec<f64> = text
                .split_whitespace()
                .take(3)
                .filter_map(|f| f.parse().ok())
                .collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .or_else(|| {
            sysinfo::System::load_average()
                .ok()
                .map(|l| (l.one, l.five, l.fifteen))
        });
    if let Some((one, five, fifteen)) = load {
        push("system.cpu.load_average.1m", &[], one);
        push("system.cpu.load_average.5m", &[], five);
        push("system.cpu.load_average.15m", &[], fifteen);
    }

    // Memory and swap
    c.system
        .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
    let total = c.system.total_memory();
    if total > 0 {
        let used = c.system.used_memory();
        let free = c.system.free_memory();
        // Reclaimable page cache and buffers: available minus truly free, so the
        // three states add up to the total.
        let cached = c.system.available_memory().saturating_sub(free);
        push("system.memory.usage", &[("state", "used")], used as f64);
        push("system.memory.usage", &[("state", "free")], free as f64);
        push("system.memory.usage", &[("state", "cached")], cached as f64);
        push(
            "system.memory.utilization",
            &[("state", "used")],
            used as f64 / total as f64,
        );
    }
    push(
        "system.paging.usage",
        &[("state", "used")],
        c.system.used_swap() as f64,
    );
    push(
        "system.paging.usage",
        &[("state", "free")],
        c.system.free_swap() as f64,
    );

    // File systems
    c.disks
        .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
    let mut seen = HashSet::new();
    for disk in c.disks.iter() {
        let mount = disk.mount_point().to_string_lossy();
        let fs_type = disk.file_system().to_string_lossy();
        let total = disk.total_space();
        if total == 0 || is_pseudo_filesystem(&fs_type, &mount) || !seen.insert(mount.to_string()) {
            continue;
        }
        let device = disk.name().to_string_lossy();
        let free = disk.available_space().min(total);
        let used = total - free;
        let base = [
            ("mountpoint", &*mount),
            ("device", &*device),
            ("type", &*fs_type),
        ];
        let with_state = |state| {
            let mut a = base.to_vec();
            a.push(("state", state));
            a
        };
        push("system.filesystem.usage", &with_state("used"), used as f64);
        push("system.filesystem.usage", &with_state("free"), free as f64);
        push(
            "system.filesystem.utilization",
            &base,
            used as f64 / total as f64,
        );
    }

    // Network
    c.networks.refresh(true);
    let mut interfaces: Vec<_> = c
        .networks
        .iter()
        .filter(|(name, _)| name.as_os_str() != "lo")
        .collect();
    interfaces.sort_by(|a, b| a.0.cmp(b.0));
    for (name, data) in interfaces {
        let name = name.to_string_lossy();
        for (direction, bytes, errors) in [
            (
                "receive",
                data.total_received(),
                data.total_errors_on_received(),
            ),
            (
                "transmit",
                data.total_transmitted(),
                data.total_errors_on_transmitted(),
            ),
        ] {
            let a = [("device", &*name), ("direction", direction)];
            push("system.network.io", &a, bytes as f64);
            push("system.network.errors", &a, errors as f64);
        }
    }

    // Uptime and processes
    let uptime = std::fs::read_to_string(procfs.join("uptime"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .or_else(|| sysinfo::System::uptime().ok().map(|u| u as f64));
    if let Some(uptime) = uptime {
        push("system.uptime", &[], uptime);
    }
    // Counting /proc/<pid> entries is far cheaper than a sysinfo process refresh,
    // which reads every process's stat file.
    if let Ok(entries) = std::fs::read_dir(&procfs) {
        let count = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .count();
        if count > 0 {
            push("system.processes.count", &[], count as f64);
        }
    }

    // Per-disk I/O, drops, sensors and batteries: straight from procfs/sysfs.
    let sysfs = &c.paths.sysfs;
    super::io::disk_io(&procfs, sysfs, &mut out);
    super::io::network_dropped(&procfs, &mut out);
    super::power::temperatures(sysfs, &mut out);
    super::power::batteries(sysfs, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parses() {
        let t = CpuTimes::parse("cpu  51628 0 7098 1061575 1172 0 149 184 0 0\ncpu0 1 2 3 4\n")
            .unwrap();
        assert_eq!(
            (t.user, t.system, t.idle, t.steal),
            (51628, 7098, 1061575, 184)
        );
        assert!(CpuTimes::parse("intr 1 2 3").is_none());
    }
}
