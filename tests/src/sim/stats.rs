//! Counters and latency percentiles shared by every simulated device.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub samples_acked: AtomicU64,
    /// Ack latencies (µs) since the last progress line.
    window: Mutex<Vec<u32>>,
    /// Every ack latency (µs) of the measured period.
    all: Mutex<Vec<u32>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn ack(&self, latency: Duration, samples: u64) {
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        lock(&self.window).push(us);
        self.acked.fetch_add(1, Ordering::Relaxed);
        self.samples_acked.fetch_add(samples, Ordering::Relaxed);
    }

    pub fn error(&self, code: &str) {
        *lock(&self.errors).entry(code.to_owned()).or_default() += 1;
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Takes the window's latencies (sorted), keeping them for the final summary
    /// when `keep`.
    pub fn take_window(&self, keep: bool) -> Vec<u32> {
        let mut window = std::mem::take(&mut *lock(&self.window));
        window.sort_unstable();
        if keep {
            lock(&self.all).extend_from_slice(&window);
        }
        window
    }

    /// Forgets everything measured so far (end of a warm-up).
    pub fn reset(&self) {
        self.take_window(false);
        lock(&self.all).clear();
        lock(&self.errors).clear();
        self.sent.store(0, Ordering::Relaxed);
        self.acked.store(0, Ordering::Relaxed);
        self.samples_acked.store(0, Ordering::Relaxed);
    }

    pub fn all_sorted(&self) -> Vec<u32> {
        self.take_window(true);
        let mut all = lock(&self.all).clone();
        all.sort_unstable();
        all
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Nearest-rank percentile of sorted values, in milliseconds.
pub fn percentile_ms(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    Some(f64::from(sorted[index]) / 1000.0)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub count: usize,
}

impl Latency {
    pub fn of(sorted: &[u32]) -> Self {
        Self {
            p50: percentile_ms(sorted, 50.0),
            p99: percentile_ms(sorted, 99.0),
            max: percentile_ms(sorted, 100.0),
            count: sorted.len(),
        }
    }

    pub fn text(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        format!(
            "ack ms p50 {} p99 {} max {}",
            f(self.p50),
            f(self.p99),
            f(self.max)
        )
    }
}

/// Resident and peak memory of a process, from /proc/PID/status (bytes).
pub fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Total size of the files under `dir`, in bytes.
pub fn dir_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&v, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&v, 100.0), Some(100.0));
        assert_eq!(percentile_ms(&[7000], 99.0), Some(7.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
    }
}
