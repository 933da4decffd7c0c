//! The simulator's progress lines (every `--progress`), and the same windows
//! kept as a series for the JSON summary: over a long run, whether the
//! collector's RSS levels off and what the machine's load was matter as much
//! as the totals.

use crate::stats::{self, Latency, Stats};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Progress {
    stats: Arc<Stats>,
    every: Duration,
    pid: Option<u32>,
    began: Instant,
    pub last: Instant,
    pub last_acked: u64,
    /// One entry per measured window (warm-up windows are not kept).
    pub windows: Vec<serde_json::Value>,
}

impl Progress {
    pub fn new(every: Duration, pid: Option<u32>, stats: Arc<Stats>) -> Self {
        let now = Instant::now();
        Self {
            stats,
            every,
            pid,
            began: now,
            last: now,
            last_acked: 0,
            windows: Vec::new(),
        }
    }

    /// Prints a progress line every `every` until `until`.
    pub async fn run_until(&mut self, until: Instant, keep: bool) {
        loop {
            let next = (self.last + self.every).min(until);
            tokio::time::sleep_until(next.into()).await;
            let now = Instant::now();
            let acked = self.stats.acked.load(Ordering::Relaxed);
            let window = self.stats.take_window(keep);
            let rate = (acked.saturating_sub(self.last_acked)) as f64
                / now.duration_since(self.last).as_secs_f64().max(1e-3);
            let errors = self.stats.errors();
            let rss = self.pid.and_then(stats::rss).map(|(r, _)| r);
            let load = load_average();
            let latency = Latency::of(&window);
            let at = now.duration_since(self.began).as_secs_f64();
            eprintln!(
                "[{at:>5.0}s]{} {rate:>8.0} reports/s  {}  errors {}{}{}",
                if keep { "" } else { " warm-up" },
                latency.text(),
                if errors.is_empty() {
                    "none".to_owned()
                } else {
                    format!("{errors:?}")
                },
                rss.map_or(String::new(), |r| format!(
                    "  collector RSS {} MiB",
                    r >> 20
                )),
                load.map_or(String::new(), |l| format!("  load {l:.2}")),
            );
            if keep {
                self.windows.push(json!({
                    "at_s": at,
                    "reports_per_s": rate,
                    "ack_ms": {"p50": latency.p50, "p99": latency.p99, "max": latency.max},
                    "errors_total": errors.values().sum::<u64>(),
                    "collector_rss_bytes": rss,
                    "load_1m": load,
                }));
            }
            self.last = now;
            self.last_acked = acked;
            if now >= until {
                return;
            }
        }
    }
}

/// The machine's 1-minute load average (Linux), to tell a slow collector
/// from a starved one.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
