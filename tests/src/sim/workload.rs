//! What a simulated device reports: realistic host metrics as pure functions
//! of (device, time), so a device needs no state beyond its sequence number.
//!
//! - CPU follows the working day for laptops (busy 08–18 UTC, idle at night)
//!   and a flatter daily wave for servers, with per-device noise.
//! - Disks fill slowly (a per-device rate of 0.05–0.5 % a day) from a
//!   per-device starting level, as `system.filesystem.utilization{mountpoint}`.
//! - Memory follows CPU; network and disk counters grow monotonically.
//!
//! Values have the form and precision `vakt-agent` (`agent/src/collect/`)
//! gives them, because that is what the store has to compress: CPU
//! utilization is a ratio of jiffy counts (`1 - idle/total`, `state/total`,
//! with ~100 ticks a second per core), load averages have the two decimals
//! of `/proc/loadavg`, `/proc/uptime` two decimals, memory and swap are whole
//! kB (as `/proc/meminfo` counts them) in bytes, filesystems whole 4 KiB
//! blocks, disk I/O whole 512-byte sectors, utilizations `used / total`.
//! The series are a subset of what the agent sends (the agent has no
//! per-core CPU, no packet or connection counts).

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
    /// `system.cpu.utilization{state}`: index into [`STATES`].
    CpuState(usize),
    Load(f64),
    MemUtil,
    MemUsed,
    MemFree,
    MemCached,
    SwapUsed,
    SwapFree,
    FsUtil(u32),
    FsUsed(u32),
    NetBytes(bool),
    NetErrors(bool),
    DiskBytes(u32, bool),
    DiskOps(u32, bool),
    Processes,
    Uptime,
}

/// The agent's CPU states, most informative first (the nonzero ones).
const STATES: [&str; 8] = [
    "user",
    "system",
    "idle",
    "iowait",
    "softirq",
    "nice",
    "interrupt",
    "steal",
];

/// Jiffies per second per core (`USER_HZ`) and the interval the tick
/// counts cover (the agent's default report interval).
const TICKS_PER_S: i64 = 100;
const TICK_INTERVAL_S: i64 = 30;

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
            s(
                "system.memory.utilization",
                vec![("state", "used".into())],
                Kind::MemUtil,
            ),
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
            s(
                "system.paging.usage",
                vec![("state", "used".into())],
                Kind::SwapUsed,
            ),
            s(
                "system.paging.usage",
                vec![("state", "free".into())],
                Kind::SwapFree,
            ),
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
            series.push(s("system.network.errors", attrs(), Kind::NetErrors(rx)));
        }
        let disk = |n: u32| format!("nvme{n}n1");
        for read in [true, false] {
            let attrs = || vec![("device", disk(0)), ("direction", rw(read).into())];
            series.push(s("system.disk.io", attrs(), Kind::DiskBytes(0, read)));
            series.push(s("system.disk.operations", attrs(), Kind::DiskOps(0, read)));
        }
        series.push(s("system.processes.count", vec![], Kind::Processes));
        series.push(s("system.uptime", vec![], Kind::Uptime));
        for (i, state) in STATES.iter().enumerate() {
            series.push(s(
                "system.cpu.utilization",
                vec![("state", (*state).into())],
                Kind::CpuState(i),
            ));
        }
        // Beyond the agent's usual set: more disks.
        let mut n = 1;
        while series.len() < samples_per_report {
            for read in [true, false] {
                let attrs = || vec![("device", disk(n)), ("direction", rw(read).into())];
                series.push(s("system.disk.io", attrs(), Kind::DiskBytes(n, read)));
                series.push(s("system.disk.operations", attrs(), Kind::DiskOps(n, read)));
            }
            n += 1;
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
            // What the OS reports: a little less than the nominal size
            // (firmware, kernel, filesystem metadata), in whole kB / blocks.
            memory_bytes: (memory_gib * 1024.0 * 1024.0 * (0.96 + 0.03 * unit(seed ^ 8))).floor()
                * 1024.0,
            fs_bytes: (fs_gib * 262_144.0 * (0.93 + 0.05 * unit(seed ^ 9))).floor() * 4096.0,
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
        let noise = unit(self.seed ^ (t_ms as u64 / 1000)) * 0.1;
        (self.cpu_trend(t_ms) + noise).clamp(0.0, 1.0)
    }

    /// CPU utilization without the per-second noise: what memory use and the
    /// process count follow (they do not jump with every CPU spike).
    fn cpu_trend(&self, t_ms: i64) -> f64 {
        let hour = (t_ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
        let base = match self.class {
            Class::Laptop if (8.0..18.0).contains(&hour) => {
                0.1 + 0.45 * (std::f64::consts::PI * (hour - 8.0) / 10.0).sin()
            }
            Class::Laptop => 0.02,
            Class::Server => 0.35 + 0.2 * (2.0 * std::f64::consts::PI * (hour - 8.0) / 24.0).sin(),
        };
        base * (0.6 + 0.8 * unit(self.seed ^ 1))
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

    fn cores(&self) -> i64 {
        match self.class {
            Class::Laptop => 8,
            Class::Server => 32,
        }
    }

    /// Jiffies per state ([`STATES`] order) over the interval ending at
    /// `t_ms`, and their total (which wanders by a tick per core, as real
    /// timer-driven samples do).
    fn ticks(&self, t_ms: i64) -> ([i64; 8], i64) {
        let cores = self.cores();
        let second = t_ms as u64 / 1000;
        let jitter = (mix(self.seed ^ 6 ^ second) % (2 * cores as u64 + 1)) as i64 - cores;
        let total = TICKS_PER_S * TICK_INTERVAL_S * cores + jitter;
        let busy = (self.cpu(t_ms) * total as f64).round() as i64;
        let system = busy / 4;
        let softirq = busy / 50;
        let user = busy - system - softirq;
        let iowait = ((total - busy) as f64 * 0.01 * unit(self.seed ^ 7 ^ second)) as i64;
        let idle = total - busy - iowait;
        ([user, system, idle, iowait, softirq, 0, 0, 0], total)
    }

    /// Whole kB in bytes, as `/proc/meminfo` and sysinfo give memory.
    fn kb(bytes: f64) -> f64 {
        (bytes / 1024.0).floor() * 1024.0
    }

    fn fs_blocks(&self) -> f64 {
        (self.fs_bytes / 4096.0).floor()
    }

    fn value(&self, kind: Kind, t_ms: i64) -> f64 {
        let trend = self.cpu_trend(t_ms);
        // Memory moves by a few MB between reports, not with every CPU spike.
        let wobble = 0.0005 * unit(self.seed ^ 11 ^ (t_ms as u64 / 1000));
        let mem_util = (0.3 + 0.5 * trend + 0.1 * unit(self.seed ^ 4) + wobble).clamp(0.0, 0.98);
        let mem_used = Self::kb(mem_util * self.memory_bytes);
        let swap = 8.0 * 1024.0 * 1024.0 * 1024.0;
        let swap_used = Self::kb((mem_util - 0.7).max(0.0) * 0.3 * swap);
        let fs_used = |m| (self.fs(m, t_ms) * self.fs_blocks()).floor() * 4096.0;
        let cores = self.cores() as f64;
        match kind {
            Kind::Cpu => {
                let (ticks, total) = self.ticks(t_ms);
                1.0 - (ticks[2] + ticks[3]) as f64 / total as f64
            }
            Kind::CpuState(i) => {
                let (ticks, total) = self.ticks(t_ms);
                ticks[i] as f64 / total as f64
            }
            // `/proc/loadavg` prints two decimals; the agent parses them.
            // A moving average: follows the trend, with a little of the noise.
            Kind::Load(f) => {
                let noise = 0.05 * unit(self.seed ^ 13 ^ (t_ms as u64 / 1000));
                ((trend + noise) * cores * f * 100.0).round() / 100.0
            }
            Kind::MemUtil => mem_used / self.memory_bytes,
            Kind::MemUsed => mem_used,
            Kind::MemFree => Self::kb((1.0 - mem_util) * 0.4 * self.memory_bytes),
            Kind::MemCached => Self::kb((1.0 - mem_util) * 0.6 * self.memory_bytes),
            Kind::SwapUsed => swap_used,
            Kind::SwapFree => swap - swap_used,
            Kind::FsUtil(m) => fs_used(m) / (self.fs_blocks() * 4096.0),
            Kind::FsUsed(m) => fs_used(m),
            Kind::NetBytes(rx) => self.counter(30 + rx as u64, if rx { 2e5 } else { 5e4 }, t_ms),
            Kind::NetErrors(rx) => self.counter(40 + rx as u64, 0.001, t_ms),
            Kind::DiskBytes(d, read) => {
                let rate = if read { 1e5 } else { 3e5 } / 512.0;
                self.counter(50 + 2 * d as u64 + read as u64, rate, t_ms) * 512.0
            }
            Kind::DiskOps(d, read) => self.counter(
                50 + 2 * d as u64 + read as u64,
                if read { 10.0 } else { 30.0 },
                t_ms,
            ),
            Kind::Processes => {
                let jitter = 4.0 * unit(self.seed ^ 12 ^ (t_ms as u64 / 1000));
                (150.0 + 200.0 * trend + 20.0 * unit(self.seed ^ 5) + jitter).floor()
            }
            // `/proc/uptime` has two decimals.
            Kind::Uptime => (self.uptime_s(t_ms) * 100.0).floor() / 100.0,
        }
    }

    /// The values of every series at `t_ms`, in the batch's sample order
    /// (what [`Device::batch`] sends, without building the batch). Used by
    /// the storage benchmark's bulk load, not by every binary including this.
    #[allow(dead_code)]
    pub fn values(&self, t_ms: i64) -> impl Iterator<Item = f64> + '_ {
        self.series.iter().map(move |s| self.value(s.kind, t_ms))
    }

    /// The metric and attributes of each series, in the batch's sample order.
    #[allow(dead_code)]
    pub fn series_names(&self) -> impl Iterator<Item = (&str, &[v1::Attribute])> {
        self.template
            .iter()
            .map(|s| (s.metric.as_str(), s.attributes.as_slice()))
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
    fn values_have_the_form_the_agent_gives_them() {
        // 34 samples: every CPU state is in the batch.
        let device = Device::new(3, 34);
        let t = 1_767_225_600_000 + 9 * 3_600_000;
        let batch = device.batch(1, t);
        let value = |metric: &str, attr: Option<(&str, &str)>| {
            batch
                .samples
                .iter()
                .find(|s| {
                    s.metric == metric
                        && attr.is_none_or(|(k, v)| {
                            s.attributes.iter().any(|a| a.key == k && a.value == v)
                        })
                })
                .map(|s| s.value)
                .expect(metric)
        };
        let load = value("system.cpu.load_average.1m", None);
        assert_eq!(format!("{load:.2}").parse::<f64>().unwrap(), load);
        assert_eq!(
            value("system.memory.usage", Some(("state", "used"))) % 1024.0,
            0.0
        );
        assert_eq!(
            value("system.filesystem.usage", Some(("mountpoint", "/"))) % 4096.0,
            0.0
        );
        assert_eq!(
            value("system.disk.io", Some(("direction", "read"))) % 512.0,
            0.0
        );
        let states: f64 = STATES
            .iter()
            .map(|s| value("system.cpu.utilization", Some(("state", s))))
            .sum();
        assert!((states - 1.0).abs() < 1e-9, "{states}");
        let user = value("system.cpu.utilization", Some(("state", "user")));
        assert!(user > 0.0 && user < 1.0);
    }

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
