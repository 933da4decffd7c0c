//! Retention, and the background task that runs it with the compactor.
//!
//! Chunks and rollups are keyed window first (`series.rs`), so retention
//! deletes one key range from the oldest window up to the cutoff: a raw
//! chunk goes once every sample in it is older than the raw retention, a
//! rollup once older than the rollup retention. Nothing newer is read or
//! touched.

use super::series::{self, Kind};
use super::{Result, Store};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Deletions per sled batch: bounds the memory of one retention step.
const DELETE_BATCH: usize = 1_000;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RetentionStats {
    pub raw_chunks_deleted: usize,
    pub rollups_deleted: usize,
}

/// What both databases hold (a full scan: for benchmarks and ops, not hot paths).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StorageStats {
    pub raw_chunks: u64,
    pub raw_samples: u64,
    /// Encoded chunk values only.
    pub raw_bytes: u64,
    pub raw_key_and_value_bytes: u64,
    pub rollup_chunks: u64,
    pub rollup_bytes: u64,
    pub rollup_key_and_value_bytes: u64,
    pub log_records: u64,
    pub log_bytes: u64,
    pub all_key_and_value_bytes: u64,
    /// Raw chunk bytes and samples per series over all devices, by
    /// `metric{key=value,...}`: which series cost what.
    pub raw_by_series: std::collections::BTreeMap<String, (u64, u64)>,
}

impl Store {
    pub fn storage_stats(&self) -> Result<StorageStats> {
        let mut st = StorageStats::default();
        for item in self.telemetry.iter().chain(self.series.iter()) {
            let (k, v) = item?;
            let both = (k.len() + v.len()) as u64;
            st.all_key_and_value_bytes += both;
            if let Some(chunk) = series::split_chunk_key(Kind::Raw, &k) {
                st.raw_chunks += 1;
                st.raw_bytes += v.len() as u64;
                st.raw_key_and_value_bytes += both;
                // The sample count is the varint after the version byte.
                let mut header = v.get(1..).unwrap_or_default();
                let n = super::gorilla::get_varint(&mut header).unwrap_or(0);
                st.raw_samples += n;
                let name = series::split_series_id(&chunk.series_id).map_or_else(
                    || "?".to_owned(),
                    |(metric, attrs)| {
                        let attrs: Vec<String> = attrs
                            .iter()
                            .map(|a| format!("{}={}", a.key, a.value))
                            .collect();
                        format!("{metric}{{{}}}", attrs.join(","))
                    },
                );
                let entry = st.raw_by_series.entry(name).or_default();
                entry.0 += v.len() as u64;
                entry.1 += n;
            } else if k.starts_with(Kind::Rollup.tag()) {
                st.rollup_chunks += 1;
                st.rollup_bytes += v.len() as u64;
                st.rollup_key_and_value_bytes += both;
            } else if k.starts_with(b"l/") {
                st.log_records += 1;
                st.log_bytes += v.len() as u64;
            }
        }
        Ok(st)
    }

    /// Writes every tree into fresh databases at `path` (sled's export and
    /// import, both databases) and returns their size on disk: what the files would
    /// be if rewritten, against what sled's log has grown to. For the storage
    /// benchmark (is a periodic offline rewrite a way to bound the disk?);
    /// not used by the collector.
    pub fn compacted_copy_size(&self, path: &std::path::Path) -> Result<u64> {
        let copy = |from: &sled::Db, to: &std::path::Path, compress: bool| -> Result<u64> {
            let copy =
                super::sled_config::config(to, self.options.cache_bytes / 2, compress).open()?;
            copy.import(from.export());
            copy.flush()?;
            Ok(copy.size_on_disk()?)
        };
        let hot = copy(&self.db, path, self.options.compress_new_database)?;
        let series_path = super::series_db_path(path);
        let series = copy(
            &self.series_db,
            &series_path,
            self.options.compress_new_series,
        )?;
        Ok(hot + series)
    }

    /// Windows of `kind` ending at or before this have been deleted.
    pub fn horizon(&self, kind: Kind) -> i64 {
        self.horizons[kind as usize].load(Ordering::Acquire)
    }

    /// Deletes what retention no longer keeps at `now_ms`.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionStats> {
        Ok(RetentionStats {
            raw_chunks_deleted: self.expire(
                Kind::Raw,
                now_ms.saturating_sub(self.options.raw_retention_ms),
            )?,
            rollups_deleted: self.expire(
                Kind::Rollup,
                now_ms.saturating_sub(self.options.rollup_retention_ms),
            )?,
        })
    }

    /// Deletes every `kind` chunk whose window ends at or before `cutoff_ms`.
    fn expire(&self, kind: Kind, cutoff_ms: i64) -> Result<usize> {
        // Windows starting at or before this one end at or before the cutoff.
        let last_start = cutoff_ms.saturating_sub(series::WINDOW_MS);
        if last_start < 0 {
            return Ok(0);
        }
        let end = series::window_prefix(kind, last_start.saturating_add(1));
        let mut deleted = 0;
        // Raise the horizon first: queries then read rollups for the range
        // being deleted, and folds stop writing into it.
        let horizon = series::window_of(last_start).saturating_add(series::WINDOW_MS);
        if horizon > self.horizon(kind) {
            self.series.insert(
                series::horizon_key(kind),
                &series::timestamp_bytes(horizon)[..],
            )?;
            self.horizons[kind as usize].fetch_max(horizon, Ordering::AcqRel);
        }
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            // A fold never writes a window at or before the cutoff (it
            // checks the same retention), so this cannot race a rewrite.
            for key in self.series.range(kind.tag().to_vec()..end.clone()).keys() {
                batch.remove(key?);
                n += 1;
                if n == DELETE_BATCH {
                    break;
                }
            }
            if n == 0 {
                break;
            }
            self.series.apply_batch(batch)?;
            deleted += n;
        }
        Ok(deleted)
    }
}

/// The pause after a slice is as long as the slice took (so the pass takes
/// at most about half of one core), within these bounds.
const MIN_SLICE_PAUSE: Duration = Duration::from_millis(20);
const MAX_SLICE_PAUSE: Duration = Duration::from_secs(2);

/// Runs a compaction pass and then retention every `every`, on the blocking
/// pool, until `stop` resolves. `store` picks the store out of the shared state.
///
/// The pass goes in slices of `DEFAULT_SLICE_BUDGET` (a few hundred devices),
/// each on the blocking pool, with a pause as long as the slice between
/// them: ingest and the group commit get the machine between slices instead
/// of waiting behind one fold of the whole fleet (which, on a 19,000-device
/// collector ten minutes after start, was ~350,000 records at once).
pub async fn run_maintenance<T: Send + Sync + 'static>(
    owner: Arc<T>,
    store: fn(&T) -> &Store,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        let started = std::time::Instant::now();
        let mut total = super::compact::CompactStats::default();
        let mut slices = 0_usize;
        let mut cursor = Some(super::fold_slices::first_slice());
        while let Some(from) = cursor.take() {
            let owner = owner.clone();
            let slice = tokio::task::spawn_blocking(move || {
                let began = std::time::Instant::now();
                store(&owner)
                    .compact_slice(&from, super::DEFAULT_SLICE_BUDGET)
                    .map(|done| (done, began.elapsed()))
            })
            .await;
            let took = match slice {
                Ok(Ok(((stats, next), took))) => {
                    super::fold_slices::add(&mut total, &stats);
                    cursor = next;
                    took
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "storage maintenance slice failed");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "storage maintenance task failed");
                    break;
                }
            };
            slices += 1;
            if cursor.is_some() {
                let pause = took.clamp(MIN_SLICE_PAUSE, MAX_SLICE_PAUSE);
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        let owner = owner.clone();
        let expired = tokio::task::spawn_blocking(move || {
            store(&owner).enforce_retention(vakt_proto::now_unix_ms())
        })
        .await;
        match expired {
            Ok(Ok(r)) => tracing::info!(
                devices = total.devices,
                records = total.records,
                chunks = total.chunks_written,
                failed = total.failed,
                slices,
                seconds = started.elapsed().as_secs_f64(),
                raw_deleted = r.raw_chunks_deleted,
                rollups_deleted = r.rollups_deleted,
                "storage maintenance pass"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "storage retention failed"),
            Err(e) => tracing::error!(error = %e, "storage retention task failed"),
        }
    }
}
