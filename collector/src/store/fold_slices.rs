//! A compaction pass in bounded slices, for the background maintenance loop
//! (`retention::run_maintenance`).
//!
//! `Store::compact` folds every device in one go: on a 19,000-device
//! collector the first pass (10 minutes after start, ~350,000 log records)
//! kept a blocking thread busy long enough, and wrote enough at once into the
//! next group commit, to stall ingest on a 2-core machine. A slice stages
//! devices' folds (`Store::stage_fold`: chunks, rollups and marker into the
//! series database) until it has done `SliceBudget::devices` devices or
//! `SliceBudget::records` records, flushes the series database once, then
//! removes the folded records (`Store::finish_fold`), and says where the next
//! slice starts; the caller pauses between slices. Reads of the slice's
//! devices wait for it (their stripes' fold locks are held throughout).

use super::compact::CompactStats;
use super::{Result, Store};
use std::collections::BTreeMap;
use std::sync::RwLockWriteGuard;

/// How much one slice may do before it hands back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceBudget {
    pub devices: usize,
    pub records: usize,
}

/// A few hundred milliseconds of CPU on this project's 2-core test machine
/// (a device's records after 10 minutes at 23 s are ~26).
pub const DEFAULT_SLICE_BUDGET: SliceBudget = SliceBudget {
    devices: 500,
    records: 10_000,
};

/// Where a pass starts: before the first log record.
pub fn first_slice() -> Vec<u8> {
    b"l/".to_vec()
}

impl Store {
    /// Folds the devices whose log records come at or after `cursor`, until
    /// the budget is spent. Returns what it did and where the next slice
    /// starts (None: the pass is done). Records written meanwhile for devices
    /// already passed wait for the next pass, as with `compact`.
    pub fn compact_slice(
        &self,
        cursor: &[u8],
        budget: SliceBudget,
    ) -> Result<(CompactStats, Option<Vec<u8>>)> {
        let mut stats = CompactStats::default();
        let mut cursor = cursor.to_vec();
        // The fold locks of the stripes staged so far, held until the
        // slice's records are removed, so no read sees a sample both in a
        // staged chunk and in its record; taken in no particular order, which
        // is safe because no other holder of a fold lock waits for a second.
        let mut held: BTreeMap<usize, RwLockWriteGuard<'_, ()>> = BTreeMap::new();
        let mut staged = Vec::new();
        let mut staged_records = 0;
        let next = loop {
            if stats.devices >= budget.devices || staged_records >= budget.records {
                break Some(cursor);
            }
            let Some(item) = self.telemetry.range(cursor.clone()..).keys().next() else {
                break None;
            };
            let key = item?;
            // A log key: "l/" device "/" 8-byte sequence.
            if !key.starts_with(b"l/") || key.len() < 2 + 1 + 8 {
                break None;
            }
            let device = String::from_utf8_lossy(&key[2..key.len() - 9]).into_owned();
            // Past every record of this device: its prefix with '/' → '0'.
            cursor = [b"l/", device.as_bytes(), b"0"].concat();
            stats.devices += 1;
            let stripe = super::stripe_of(&device);
            held.entry(stripe).or_insert_with(|| {
                self.fold_locks[stripe]
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            });
            match self.stage_fold(&device) {
                Ok(Some(fold)) => {
                    staged_records += fold.records();
                    staged.push(fold);
                }
                Ok(None) => {}
                Err(e) => {
                    stats.failed += 1;
                    tracing::error!(device = %device, error = %e, "folding log records failed");
                }
            }
        };
        // One fsync of the series database for the whole slice (one per
        // device stalled acknowledgements at 19,000 devices), then the
        // records go.
        if !staged.is_empty() {
            self.flush_series()?;
        }
        for fold in staged {
            match self.finish_fold(fold) {
                Ok((records, chunks)) => {
                    stats.records += records;
                    stats.chunks_written += chunks;
                }
                Err(e) => {
                    stats.failed += 1;
                    tracing::error!(error = %e, "removing folded log records failed");
                }
            }
        }
        drop(held);
        Ok((stats, next))
    }
}

/// Adds a slice's figures to the pass's.
pub fn add(total: &mut CompactStats, slice: &CompactStats) {
    total.devices += slice.devices;
    total.records += slice.records;
    total.chunks_written += slice.chunks_written;
    total.failed += slice.failed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StorageOptions;
    use vakt_proto::v1;

    const T0: i64 = 1_767_225_600_000;

    fn report(seq: u64, ts: i64) -> v1::ReportBatch {
        v1::ReportBatch {
            sequence: seq,
            collected_at_unix_ms: ts,
            samples: vec![v1::Sample {
                metric: "cpu".into(),
                attributes: vec![],
                value: seq as f64 / 7.0,
                timestamp_unix_ms: 0,
            }],
            ..Default::default()
        }
    }

    fn cpu(store: &Store, device: &str) -> Vec<(i64, u64)> {
        store
            .raw_samples(device, "cpu", &[], 0, i64::MAX)
            .unwrap()
            .into_iter()
            .flat_map(|(_, _, p)| p)
            .map(|(t, v)| (t, v.to_bits()))
            .collect()
    }

    #[tokio::test]
    async fn slices_fold_everything_a_whole_pass_folds_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_with(&dir.path().join("db"), StorageOptions::with_cache(1 << 20)).unwrap();
        // 23 devices with 1..=23 records each (and ids that share prefixes).
        let devices: Vec<String> = (1..=23).map(|i| format!("d-{i}")).collect();
        for (n, d) in devices.iter().enumerate() {
            for seq in 1..=(n as u64 + 1) {
                store
                    .ingest(d, &report(seq, T0 + seq as i64 * 30_000), 0)
                    .unwrap();
            }
        }
        let before: Vec<_> = devices.iter().map(|d| cpu(&store, d)).collect();
        let budget = SliceBudget {
            devices: 4,
            records: 30,
        };
        let mut total = CompactStats::default();
        let mut cursor = Some(first_slice());
        let mut slices = 0;
        while let Some(c) = cursor {
            let (stats, next) = store.compact_slice(&c, budget).unwrap();
            assert!(stats.devices <= budget.devices, "{stats:?}");
            // A slice stops once over the record budget, after a whole device.
            assert!(stats.records < budget.records + 23, "{stats:?}");
            add(&mut total, &stats);
            cursor = next;
            slices += 1;
        }
        assert_eq!(total.devices, 23);
        assert_eq!(total.records, (1..=23).sum::<usize>());
        assert_eq!(total.failed, 0);
        assert!(slices >= 23 / 4, "{slices} slices");
        assert_eq!(store.telemetry.scan_prefix(b"l/").count(), 0);
        let after: Vec<_> = devices.iter().map(|d| cpu(&store, d)).collect();
        assert_eq!(after, before, "every sample kept, now in chunks");
        // A pass over nothing is one empty slice.
        let (stats, next) = store.compact_slice(&first_slice(), budget).unwrap();
        assert_eq!((stats.devices, next), (0, None));
    }
}
