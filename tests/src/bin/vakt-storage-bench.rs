//! `vakt-storage-bench`: the storage benchmark of issue 6. Writes a simulated
//! fleet's reports with fast-forwarded timestamps and then measures bytes per
//! sample on disk, sled's size against the logical size, and query latency
//! (one device's series; a fleet aggregation by department through the
//! collector's own `queries::aggregate`).
//!
//! `--mode ingest` (the real path): every report through `Store::ingest`
//! (no network, no TLS), log records folded into chunks every
//! `--fold-every` as the collector's background pass would.
//! `--mode bulk`: whole 6-hour windows written with `Store::load_window` —
//! the same encoders, keys and index entries a fold writes, without per-report
//! log records — for volumes `ingest` cannot reach in the time we have (a
//! month of 1,000 devices, a year). Compare both on a small run: the chunk
//! and rollup bytes are identical.

#![forbid(unsafe_code)]

#[path = "../sim/workload.rs"]
#[allow(dead_code)]
mod workload;

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vakt_collector::queries;
use vakt_collector::store::series::{self, WINDOW_MS};
use vakt_collector::store::{Registration, StorageOptions, Store, TokenRecord};
use vakt_proto::v1;
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
    /// Repetitions of the one-device query (the fleet scans run a tenth as often).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// `ingest`: every report through `Store::ingest`, folded every
    /// `--fold-every`; `bulk`: whole windows as a fold writes them.
    #[arg(long, default_value = "ingest")]
    mode: String,
    /// Print the database's size every this many simulated days.
    #[arg(long, default_value_t = 1)]
    report_every_days: i64,
    /// Stop loading (and measure what is there) if the database directory
    /// grows past this many GiB: the disk is shared.
    #[arg(long, default_value_t = 20.0)]
    max_dir_gib: f64,
    /// Create the database with this sled segment size (bytes, a power of
    /// two) instead of the store's default, to compare; the store keeps what
    /// a database was created with.
    #[arg(long)]
    segment_size: Option<usize>,
    /// Create the hot database (log records, state) with sled's zstd
    /// compression at this level.
    #[arg(long)]
    compression: Option<i32>,
    /// Create the series database (chunks, rollups: `<dir>/series`) without
    /// sled's compression, which is the default for it.
    #[arg(long)]
    no_series_compression: bool,
    /// Load nothing: run the queries on the database an earlier run left in
    /// `--dir`, taking "now" as the end of its `--days` (same `--devices`,
    /// `--days` and `--interval` as that run); no size figures.
    #[arg(long, requires = "dir")]
    query_only: bool,
    /// Skip the export/import copy that measures a freshly rewritten
    /// database (it needs as much disk again and time for a big database).
    #[arg(long)]
    no_copy: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn device_id(i: usize) -> String {
    format!("d-{:016x}", workload::mix(i as u64))
}

fn dir_size(path: &std::path::Path) -> u64 {
    dir_usage(path).0
}

/// (apparent size, allocated bytes) of a directory tree, like `du -B1
/// --apparent-size` and `du -B1`: they differ if sled leaves the file sparse.
fn dir_usage(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut allocated) = (0, 0);
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => {
                    let (a, b) = dir_usage(&e.path());
                    apparent += a;
                    allocated += b;
                }
                Ok(m) => {
                    apparent += m.len();
                    allocated += m.blocks() * 512;
                }
                Err(_) => {}
            }
        }
    }
    (apparent, allocated)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Registers every simulated device (department and class as the fleet
/// simulator gives them), so fleet queries see them.
async fn register(store: &Store, devices: &[Device], ids: &[String]) -> Result<()> {
    for (device, id) in devices.iter().zip(ids) {
        let registration = Registration {
            serial: format!("SN-{id}"),
            class: match device.class {
                workload::Class::Laptop => "laptop",
                workload::Class::Server => "server",
            }
            .into(),
            department: workload::department(device.index).into(),
            ..Default::default()
        };
        let token = TokenRecord {
            device_id: String::new(),
            secret_sha256: "00".into(),
            created_at_ms: START_MS,
            expires_at_ms: START_MS + 1000,
            used_at_ms: 0,
        };
        store
            .register(registration, id.clone(), format!("t-{id}"), token)
            .await
            .context("register a simulated device")?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("db"));
    if args.segment_size.is_some() || args.compression.is_some() {
        // sled persists both; the store then keeps them.
        use vakt_collector::store::sled_config;
        let size = args.segment_size.unwrap_or(sled_config::SEGMENT_SIZE);
        sled_config::create_with(&dir, size, args.compression)
            .context("create the database with --segment-size/--compression")?;
    }
    let store = Store::open_with(
        &dir,
        StorageOptions {
            cache_bytes: args.cache_bytes,
            raw_retention_ms: ms(args.raw_retention),
            rollup_retention_ms: ms(args.rollup_retention),
            compress_new_database: args.compression.is_some(),
            compress_new_series: !args.no_series_compression,
        },
    )
    .context("open the store")?;
    let devices: Vec<Device> = (0..args.devices)
        .map(|i| Device::new(i, args.samples_per_report))
        .collect();
    let ids: Vec<String> = (0..args.devices).map(device_id).collect();
    if !args.query_only {
        register(&store, &devices, &ids).await?;
    }
    let interval = ms(args.interval);
    let steps = if args.query_only {
        0
    } else {
        (args.days * 86_400_000.0 / interval as f64) as i64
    };
    let fold_every = ms(args.fold_every).max(interval);
    let mut reports = 0u64;
    let mut samples = 0u64;
    let (mut ingest_time, mut fold_time) = (Duration::ZERO, Duration::ZERO);
    let mut next_fold = START_MS + fold_every;
    let report_every = 86_400_000 * args.report_every_days.max(1);
    let mut next_report = START_MS + report_every;
    let mut disk_over_time = Vec::new();
    let started = Instant::now();
    let mut progress = |now: i64, reports: u64, samples: u64| {
        let dir_bytes = dir_size(&dir);
        let day = (now - START_MS) / 86_400_000;
        eprintln!(
            "day {day:>3}: {reports} reports, {samples} samples, {:.0} s, dir {:.1} MiB",
            started.elapsed().as_secs_f64(),
            dir_bytes as f64 / 1048576.0
        );
        disk_over_time
            .push(serde_json::json!({"day": day, "samples": samples, "dir_bytes": dir_bytes}));
        dir_bytes as f64 > args.max_dir_gib * 1073741824.0
    };
    let mut stopped_early = false;
    // Devices spread evenly over the interval, like the fleet simulator.
    let offset = |i: usize| (i as i64 * interval) / args.devices as i64;
    if args.mode == "bulk" {
        let series_ids: Vec<Vec<Vec<u8>>> = devices
            .iter()
            .map(|d| {
                d.series_names()
                    .map(|(m, a)| series::series_id(m, a))
                    .collect()
            })
            .collect();
        let end = START_MS + steps * interval;
        let mut window = series::window_of(START_MS);
        // Devices in key order, as the compactor walks them.
        let mut order: Vec<usize> = (0..devices.len()).collect();
        order.sort_by(|a, b| ids[*a].cmp(&ids[*b]));
        while window < end {
            let begin = Instant::now();
            for &i in &order {
                let device = &devices[i];
                // The steps whose timestamp for this device lies in the window.
                let first = (window - START_MS - offset(i) + interval - 1).div_euclid(interval);
                let last =
                    (window + WINDOW_MS - START_MS - offset(i) + interval - 1).div_euclid(interval);
                let ts: Vec<i64> = (first.max(0)..last.min(steps))
                    .map(|k| START_MS + k * interval + offset(i))
                    .collect();
                if ts.is_empty() {
                    continue;
                }
                let mut columns: Vec<Vec<f64>> =
                    vec![Vec::with_capacity(ts.len()); series_ids[i].len()];
                for &t in &ts {
                    for (column, v) in columns.iter_mut().zip(device.values(t)) {
                        column.push(v);
                    }
                }
                reports += ts.len() as u64;
                samples += (ts.len() * columns.len()) as u64;
                let series: Vec<(Vec<u8>, Vec<f64>)> =
                    series_ids[i].iter().cloned().zip(columns).collect();
                store.load_window(&ids[i], window, &ts, &series)?;
            }
            ingest_time += begin.elapsed();
            window += WINDOW_MS;
            let begin = Instant::now();
            store.enforce_retention(window.min(end))?;
            fold_time += begin.elapsed();
            while window.min(end) >= next_report {
                stopped_early |= progress(next_report, reports, samples);
                next_report += report_every;
            }
            if stopped_early {
                eprintln!("database past --max-dir-gib: stopping the load here");
                break;
            }
        }
    } else {
        for step in 0..steps {
            let t = START_MS + step * interval;
            let begin = Instant::now();
            for (i, device) in devices.iter().enumerate() {
                let ts = t + offset(i);
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
            if t + interval >= next_report {
                stopped_early |= progress(next_report, reports, samples);
                next_report += report_every;
                if stopped_early {
                    eprintln!("database past --max-dir-gib: stopping the load here");
                    break;
                }
            }
        }
    }
    // Queries look at the last 24 h of what was loaded.
    let end_ms = if args.query_only {
        START_MS + (args.days * 86_400_000.0 / interval as f64) as i64 * interval
    } else {
        START_MS + (reports / args.devices.max(1) as u64) as i64 * interval
    };
    let begin = Instant::now();
    store.compact()?;
    fold_time += begin.elapsed();
    store.durable().await?;
    // A full scan of the tree: what `--query-only` runs skip.
    let stored = if args.query_only {
        Default::default()
    } else {
        store.storage_stats()?
    };
    // The same data rewritten into a fresh database (sled's export/import).
    let (rewritten_bytes, rewritten_dir_bytes) = if args.no_copy || args.query_only {
        (0, 0)
    } else {
        let copy_dir = tempfile::tempdir_in(dir.parent().unwrap_or(&dir))?;
        let bytes = store.compacted_copy_size(&copy_dir.path().join("db"))?;
        (bytes, dir_size(copy_dir.path()))
    };
    let sled_bytes = store.size_on_disk();
    let (dir_bytes, dir_allocated_bytes) = dir_usage(&dir);

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
    // The fleet aggregation through the collector's own query code: max and
    // p95 of every device's filesystem utilization (3 series each) by
    // department over the last 24 h. Max reads rollups, p95 raw samples.
    let mut fleet_max = Vec::new();
    let mut fleet_p95 = Vec::new();
    let mut groups = 0;
    for _ in 0..(args.queries / 10).max(3) {
        for (aggregation, times) in [
            (v1::Aggregation::Max, &mut fleet_max),
            (v1::Aggregation::P95, &mut fleet_p95),
        ] {
            let req = v1::FleetAggregateRequest {
                metric: "system.filesystem.utilization".into(),
                aggregation: aggregation as i32,
                group_by: v1::GroupBy::Department as i32,
                since_unix_ms: since,
                until_unix_ms: end_ms,
                ..Default::default()
            };
            let begin = Instant::now();
            let got = queries::aggregate(&store, &req, end_ms)
                .map_err(|e| anyhow::anyhow!("fleet aggregate: {e}"))?;
            times.push(begin.elapsed().as_secs_f64() * 1e3);
            groups = got.groups.len();
        }
    }
    let samples_per_fleet_query = args.devices as u64 * 3 * (86_400_000 / interval) as u64;
    let (one_p50, one_p99) = percentiles(one_raw);
    let (oner_p50, oner_p99) = percentiles(one_rollup);
    let (max_p50, max_p99) = percentiles(fleet_max);
    let (p95_p50, p95_p99) = percentiles(fleet_p95);
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
        "mode": args.mode,
        "stopped_early": stopped_early,
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
        "dir_allocated_bytes": dir_allocated_bytes,
        "segment_size": vakt_collector::store::sled_config::persisted_segment_size(&dir),
        "compression": args.compression,
        "rewritten_copy_sled_bytes": rewritten_bytes,
        "rewritten_copy_dir_bytes": rewritten_dir_bytes,
        "disk_bytes_per_sample": dir_bytes as f64 / samples.max(1) as f64,
        "query_one_device_24h_raw_ms": {"p50": one_p50, "p99": one_p99},
        "query_one_device_24h_5min_rollups_ms": {"p50": oner_p50, "p99": oner_p99},
        "fleet_max_fs_by_department_24h_rollups_ms": {"p50": max_p50, "p99": max_p99, "groups": groups},
        "fleet_p95_fs_by_department_24h_raw_ms": {"p50": p95_p50, "p99": p95_p99, "samples": samples_per_fleet_query},
        "disk_over_time": disk_over_time,
        "raw_bytes_per_sample_by_series": stored
            .raw_by_series
            .iter()
            .map(|(name, (bytes, n))| (name.clone(), serde_json::json!((*bytes as f64 / (*n).max(1) as f64 * 100.0).round() / 100.0)))
            .collect::<serde_json::Map<_, _>>(),
        "peak_rss_mib": rss_kib as f64 / 1024.0,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    store.close().await?;
    Ok(())
}
