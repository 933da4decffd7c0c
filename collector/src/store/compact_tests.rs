//! Folding, rollups, retention and crash safety of the chunked series store.

use super::super::series::{self, BUCKET_MS, Kind, WINDOW_MS};
use super::super::{StorageOptions, Store};
use super::*;
use vakt_proto::v1;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01, a window boundary

fn options(raw_days: i64, rollup_days: i64) -> StorageOptions {
    StorageOptions {
        cache_bytes: 1 << 20,
        raw_retention_ms: raw_days * DAY,
        rollup_retention_ms: rollup_days * DAY,
        compress_new_database: false,
        compress_new_series: true,
    }
}

fn open_at(path: &std::path::Path, opts: StorageOptions) -> Store {
    Store::open_with(path, opts).unwrap()
}

fn attr(k: &str, v: &str) -> v1::Attribute {
    v1::Attribute {
        key: k.into(),
        value: v.into(),
    }
}

/// A report with a CPU gauge, a counter, two filesystems, and values in the
/// forms the codec stores as integers or ratios: a load average with two
/// decimals, memory in whole kB, `used / total` and the agent's `1 - idle/total`.
fn report(seq: u64, ts: i64) -> v1::ReportBatch {
    let x = seq as f64;
    let sample = |metric: &str, attributes: Vec<v1::Attribute>, value: f64| v1::Sample {
        metric: metric.into(),
        attributes,
        value,
        timestamp_unix_ms: 0,
    };
    v1::ReportBatch {
        sequence: seq,
        collected_at_unix_ms: ts,
        samples: vec![
            sample("cpu", vec![], (x * 0.37).sin().abs()),
            sample("net.bytes", vec![], x * 12_345.0),
            sample("fs", vec![attr("mountpoint", "/")], 0.5 + x * 1e-6),
            sample("fs", vec![attr("mountpoint", "/home")], -0.0),
            sample("load", vec![], ((seq * 37) % 800) as f64 / 100.0),
            sample(
                "mem",
                vec![],
                ((4_000_000 + (seq * 7_919) % 9_000) * 1024) as f64,
            ),
            sample(
                "util",
                vec![],
                (60_000_000 + seq * 97) as f64 / 122_877_498.0,
            ),
            sample(
                "busy",
                vec![],
                1.0 - (12_000 + (seq * 104_729) % 2_400) as f64 / (24_000 + seq % 9) as f64,
            ),
        ],
        ..Default::default()
    }
}

fn points(store: &Store, device: &str, metric: &str, since: i64, until: i64) -> Vec<(i64, u64)> {
    store
        .raw_samples(device, metric, &[], since, until)
        .unwrap()
        .into_iter()
        .flat_map(|(_, _, p)| p)
        .map(|(t, v)| (t, v.to_bits()))
        .collect()
}

fn log_records(store: &Store) -> usize {
    store.telemetry.scan_prefix(b"l/").count()
}

#[tokio::test]
async fn folding_keeps_every_sample_exactly_and_removes_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(&dir.path().join("db"), options(14, 400));
    // Two days at 30 s, crossing window boundaries; one late, out-of-order report.
    let mut seq = 0;
    for i in 0..5_760i64 {
        seq += 1;
        store
            .ingest("d-1", &report(seq, T0 + i * 30_000 + 17), 0)
            .unwrap();
        if i == 3_000 {
            store.fold_device("d-1").unwrap();
        }
    }
    seq += 1;
    store.ingest("d-1", &report(seq, T0 + 45_001), 0).unwrap();
    let before = points(&store, "d-1", "cpu", 0, i64::MAX);
    let metrics = ["load", "mem", "util", "busy"];
    let others: Vec<_> = metrics
        .iter()
        .map(|m| points(&store, "d-1", m, 0, i64::MAX))
        .collect();
    let fs_before = store
        .query_series(
            "d-1",
            "fs",
            &[attr("mountpoint", "/home")],
            0,
            i64::MAX,
            100_000,
        )
        .unwrap();
    assert_eq!(before.len(), 5_761);
    let stats = store.compact().unwrap();
    assert_eq!(stats.devices, 1);
    assert_eq!(log_records(&store), 0);
    assert_eq!(points(&store, "d-1", "cpu", 0, i64::MAX), before);
    for (m, before) in metrics.iter().zip(&others) {
        assert_eq!(before.len(), 5_761);
        assert_eq!(&points(&store, "d-1", m, 0, i64::MAX), before, "{m}");
    }
    let fs_after = store
        .query_series(
            "d-1",
            "fs",
            &[attr("mountpoint", "/home")],
            0,
            i64::MAX,
            100_000,
        )
        .unwrap();
    assert_eq!(fs_after, fs_before);
    assert!(
        fs_after[0]
            .points
            .iter()
            .all(|p| p.value.to_bits() == (-0.0f64).to_bits())
    );
    // A sub-range reads only what it asks for.
    let day2 = points(&store, "d-1", "net.bytes", T0 + DAY, T0 + DAY + 3_600_000);
    assert_eq!(day2.len(), 120);
    assert!(
        day2.iter()
            .all(|(t, _)| (T0 + DAY..=T0 + DAY + 3_600_000).contains(t))
    );
}

#[tokio::test]
async fn a_crash_between_log_write_and_fold_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let expected;
    {
        let store = open_at(&path, options(14, 400));
        for seq in 1..=100u64 {
            store
                .ingest("d-1", &report(seq, T0 + seq as i64 * 30_000), 0)
                .unwrap();
        }
        store.fold_device("d-1").unwrap();
        for seq in 101..=150u64 {
            store
                .ingest("d-1", &report(seq, T0 + seq as i64 * 30_000), 0)
                .unwrap();
        }
        store.durable().await.unwrap();
        expected = points(&store, "d-1", "cpu", 0, i64::MAX);
        assert_eq!(expected.len(), 150);
        // "Crash": the process goes away with 50 records not folded.
        store.close().await.unwrap();
    }
    {
        let store = open_at(&path, options(14, 400));
        assert_eq!(log_records(&store), 50);
        assert_eq!(points(&store, "d-1", "cpu", 0, i64::MAX), expected);
        assert_eq!(store.ingest_state("d-1").unwrap().last_sequence, 150);
        store.compact().unwrap();
        store.close().await.unwrap();
    }
    let store = open_at(&path, options(14, 400));
    assert_eq!(log_records(&store), 0);
    assert_eq!(points(&store, "d-1", "cpu", 0, i64::MAX), expected);
}

/// Rollups computed by hand from the raw samples, summing in time order.
fn expected_rollups(samples: &[(i64, f64)]) -> Vec<Rollup> {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    rollups_of(sorted)
}

#[tokio::test]
async fn rollups_equal_the_raw_aggregates_before_and_after_folding() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(&dir.path().join("db"), options(14, 400));
    let mut raw = Vec::new();
    // Irregular intervals (7-53 s) over 9 hours, folded at random points.
    let mut t = T0 + 5;
    for seq in 1..=900u64 {
        t += 7_000 + (crate::store::series::bucket_of(seq as i64 * 7_919) % 46_000);
        let batch = report(seq, t);
        raw.push((t, batch.samples[0].value));
        store.ingest("d-1", &batch, 0).unwrap();
        if seq % 97 == 0 {
            store.fold_device("d-1").unwrap();
        }
    }
    let check = |store: &Store| {
        let got = store.query_rollups("d-1", "cpu", &[], 0, i64::MAX).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].buckets, expected_rollups(&raw));
        for (i, metric) in [(4, "load"), (5, "mem"), (6, "util"), (7, "busy")] {
            let raw: Vec<(i64, f64)> = (1..=900u64)
                .zip(&raw)
                .map(|(seq, (t, _))| (*t, report(seq, *t).samples[i].value))
                .collect();
            let got = store
                .query_rollups("d-1", metric, &[], 0, i64::MAX)
                .unwrap();
            let want = expected_rollups(&raw);
            assert_eq!(got[0].buckets.len(), want.len(), "{metric}");
            for (g, w) in got[0].buckets.iter().zip(&want) {
                // A bucket split between a chunk and log records sums in two
                // parts: equal up to summation order.
                let sum_ok = (g.sum - w.sum).abs() <= 1e-12 * w.sum.abs().max(1.0);
                assert!(g.min == w.min && g.max == w.max && g.count == w.count && sum_ok);
            }
        }
    };
    check(&store);
    store.compact().unwrap();
    check(&store);
    // A step query over rollups is the count-weighted mean of the raw samples.
    let hourly = store
        .query_series_step("d-1", "cpu", &[], 0, i64::MAX, 3_600_000, 1_000)
        .unwrap();
    let first_hour: Vec<f64> = raw
        .iter()
        .filter(|(t, _)| *t - t.rem_euclid(3_600_000) == hourly[0].points[0].timestamp_unix_ms)
        .map(|(_, v)| *v)
        .collect();
    let mean = first_hour.iter().sum::<f64>() / first_hour.len() as f64;
    assert!((hourly[0].points[0].value - mean).abs() < 1e-12);
    assert_eq!(
        store.resolution_for(0, 3_600_000),
        crate::store::read::Resolution::Rollup
    );
}

#[tokio::test]
async fn retention_deletes_what_it_should_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(&dir.path().join("db"), options(3, 10));
    // 20 days at 10 minutes for two devices.
    for seq in 1..=(20 * 144u64) {
        let ts = T0 + seq as i64 * 600_000;
        store.ingest("d-1", &report(seq, ts), 0).unwrap();
        store.ingest("d-2", &report(seq, ts), 0).unwrap();
    }
    store.compact().unwrap();
    let now = T0 + 20 * DAY + 1;
    let all_raw = points(&store, "d-1", "cpu", 0, i64::MAX);
    let all_rollups = store.query_rollups("d-1", "cpu", &[], 0, i64::MAX).unwrap()[0]
        .buckets
        .clone();
    // Unfolded records and device state must survive retention untouched.
    store.ingest("d-1", &report(100_000, now), now).unwrap();
    let stats = store.enforce_retention(now).unwrap();
    assert!(stats.raw_chunks_deleted > 0 && stats.rollups_deleted > 0);

    let raw_horizon = store.horizon(Kind::Raw);
    let rollup_horizon = store.horizon(Kind::Rollup);
    assert_eq!(raw_horizon % WINDOW_MS, 0);
    assert!(raw_horizon <= now - 3 * DAY && raw_horizon > now - 3 * DAY - WINDOW_MS);
    assert!(rollup_horizon <= now - 10 * DAY && rollup_horizon > now - 10 * DAY - WINDOW_MS);

    // Raw: exactly the samples in windows ending after the horizon remain.
    let kept = points(&store, "d-1", "cpu", 0, now - 1);
    let want: Vec<_> = all_raw
        .iter()
        .copied()
        .filter(|(t, _)| *t >= raw_horizon)
        .collect();
    assert_eq!(kept, want);
    // Rollups: exactly the buckets after the rollup horizon remain.
    let kept = store.query_rollups("d-1", "cpu", &[], 0, now - 1).unwrap()[0]
        .buckets
        .clone();
    let want: Vec<_> = all_rollups
        .into_iter()
        .filter(|r| r.bucket_start_ms >= rollup_horizon)
        .collect();
    assert_eq!(kept, want);
    // Every remaining chunk and rollup is after the horizons, and all are
    // in the series database.
    for item in store.telemetry.iter().keys() {
        let key = item.unwrap();
        assert!(!key.starts_with(b"raw/") && !key.starts_with(b"rollup/"));
    }
    for item in store.series.iter().keys() {
        let key = item.unwrap();
        if let Some(chunk) = series::split_chunk_key(Kind::Raw, &key) {
            assert!(chunk.window + WINDOW_MS > raw_horizon);
        } else if let Some(chunk) = series::split_chunk_key(Kind::Rollup, &key) {
            assert!(chunk.window + WINDOW_MS > rollup_horizon);
        } else {
            assert!(!key.starts_with(b"raw/") && !key.starts_with(b"rollup/"));
        }
    }
    assert_eq!(store.ingest_state("d-1").unwrap().last_sequence, 100_000);
    assert_eq!(log_records(&store), 1);
    assert_eq!(
        points(&store, "d-2", "cpu", raw_horizon, now),
        points(&store, "d-1", "cpu", raw_horizon, now - 1)
    );
    // Queries reaching past the raw horizon switch to rollups by themselves.
    let old = store
        .query_series("d-1", "cpu", &[], now - 5 * DAY, now - 4 * DAY, 100_000)
        .unwrap();
    assert_eq!(old[0].points.len(), (DAY / BUCKET_MS) as usize / 2 + 1);

    // Late data for a window whose raw chunk is gone merges into its rollups.
    let late_ts = now - 5 * DAY + 60_000;
    let before = store
        .query_rollups("d-1", "cpu", &[], late_ts, late_ts)
        .unwrap()[0]
        .buckets[0];
    let mut late = report(100_001, late_ts);
    late.samples[0].value = 1e9;
    store.ingest("d-1", &late, now).unwrap();
    store.compact().unwrap();
    let after = store
        .query_rollups("d-1", "cpu", &[], late_ts, late_ts)
        .unwrap()[0]
        .buckets[0];
    assert_eq!(after.count, before.count + 1);
    assert_eq!(after.max, 1e9);
    assert!(points(&store, "d-1", "cpu", late_ts, late_ts).is_empty());

    // Running it again deletes nothing more; reopening keeps the horizons.
    assert_eq!(
        store.enforce_retention(now).unwrap(),
        crate::store::retention::RetentionStats::default()
    );
    let path = dir.path().join("db");
    store.close().await.unwrap();
    let store = open_at(&path, options(3, 10));
    assert_eq!(store.horizon(Kind::Raw), raw_horizon);
    assert_eq!(store.horizon(Kind::Rollup), rollup_horizon);
}

/// A crash after a fold made its chunks durable but before the removal of
/// the folded records did: the records come back, and the next fold removes
/// them without counting them again, even into rollups it merges into (late
/// data past raw retention, the one place a second fold would not be
/// idempotent). The marker holds only for its generation: after an
/// enrollment records under the same keys are new and fold.
#[tokio::test]
async fn records_back_after_a_crash_mid_fold_are_not_folded_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(&dir.path().join("db"), options(1, 10));
    for seq in 1..=(3 * 144u64) {
        store
            .ingest("d-1", &report(seq, T0 + seq as i64 * 600_000), 0)
            .unwrap();
    }
    store.compact().unwrap();
    store.enforce_retention(T0 + 3 * DAY).unwrap();
    let late_ts = T0 + 660_000; // the bucket of the first report
    let bucket = |store: &Store| {
        store
            .query_rollups("d-1", "cpu", &[], late_ts, late_ts)
            .unwrap()[0]
            .buckets[0]
    };
    let before = bucket(&store);
    assert!(points(&store, "d-1", "cpu", late_ts, late_ts).is_empty());
    store
        .ingest("d-1", &report(10_000, late_ts), T0 + 3 * DAY)
        .unwrap();
    let records: Vec<_> = store
        .telemetry
        .scan_prefix(b"l/")
        .map(|kv| kv.unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    store.compact().unwrap();
    assert_eq!(bucket(&store).count, before.count + 1);
    assert_eq!(log_records(&store), 0);

    // The hot database's removal lost, the series database's write kept.
    for (k, v) in &records {
        store.telemetry.insert(k, v.clone()).unwrap();
    }
    assert_eq!(store.fold_device("d-1").unwrap().0, 1);
    assert_eq!(bucket(&store).count, before.count + 1);
    assert_eq!(log_records(&store), 0);

    let marker = store
        .series
        .get(series::folded_key("d-1"))
        .unwrap()
        .unwrap();
    let generation = store.ingest_state("d-1").unwrap().generation;
    assert_eq!(marker[..4], generation.to_be_bytes());
    let earlier = [&generation.wrapping_sub(1).to_be_bytes()[..], &marker[4..]].concat();
    store
        .series
        .insert(series::folded_key("d-1"), earlier)
        .unwrap();
    for (k, v) in &records {
        store.telemetry.insert(k, v.clone()).unwrap();
    }
    store.fold_device("d-1").unwrap();
    assert_eq!(bucket(&store).count, before.count + 2);
}

/// A database created before 8 MiB segments (sled's 512 KiB default), and one
/// created compressed, open through the store with what sled recorded, keep
/// every sample through a fold and a reopen, and keep their settings.
#[tokio::test]
async fn databases_with_other_sled_settings_still_open_and_read() {
    use super::super::sled_config;
    for (segment_size, compression) in [(512 * 1024, None), (1 << 20, Some(3))] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        sled_config::create_with(&path, segment_size, compression).unwrap();
        let expected;
        {
            let store = open_at(&path, options(14, 400));
            for seq in 1..=120u64 {
                store
                    .ingest("d-1", &report(seq, T0 + seq as i64 * 30_000), 0)
                    .unwrap();
            }
            store.compact().unwrap();
            store.durable().await.unwrap();
            expected = points(&store, "d-1", "busy", 0, i64::MAX);
            assert_eq!(expected.len(), 120);
            store.close().await.unwrap();
        }
        let store = open_at(&path, options(14, 400));
        assert_eq!(points(&store, "d-1", "busy", 0, i64::MAX), expected);
        store.close().await.unwrap();
        assert_eq!(
            sled_config::persisted_segment_size(&path),
            Some(segment_size)
        );
        assert_eq!(
            sled_config::persisted_compression(&path),
            Some(compression.is_some())
        );
    }
}

/// A database in format 2 (chunks and rollups keyed device first, with the
/// `wc/ wr/` time index) opens as format 3 with every sample and rollup
/// where queries find it, and retention still deletes the old windows.
#[tokio::test]
async fn a_format_2_database_is_moved_to_window_first_keys_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (raw, rollups);
    {
        let store = open_at(&path, options(14, 400));
        for seq in 1..=(3 * 144u64) {
            let ts = T0 + seq as i64 * 600_000;
            store.ingest("d-1", &report(seq, ts), 0).unwrap();
        }
        store.compact().unwrap();
        raw = points(&store, "d-1", "fs", 0, i64::MAX);
        rollups = store.query_rollups("d-1", "fs", &[], 0, i64::MAX).unwrap();
        assert!(!raw.is_empty() && !rollups.is_empty());
        // Turn it into what a format-2 collector left behind: one database,
        // device-first keys.
        for kind in [Kind::Raw, Kind::Rollup] {
            let horizon = series::horizon_key(kind);
            if let Some(value) = store.series.remove(&horizon).unwrap() {
                store.telemetry.insert(horizon, value).unwrap();
            }
        }
        store.series.remove(series::folded_key("d-1")).unwrap();
        for (kind, tag, index) in [(Kind::Raw, "c/", "wc/"), (Kind::Rollup, "r/", "wr/")] {
            for item in store.series.scan_prefix(kind.tag()) {
                let (key, value) = item.unwrap();
                let chunk = series::split_chunk_key(kind, &key).unwrap();
                let mut old = [tag.as_bytes(), b"d-1/", &chunk.series_id].concat();
                old.extend_from_slice(&series::timestamp_bytes(chunk.window));
                let entry = [
                    index.as_bytes(),
                    &series::timestamp_bytes(chunk.window),
                    &old,
                ]
                .concat();
                store.telemetry.insert(entry, &[][..]).unwrap();
                store.telemetry.insert(old, value).unwrap();
                store.series.remove(key).unwrap();
            }
        }
        store
            .telemetry
            .insert(b"meta/format", &2u64.to_be_bytes())
            .unwrap();
        assert!(points(&store, "d-1", "fs", 0, i64::MAX).is_empty());
        store.close().await.unwrap();
    }
    let store = open_at(&path, options(1, 2));
    assert_eq!(points(&store, "d-1", "fs", 0, i64::MAX), raw);
    assert_eq!(
        store.query_rollups("d-1", "fs", &[], 0, i64::MAX).unwrap(),
        rollups
    );
    // 13 windows (the last report opens one), 8 series, raw and rollup.
    assert_eq!(store.series.iter().count(), 13 * 8 * 2);
    for key in store.telemetry.iter().keys() {
        let key = key.unwrap();
        for old in [&b"c/"[..], b"r/", b"wc/", b"wr/", b"raw/", b"rollup/"] {
            assert!(!key.starts_with(old), "{}", String::from_utf8_lossy(&key));
        }
    }
    let stats = store.enforce_retention(T0 + 4 * DAY).unwrap();
    assert_eq!(stats.raw_chunks_deleted, 3 * 4 * 8); // 3 days of 6 h windows, 8 series
    assert_eq!(points(&store, "d-1", "fs", 0, T0 + 2 * DAY), vec![]);
}
