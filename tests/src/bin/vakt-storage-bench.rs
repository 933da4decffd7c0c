//! `vakt-storage-bench`: the storage benchmark of issue 6. Writes a simulated
//! fleet's reports straight through `Store::ingest` (no network, no TLS)
//! with fast-forwarded timestamps, folds log records into chunks as the
//! collector's background pass would, and then measures bytes per sample on
//! disk, sled's size against the logical size, and query latency.

#![forbid(unsafe_code)]

#[path = "../sim/workload.rs"]
#[allow(dead_code)]
mod workload;

use anyhow::{Context, Result};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vakt_collector::store::{StorageOptions, Store};
use workload::Device;

/// 2026-01-01T00:00:00Z: the simulated month starts here.
const START_MS: i64 = 1_767_225_600_000;

#[derive(Parser, Debug)]
#[command(
    name = "vakt-storage-bench",
    about = "Storage benchmark: bytes per sample and query latency of the collector's store"
)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Simulated days of reports.
    #[arg(long, default_value_t = 30.0)]
    days: f64,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long, default_value_t = 30)]
    samples_per_report: usize,
    /// Simulated time between compaction passes.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    fold_every: Duration,
    #[arg(long, default_value = "400days", value_parser = humantime::parse_duration)]
    raw_retention: Duration,
    #[arg(long, default_value = "400days", value_parser = humantime::parse_duration)]
    rollup_retention: Duration,
    #[arg(long, default_value_t = 64 << 20)]
    cache_bytes: u64,
    /// Database directory (default: a temporary one, deleted at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Repetitions of the one-device query (the fleet scan runs a tenth as often).
    #[arg(long, default_value_t = 200)]
    queries: usize,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn device_id(i: usize) -> String {
    format!("d-{:016x}", workload::mix(i as u64))
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("db"));
    let store = Store::open_with(
        &dir,
        StorageOptions {
            cache_bytes: args.cache_bytes,
            raw_retention_ms: ms(args.raw_retention),
            rollup_retention_ms: ms(args.rollup_retention),
        },
    )
    .context("open the store")?;
    let devices: Vec<Device> = (0..args.devices)
        .map(|i| Device::new(i, args.samples_per_report))
        .collect();
    let ids: Vec<String> = (0..args.devices).map(device_id).collect();
    let interval = ms(args.interval);
    let steps = (args.days * 86_400_000.0 / interval as f64) as i64;
    let fold_every = ms(args.fold_every).max(interval);
    let mut reports = 0u64;
    let mut samples = 0u64;
    let (mut ingest_time, mut fold_time) = (Duration::ZERO, Duration::ZERO);
    let mut next_fold = START_MS + fold_every;
    let mut next_day = START_MS + 86_400_000;
    let started = Instant::now();
    for step in 0..steps {
        let t = START_MS + step * interval;
        let begin = Instant::now();
        for (i, device) in devices.iter().enumerate() {
            // Devices spread evenly over the interval, like the fleet simulator.
            let ts = t + (i as i64 * interval) / args.devices as i64;
            let batch = device.batch(step as u64 + 1, ts);
            samples += batch.samples.len() as u64;
            store.ingest(&ids[i], &batch, ts)?;
            reports += 1;
        }
        ingest_time += begin.elapsed();
        if t + interval >= next_fold {
            let begin = Instant::now();
            store.compact()?;
            store.enforce_retention(t + interval)?;
            fold_time += begin.elapsed();
            next_fold += fold_every;
        }
        if t + interval >= next_day {
            eprintln!(
                "day {:>3}: {reports} reports, {samples} samples, {:.0} s, sled {:.1} MiB",
                (next_day - START_MS) / 86_400_000,
                started.elapsed().as_secs_f64(),
                store.size_on_disk() as f64 / 1048576.0
            );
            next_day += 86_400_000;
        }
    }
    let end_ms = START_MS + steps * interval;
    let begin = Instant::now();
    store.compact()?;
    fold_time += begin.elapsed();
    store.durable().await?;
    let stored = store.storage_stats()?;
    let sled_bytes = store.size_on_disk();
    let dir_bytes = dir_size(&dir);

    // Queries with the data loaded: one device's CPU over the last 24 h (raw,
    // 2,880 points at 30 s), and the same for every device's filesystem
    // utilization (3 series each) reduced to the max per department.
    let since = end_ms - 86_400_000;
    let mut one_raw = Vec::new();
    let mut one_rollup = Vec::new();
    for q in 0..args.queries {
        let id = &ids[q % ids.len()];
        let begin = Instant::now();
        let s = store.query_series(id, "system.cpu.utilization", &[], since, end_ms, 100_000)?;
        one_raw.push(begin.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(!s.is_empty(), "no data for {id}");
        let begin = Instant::now();
        store.query_series_step(
            id,
            "system.cpu.utilization",
            &[],
            since,
            end_ms,
            300_000,
            100_000,
        )?;
        one_rollup.push(begin.elapsed().as_secs_f64() * 1e3);
    }
    let mut fleet_raw = Vec::new();
    let mut fleet_rollup = Vec::new();
    let mut points = 0usize;
    for _ in 0..(args.queries / 10).max(3) {
        let begin = Instant::now();
        let mut by_department: BTreeMap<&str, f64> = BTreeMap::new();
        points = 0;
        for (i, id) in ids.iter().enumerate() {
            for s in store.raw_samples(id, "system.filesystem.utilization", &[], since, end_ms)? {
                points += s.2.len();
                let max = s.2.iter().map(|p| p.1).fold(f64::MIN, f64::max);
                let e = by_department
                    .entry(workload::department(i))
                    .or_insert(f64::MIN);
                *e = e.max(max);
            }
        }
        fleet_raw.push(begin.elapsed().as_secs_f64() * 1e3);
        let begin = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            for s in store.query_rollups(id, "system.filesystem.utilization", &[], since, end_ms)? {
                let max = s.buckets.iter().map(|b| b.max).fold(f64::MIN, f64::max);
                let e = by_department
                    .entry(workload::department(i))
                    .or_insert(f64::MIN);
                *e = e.max(max);
            }
        }
        fleet_rollup.push(begin.elapsed().as_secs_f64() * 1e3);
    }
    let (one_p50, one_p99) = percentiles(one_raw);
    let (oner_p50, oner_p99) = percentiles(one_rollup);
    let (fleet_p50, fleet_p99) = percentiles(fleet_raw);
    let (fleetr_p50, fleetr_p99) = percentiles(fleet_rollup);
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let out = serde_json::json!({
        "devices": args.devices,
        "days": args.days,
        "interval_s": args.interval.as_secs_f64(),
        "samples_per_report": args.samples_per_report,
        "reports": reports,
        "samples": samples,
        "ingest_reports_per_s": reports as f64 / ingest_time.as_secs_f64(),
        "ingest_s": ingest_time.as_secs_f64(),
        "fold_s": fold_time.as_secs_f64(),
        "samples_in_raw_chunks": stored.raw_samples,
        "raw_chunk_bytes": stored.raw_bytes,
        "raw_chunks": stored.raw_chunks,
        "raw_bytes_per_sample_values_only": stored.raw_bytes as f64 / stored.raw_samples.max(1) as f64,
        "raw_bytes_per_sample_with_keys": stored.raw_key_and_value_bytes as f64 / stored.raw_samples.max(1) as f64,
        "rollup_bytes": stored.rollup_bytes,
        "rollup_key_and_value_bytes": stored.rollup_key_and_value_bytes,
        "log_records_left": stored.log_records,
        "tree_key_and_value_bytes": stored.all_key_and_value_bytes,
        "logical_bytes_16_per_sample": samples * 16,
        "sled_size_on_disk": sled_bytes,
        "dir_bytes": dir_bytes,
        "disk_bytes_per_sample": dir_bytes as f64 / samples.max(1) as f64,
        "query_one_device_24h_raw_ms": {"p50": one_p50, "p99": one_p99},
        "query_one_device_24h_5min_rollups_ms": {"p50": oner_p50, "p99": oner_p99},
        "scan_all_devices_fs_24h_raw_ms": {"p50": fleet_p50, "p99": fleet_p99, "points": points},
        "scan_all_devices_fs_24h_rollups_ms": {"p50": fleetr_p50, "p99": fleetr_p99},
        "peak_rss_mib": rss_kib as f64 / 1024.0,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    store.close().await?;
    Ok(())
}
