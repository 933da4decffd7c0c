//! What a simulated device reports: realistic host metrics as pure functions
//! of (device, time), so a device needs no state beyond its sequence number.
//!
//! - CPU follows the working day for laptops (busy 08–18 UTC, idle at night)
//!   and a flatter daily wave for servers, with per-device noise.
//! - Disks fill slowly (a per-device rate of 0.05–0.5 % a day) from a
//!   per-device starting level, as `system.filesystem.utilization{mountpoint}`.
//! - Memory follows CPU; network and disk counters grow monotonically.

use vakt_proto::v1;

pub const DEPARTMENTS: &[&str] = &[
    "finance",
    "hr",
    "it",
    "schools",
    "health",
    "planning",
    "transport",
    "library",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Laptop,
    Server,
}

impl Class {
    /// Three laptops for every server, as in a municipal fleet.
    pub fn of(index: usize) -> Self {
        if index % 4 == 3 {
            Self::Server
        } else {
            Self::Laptop
        }
    }

    pub fn proto(self) -> v1::DeviceClass {
        match self {
            Self::Laptop => v1::DeviceClass::Laptop,
            Self::Server => v1::DeviceClass::Server,
        }
    }
}

pub fn department(index: usize) -> &'static str {
    DEPARTMENTS[(index / 4) % DEPARTMENTS.len()]
}

/// splitmix64: a tiny deterministic hash for per-device constants and noise.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in [0, 1) from a seed.
pub fn unit(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// One series a device reports: metric name and attributes.
struct Series {
    metric: &'static str,
    attributes: Vec<(&'static str, String)>,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Cpu,
    CoreCpu(u32),
    Load(f64),
    MemUtil,
    MemUsed,
    MemFree,
    MemCached,
    Paging,
    FsUtil(u32),
    FsUsed(u32),
    NetBytes(bool),
    NetPackets(bool),
    NetErrors(bool),
    DiskBytes(bool),
    DiskOps(bool),
    Processes,
    Uptime,
    Connections,
}

/// A simulated device: its identity facts and the series it reports.
pub struct Device {
    pub index: usize,
    pub class: Class,
    seed: u64,
    memory_bytes: f64,
    fs_bytes: f64,
    series: Vec<Series>,
    /// The template batch's samples (values are overwritten per report).
    template: Vec<v1::Sample>,
}

const MOUNTS: &[&str] = &["/", "/home", "/var"];

impl Device {
    pub fn new(index: usize, samples_per_report: usize) -> Self {
        let class = Class::of(index);
        let seed = mix(index as u64 ^ 0x5641_4b54);
        let memory_gib = match class {
            Class::Laptop => [8.0, 16.0, 32.0][(seed % 3) as usize],
            Class::Server => [64.0, 128.0, 256.0][(seed % 3) as usize],
        };
        let fs_gib = match class {
            Class::Laptop => 512.0,
            Class::Server => 2048.0,
        };
        let dir = |rx: bool| if rx { "receive" } else { "transmit" };
        let rw = |read: bool| if read { "read" } else { "write" };
        let mut series = vec![
            s("system.cpu.utilization", vec![], Kind::Cpu),
            s("system.cpu.load_average.1m", vec![], Kind::Load(1.0)),
            s("system.cpu.load_average.5m", vec![], Kind::Load(0.9)),
            s("system.cpu.load_average.15m", vec![], Kind::Load(0.8)),
            s("system.memory.utilization", vec![], Kind::MemUtil),
            s(
                "system.memory.usage",
                vec![("state", "used".into())],
                Kind::MemUsed,
            ),
            s(
                "system.memory.usage",
                vec![("state", "free".into())],
                Kind::MemFree,
            ),
            s(
                "system.memory.usage",
                vec![("state", "cached".into())],
                Kind::MemCached,
            ),
            s("system.paging.utilization", vec![], Kind::Paging),
        ];
        for (i, mount) in MOUNTS.iter().enumerate() {
            series.push(s(
                "system.filesystem.utilization",
                vec![("mountpoint", (*mount).into())],
                Kind::FsUtil(i as u32),
            ));
        }
        for (i, mount) in MOUNTS.iter().enumerate() {
            series.push(s(
                "system.filesystem.usage",
                vec![("mountpoint", (*mount).into()), ("state", "used".into())],
                Kind::FsUsed(i as u32),
            ));
        }
        for rx in [true, false] {
            let attrs = || vec![("device", "eth0".into()), ("direction", dir(rx).into())];
            series.push(s("system.network.io", attrs(), Kind::NetBytes(rx)));
            series.push(s("system.network.packets", attrs(), Kind::NetPackets(rx)));
            series.push(s("system.network.errors", attrs(), Kind::NetErrors(rx)));
        }
        for read in [true, false] {
            let attrs = || vec![("device", "nvme0n1".into()), ("direction", rw(read).into())];
            series.push(s("system.disk.io", attrs(), Kind::DiskBytes(read)));
            series.push(s("system.disk.operations", attrs(), Kind::DiskOps(read)));
        }
        series.push(s("system.processes.count", vec![], Kind::Processes));
        series.push(s("system.uptime", vec![], Kind::Uptime));
        series.push(s(
            "system.network.connections",
            vec![("protocol", "tcp".into())],
            Kind::Connections,
        ));
        let mut core = 0;
        while series.len() < samples_per_report {
            series.push(s(
                "system.cpu.utilization",
                vec![("cpu", format!("cpu{core}"))],
                Kind::CoreCpu(core),
            ));
            core += 1;
        }
        series.truncate(samples_per_report);
        let template = series
            .iter()
            .map(|s| v1::Sample {
                metric: s.metric.to_owned(),
                attributes: s
                    .attributes
                    .iter()
                    .map(|(k, v)| v1::Attribute {
                        key: (*k).to_owned(),
                        value: v.clone(),
                    })
                    .collect(),
                value: 0.0,
                timestamp_unix_ms: 0,
            })
            .collect();
        Self {
            index,
            class,
            seed,
            memory_bytes: memory_gib * 1024.0 * 1024.0 * 1024.0,
            fs_bytes: fs_gib * 1024.0 * 1024.0 * 1024.0,
            series,
            template,
        }
    }

    pub fn hostname(&self) -> String {
        let prefix = match self.class {
            Class::Laptop => "lt",
            Class::Server => "srv",
        };
        format!("sim-{prefix}-{:06}", self.index)
    }

    /// CPU utilization (0..1) at `t_ms`.
    fn cpu(&self, t_ms: i64) -> f64 {
        let hour = (t_ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
        let noise = unit(self.seed ^ (t_ms as u64 / 1000)) * 0.1;
        let base = match self.class {
            Class::Laptop if (8.0..18.0).contains(&hour) => {
                0.1 + 0.45 * (std::f64::consts::PI * (hour - 8.0) / 10.0).sin()
            }
            Class::Laptop => 0.02,
            Class::Server => 0.35 + 0.2 * (2.0 * std::f64::consts::PI * (hour - 8.0) / 24.0).sin(),
        };
        (base * (0.6 + 0.8 * unit(self.seed ^ 1)) + noise).clamp(0.0, 1.0)
    }

    /// Filesystem fill (0..1) of mount `m` at `t_ms`: a starting level plus a
    /// slow per-device growth, so some devices run out of disk within months.
    fn fs(&self, m: u32, t_ms: i64) -> f64 {
        let start = 0.15 + 0.6 * unit(self.seed ^ (10 + m as u64));
        let per_day = 0.0005 + 0.005 * unit(self.seed ^ (20 + m as u64));
        let days = (t_ms - 1_767_225_600_000) as f64 / 86_400_000.0; // since 2026-01-01
        (start + per_day * days.max(0.0)).clamp(0.0, 0.99)
    }

    /// A counter growing at a per-device rate since the device "booted".
    fn counter(&self, salt: u64, per_second: f64, t_ms: i64) -> f64 {
        let rate = per_second * (0.2 + 1.6 * unit(self.seed ^ salt));
        let since_boot = self.uptime_s(t_ms);
        (rate * since_boot).floor()
    }

    fn uptime_s(&self, t_ms: i64) -> f64 {
        // Laptops reboot about weekly, servers monthly; boot times spread per device.
        let period_s = match self.class {
            Class::Laptop => 7.0 * 86_400.0,
            Class::Server => 30.0 * 86_400.0,
        };
        let offset = unit(self.seed ^ 3) * period_s;
        ((t_ms as f64 / 1000.0) + offset).rem_euclid(period_s)
    }

    fn value(&self, kind: Kind, t_ms: i64) -> f64 {
        let cpu = self.cpu(t_ms);
        let mem_util = (0.3 + 0.5 * cpu + 0.1 * unit(self.seed ^ 4)).clamp(0.0, 0.98);
        let cores = match self.class {
            Class::Laptop => 8.0,
            Class::Server => 32.0,
        };
        match kind {
            Kind::Cpu => cpu,
            Kind::CoreCpu(c) => (cpu
                * (0.5 + unit(self.seed ^ (100 + c as u64) ^ (t_ms as u64 / 1000))))
            .clamp(0.0, 1.0),
            Kind::Load(f) => cpu * cores * f,
            Kind::MemUtil => mem_util,
            Kind::MemUsed => (mem_util * self.memory_bytes).floor(),
            Kind::MemFree => ((1.0 - mem_util) * 0.4 * self.memory_bytes).floor(),
            Kind::MemCached => ((1.0 - mem_util) * 0.6 * self.memory_bytes).floor(),
            Kind::Paging => (mem_util - 0.7).max(0.0) * 0.3,
            Kind::FsUtil(m) => self.fs(m, t_ms),
            Kind::FsUsed(m) => (self.fs(m, t_ms) * self.fs_bytes).floor(),
            Kind::NetBytes(rx) => self.counter(30 + rx as u64, if rx { 2e5 } else { 5e4 }, t_ms),
            Kind::NetPackets(rx) => {
                self.counter(30 + rx as u64, if rx { 150.0 } else { 60.0 }, t_ms)
            }
            Kind::NetErrors(rx) => self.counter(40 + rx as u64, 0.001, t_ms),
            Kind::DiskBytes(read) => {
                self.counter(50 + read as u64, if read { 1e5 } else { 3e5 }, t_ms)
            }
            Kind::DiskOps(read) => {
                self.counter(50 + read as u64, if read { 10.0 } else { 30.0 }, t_ms)
            }
            Kind::Processes => (150.0 + 200.0 * cpu + 20.0 * unit(self.seed ^ 5)).floor(),
            Kind::Uptime => self.uptime_s(t_ms).floor(),
            Kind::Connections => (20.0 + 300.0 * cpu).floor(),
        }
    }

    /// The batch this device reports at `t_ms` with `sequence`.
    pub fn batch(&self, sequence: u64, t_ms: i64) -> v1::ReportBatch {
        let mut samples = self.template.clone();
        for (sample, series) in samples.iter_mut().zip(&self.series) {
            sample.value = self.value(series.kind, t_ms);
        }
        v1::ReportBatch {
            sequence,
            collected_at_unix_ms: t_ms,
            samples,
            ..Default::default()
        }
    }
}

fn s(metric: &'static str, attributes: Vec<(&'static str, String)>, kind: Kind) -> Series {
    Series {
        metric,
        attributes,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_have_the_asked_size_and_pass_validation() {
        for n in [1, 30, 45] {
            let device = Device::new(7, n);
            let now = vakt_proto::now_unix_ms();
            let batch = device.batch(1, now);
            assert_eq!(batch.samples.len(), n);
            vakt_proto::validate::report_batch(&batch, now).expect("valid batch");
            assert!(
                batch
                    .samples
                    .iter()
                    .all(|s| s.value.is_finite() && s.value >= 0.0)
            );
        }
    }
}
