//! The compactor: folds log records into chunks. Per device, one atomic
//! batch into the series database writes the merged chunks, their rollups
//! and a marker naming the folded records; once that is durable (a flush per
//! device, or per slice of devices: `fold_slices.rs`), one batch into the
//! hot database removes exactly those records. A
//! crash before the first loses nothing (the records are still there and
//! fold again), one between the two duplicates nothing (the marker says
//! they are folded: `fold_device`). Reports arriving meanwhile add new
//! records, which the batches leave alone.
//!
//! The second batch also writes the device's ingest state to `s/`, since
//! the folded records may be the only place it is stored.
//!
//! Rollups of a window are recomputed from the whole merged chunk whenever the
//! chunk changes, so they always equal the raw aggregates, late data included.

use super::series::{self, Kind};
use super::{Store, StoreError, gorilla, log};
use std::collections::{BTreeMap, HashSet};

/// What one compaction pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CompactStats {
    pub devices: usize,
    pub records: usize,
    pub chunks_written: usize,
    /// Devices whose fold failed (logged); their records stay for the next pass.
    pub failed: usize,
}

/// A fold whose series writes are staged (`Store::stage_fold`) and whose
/// records are still to be removed (`Store::finish_fold`).
pub(super) struct StagedFold {
    device_id: String,
    folded: Vec<sled::IVec>,
    chunks: usize,
}

impl StagedFold {
    pub(super) fn records(&self) -> usize {
        self.folded.len()
    }
}

/// One 5-minute bucket of one series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rollup {
    pub bucket_start_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl Rollup {
    pub fn of(bucket_start_ms: i64, value: f64) -> Self {
        Self {
            bucket_start_ms,
            min: value,
            max: value,
            sum: value,
            count: 1,
        }
    }

    pub fn merge(&mut self, other: &Rollup) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Buckets of time-ordered samples.
pub fn rollups_of(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<Rollup> {
    let mut out: Vec<Rollup> = Vec::new();
    for (ts, value) in samples {
        let bucket = series::bucket_of(ts);
        match out.last_mut() {
            Some(last) if last.bucket_start_ms == bucket => last.merge(&Rollup::of(bucket, value)),
            _ => out.push(Rollup::of(bucket, value)),
        }
    }
    out
}

pub fn encode_rollups(rollups: &[Rollup]) -> Result<Vec<u8>, gorilla::CodecError> {
    let ts: Vec<i64> = rollups.iter().map(|r| r.bucket_start_ms).collect();
    let min: Vec<f64> = rollups.iter().map(|r| r.min).collect();
    let max: Vec<f64> = rollups.iter().map(|r| r.max).collect();
    let sum: Vec<f64> = rollups.iter().map(|r| r.sum).collect();
    let count: Vec<f64> = rollups.iter().map(|r| r.count as f64).collect();
    gorilla::encode(&ts, &[&min, &max, &sum, &count])
}

pub fn decode_rollups(bytes: &[u8]) -> Result<Vec<Rollup>, gorilla::CodecError> {
    let (ts, cols) = gorilla::decode(bytes)?;
    let [min, max, sum, count] = cols.as_slice() else {
        return Err(gorilla::CodecError::Truncated);
    };
    Ok((0..ts.len())
        .map(|i| Rollup {
            bucket_start_ms: ts[i],
            min: min[i],
            max: max[i],
            sum: sum[i],
            count: count[i] as u64,
        })
        .collect())
}

pub(super) fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    }
}

/// A raw chunk's samples in time order.
pub fn decode_chunk(key: &[u8], bytes: &[u8]) -> Result<Vec<(i64, f64)>, StoreError> {
    let (ts, cols) = gorilla::decode(bytes).map_err(|e| corrupt(key, e))?;
    let values = cols
        .into_iter()
        .next()
        .ok_or_else(|| corrupt(key, "chunk without values"))?;
    Ok(ts.into_iter().zip(values).collect())
}

impl Store {
    /// Folds every device's log records into chunks (the background pass).
    pub fn compact(&self) -> super::Result<CompactStats> {
        // One slice with no budget: the walk lives once, in `fold_slices.rs`.
        let unbounded = super::fold_slices::SliceBudget {
            devices: usize::MAX,
            records: usize::MAX,
        };
        let (stats, _) = self.compact_slice(&super::fold_slices::first_slice(), unbounded)?;
        Ok(stats)
    }

    /// Folds one device's log records; returns (records folded, chunks written).
    ///
    /// Chunks live in the series database and the records in the hot one, so
    /// no one batch covers both. The fold writes the chunks together with a
    /// marker naming the records it folded (`series::folded_key`), makes that
    /// durable, and only then removes the records. After a crash between the
    /// two the records are back but named by the marker: the next fold
    /// removes them without folding them twice (rollups merged into, for
    /// windows past raw retention, would count them twice). The marker
    /// names the generation too (enrollment bumps it, in the hot database
    /// after this fold's removal, so never durable without it).
    pub fn fold_device(&self, device_id: &str) -> super::Result<(usize, usize)> {
        let _exclusive = self.fold_locks[super::stripe_of(device_id)]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(staged) = self.stage_fold(device_id)? else {
            return Ok((0, 0));
        };
        self.flush_series()?;
        self.finish_fold(staged)
    }

    /// The first half of a fold: writes the device's chunks, rollups and
    /// marker to the series database, not yet durable. The caller holds the
    /// device's fold lock until `finish_fold`, after a flush of the series
    /// database (a slice flushes once for all its devices: `fold_slices.rs`).
    pub(super) fn stage_fold(&self, device_id: &str) -> super::Result<Option<StagedFold>> {
        // Windows retention has already passed are not written again.
        let raw_cutoff = self.horizon(Kind::Raw);
        let rollup_cutoff = self.horizon(Kind::Rollup);
        // The marker holds for the generation that wrote it: enrollment
        // restarts the sequence, and the records that then reuse its keys
        // are new.
        let generation = {
            let mut hot = self.lock_ingest(device_id);
            self.cached_state(&mut hot, device_id)?.generation
        };
        let marker_key = series::folded_key(device_id);
        let stored_marker = self.series.get(&marker_key)?.unwrap_or_default();
        let already_folded: HashSet<&[u8]> = match stored_marker.split_at_checked(4) {
            Some((g, sequences)) if g == generation.to_be_bytes() => {
                sequences.chunks_exact(8).collect()
            }
            _ => HashSet::new(),
        };
        let mut folded = Vec::new();
        let mut marker = generation.to_be_bytes().to_vec();
        // (series id, window) → samples; later records win on equal timestamps.
        let mut pending: BTreeMap<(Vec<u8>, i64), BTreeMap<i64, f64>> = BTreeMap::new();
        let (records, names) = self.logged_records(device_id)?;
        for (key, value) in records {
            let sequence = key
                .len()
                .checked_sub(8)
                .map(|at| &key[at..])
                .ok_or_else(|| corrupt(&key, "log key without a sequence"))?;
            marker.extend_from_slice(sequence);
            if !already_folded.contains(sequence) {
                for (id, samples) in log::decode(&value, &names).map_err(|e| corrupt(&key, e))? {
                    for (ts, v) in samples {
                        pending
                            .entry((id.clone(), series::window_of(ts)))
                            .or_default()
                            .insert(ts, v);
                    }
                }
            }
            folded.push(key);
        }
        if folded.is_empty() {
            return Ok(None);
        }
        let mut batch = sled::Batch::default();
        let mut chunks = 0;
        for ((id, window), new) in pending {
            let window_end = window.saturating_add(series::WINDOW_MS);
            if window_end <= rollup_cutoff {
                continue; // Retention has deleted this window's rollups.
            }
            let key = series::chunk_key(Kind::Raw, window, device_id, &id);
            let rkey = series::chunk_key(Kind::Rollup, window, device_id, &id);
            let existing = self.series.get(&key)?;
            if existing.is_none() && window_end <= raw_cutoff {
                // Late data for a window whose raw samples retention already
                // removed: only its rollups are left to merge into.
                let rollups = self.merge_rollups(&rkey, rollups_of(new))?;
                batch.insert(rkey, rollups);
                continue;
            }
            let mut merged: BTreeMap<i64, f64> = match existing {
                Some(bytes) => decode_chunk(&key, &bytes)?.into_iter().collect(),
                None => BTreeMap::new(),
            };
            merged.extend(new);
            let ts: Vec<i64> = merged.keys().copied().collect();
            let values: Vec<f64> = merged.into_values().collect();
            let raw = window_end > raw_cutoff;
            stage_window(&mut batch, device_id, &id, window, &ts, &values, raw)?;
            chunks += usize::from(raw);
        }
        batch.insert(marker_key, marker);
        self.series.apply_batch(batch)?;
        Ok(Some(StagedFold {
            device_id: device_id.to_owned(),
            folded,
            chunks,
        }))
    }

    /// The second half, once the staged writes are durable: removes the
    /// folded records from the hot database. Returns (records, chunks).
    pub(super) fn finish_fold(&self, staged: StagedFold) -> super::Result<(usize, usize)> {
        let StagedFold {
            device_id,
            folded,
            chunks,
        } = staged;
        let records = folded.len();
        let mut batch = sled::Batch::default();
        for key in folded {
            batch.remove(key);
        }
        // The folded records may carry the newest state (`log.rs`): it moves
        // to `s/` in the same batch. Under the ingest lock, so no report
        // writes a newer state between reading it and applying the batch.
        let mut hot = self.lock_ingest(&device_id);
        let state = self.cached_state(&mut hot, &device_id)?;
        batch.insert(series::state_key(&device_id), super::encode_json(state));
        self.telemetry.apply_batch(batch)?;
        drop(hot);
        Ok((records, chunks))
    }

    /// Makes every staged fold's series writes durable.
    pub(super) fn flush_series(&self) -> super::Result<()> {
        self.series_db.flush()?;
        Ok(())
    }

    /// Writes whole windows exactly as a fold writes them (same encoders
    /// and keys) without going through log records: how the
    /// storage benchmark loads a month of a large fleet at a rate `ingest`
    /// cannot reach. `series` pairs a series id (`series::series_id`) with
    /// its values at `timestamps`, which must all lie in the window starting
    /// at `window`. Replaces what the window held; not used by the collector.
    pub fn load_window(
        &self,
        device_id: &str,
        window: i64,
        timestamps: &[i64],
        series: &[(Vec<u8>, Vec<f64>)],
    ) -> super::Result<()> {
        let mut batch = sled::Batch::default();
        for (id, values) in series {
            stage_window(&mut batch, device_id, id, window, timestamps, values, true)?;
        }
        self.series.apply_batch(batch)?;
        Ok(())
    }

    fn merge_rollups(&self, rkey: &[u8], new: Vec<Rollup>) -> super::Result<Vec<u8>> {
        let mut buckets: BTreeMap<i64, Rollup> = match self.series.get(rkey)? {
            Some(bytes) => decode_rollups(&bytes)
                .map_err(|e| corrupt(rkey, e))?
                .into_iter()
                .map(|r| (r.bucket_start_ms, r))
                .collect(),
            None => BTreeMap::new(),
        };
        for r in new {
            buckets
                .entry(r.bucket_start_ms)
                .and_modify(|b| b.merge(&r))
                .or_insert(r);
        }
        let all: Vec<Rollup> = buckets.into_values().collect();
        encode_rollups(&all).map_err(|e| corrupt(rkey, e))
    }
}

/// Stages one window's writes: the raw chunk (if `raw`: retention has not
/// passed it) and the rollups recomputed from all of the window's samples.
fn stage_window(
    batch: &mut sled::Batch,
    device_id: &str,
    id: &[u8],
    window: i64,
    ts: &[i64],
    values: &[f64],
    raw: bool,
) -> super::Result<()> {
    if raw {
        let key = series::chunk_key(Kind::Raw, window, device_id, id);
        let bytes = gorilla::encode(ts, &[values]).map_err(|e| corrupt(&key, e))?;
        batch.insert(key, bytes);
    }
    let rkey = series::chunk_key(Kind::Rollup, window, device_id, id);
    let rollups = rollups_of(ts.iter().copied().zip(values.iter().copied()));
    let rollups = encode_rollups(&rollups).map_err(|e| corrupt(&rkey, e))?;
    batch.insert(rkey, rollups);
    Ok(())
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
