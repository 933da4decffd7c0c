//! Storing a stream's group of waiting batches at once. Reports that carry
//! only samples, events and counters (nearly all of them) are written as ONE
//! log record (`log::encode_many`, keyed by the group's last sequence) that
//! also carries the device's new ingest state: one sled `insert` per group,
//! instead of a multi-key batch per report. A group with anything else
//! (inventory, software, gateway children) goes through `Store::ingest`
//! batch by batch.
//!
//! The guarantees are those of `ingest`: the stripe lock serializes the
//! device's read-modify-write, every sequence at or below the stored one is a
//! resend (nothing written), and the samples and the new state are one sled
//! value, so after a crash either both or neither exist.

use super::{IngestState, Ingested, ReportStored, Result, Store, log, series};
use vakt_proto::v1;

impl IngestState {
    /// Takes a stored batch into the state: its sequence, when it was seen
    /// and collected, its newest event and its dropped-report count. The one
    /// place both ingest paths (`ingest`, `ingest_group`) advance a device.
    pub(super) fn advance(&mut self, batch: &v1::ReportBatch, now_ms: i64) {
        for event in &batch.events {
            if event.at_unix_ms >= self.last_event_ms {
                self.last_event = event.kind;
                self.last_event_ms = event.at_unix_ms;
            }
        }
        self.last_sequence = batch.sequence;
        self.last_seen_ms = now_ms;
        self.last_collected_ms = batch.collected_at_unix_ms;
        self.dropped_reports_total = self
            .dropped_reports_total
            .saturating_add(batch.dropped_reports);
    }
}

/// Whether a batch needs nothing but the log record and the ingest state.
fn is_plain(batch: &v1::ReportBatch) -> bool {
    batch.inventory.is_none()
        && batch.software.is_none()
        && batch.software_hash.is_empty()
        && batch.children.is_empty()
        && batch.invalid_child_lines == 0
}

impl Store {
    /// Stores validated batches of one device, in order (not yet durable);
    /// one `Ingested` per batch, as `ingest` would have returned them.
    /// Batches are taken by value so that "report stored" events can move
    /// their samples instead of copying them.
    pub fn ingest_group(
        &self,
        device_id: &str,
        mut batches: Vec<v1::ReportBatch>,
        now_ms: i64,
    ) -> Result<Vec<Ingested>> {
        if !batches.iter().all(is_plain) {
            return batches
                .iter()
                .map(|b| self.ingest(device_id, b, now_ms))
                .collect();
        }
        let mut hot = self.lock_ingest(device_id);
        let (cached, table) = self.cached_hot(&mut hot, device_id)?;
        let mut state = cached.clone();
        let mut results = Vec::with_capacity(batches.len());
        let mut fresh = Vec::with_capacity(batches.len());
        for (i, batch) in batches.iter().enumerate() {
            if batch.sequence <= state.last_sequence {
                results.push(Ingested {
                    acked_sequence: state.last_sequence,
                    stored: false,
                    need_inventory: false,
                    clone_suspected: batch.collected_at_unix_ms > state.last_collected_ms,
                    need_full_software: false,
                });
                continue;
            }
            state.advance(batch, now_ms);
            results.push(Ingested {
                acked_sequence: batch.sequence,
                stored: true,
                need_inventory: !batch.inventory_hash.is_empty()
                    && batch.inventory_hash != state.inventory_hash,
                clone_suspected: false,
                need_full_software: false,
            });
            fresh.push(i);
        }
        if fresh.is_empty() {
            return Ok(results);
        }
        // One key, atomic by itself: the group's samples and the state after
        // them. No multi-key batch, so no wait for sled's exclusive lock,
        // except when the group brings series new to the device: the
        // series table must be durable with the first record naming them.
        let key = series::log_key(device_id, state.last_sequence);
        let record = log::encode_many(&state, fresh.iter().map(|&i| &batches[i]), table);
        let written = if table.changed() {
            let mut writes = sled::Batch::default();
            writes.insert(series::table_key(device_id), table.encode());
            writes.insert(key, record);
            self.telemetry.apply_batch(writes)
        } else {
            self.telemetry.insert(key, record).map(drop)
        };
        if let Err(e) = written {
            hot.forget_table(device_id);
            return Err(e.into());
        }
        table.saved();
        *cached = state;
        drop(hot);
        if self.events.wanted() {
            for i in fresh {
                self.events
                    .stored(ReportStored::taken(device_id, &mut batches[i], now_ms));
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(sequence: u64, at_ms: i64, value: f64) -> v1::ReportBatch {
        v1::ReportBatch {
            sequence,
            collected_at_unix_ms: at_ms,
            samples: vec![v1::Sample {
                metric: "system.cpu.utilization".into(),
                value,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn advance_takes_the_newest_event_and_adds_drops() {
        let mut state = IngestState {
            last_event: 1,
            last_event_ms: 500,
            dropped_reports_total: u64::MAX - 1,
            ..Default::default()
        };
        let mut b = batch(7, 900, 1.0);
        b.dropped_reports = 5;
        b.events = vec![
            v1::Event {
                kind: 2,
                at_unix_ms: 400,
                ..Default::default()
            },
            v1::Event {
                kind: 3,
                at_unix_ms: 600,
                ..Default::default()
            },
        ];
        state.advance(&b, 1_000);
        assert_eq!(
            (
                state.last_sequence,
                state.last_seen_ms,
                state.last_collected_ms
            ),
            (7, 1_000, 900)
        );
        // The older event (400 < 500) does not replace the stored one.
        assert_eq!((state.last_event, state.last_event_ms), (3, 600));
        assert_eq!(state.dropped_reports_total, u64::MAX);
    }

    #[tokio::test]
    async fn a_group_is_stored_once_and_resends_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 16 << 20).unwrap();
        let t = 1_800_000_000_000;
        let first = store
            .ingest_group("d-1", vec![batch(1, t, 1.0), batch(2, t + 1, 2.0)], t)
            .unwrap();
        assert_eq!(
            first
                .iter()
                .map(|r| (r.acked_sequence, r.stored))
                .collect::<Vec<_>>(),
            vec![(1, true), (2, true)]
        );
        // One record for the group, keyed by its last sequence.
        let records: Vec<sled::IVec> = store
            .telemetry
            .scan_prefix(series::log_prefix("d-1"))
            .keys()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(records, vec![sled::IVec::from(series::log_key("d-1", 2))]);
        // A reconnecting agent resends 2 and adds 3.
        let again = store
            .ingest_group("d-1", vec![batch(2, t + 1, 2.0), batch(3, t + 2, 3.0)], t)
            .unwrap();
        assert_eq!(
            again
                .iter()
                .map(|r| (r.acked_sequence, r.stored))
                .collect::<Vec<_>>(),
            vec![(2, false), (3, true)]
        );
        assert_eq!(store.ingest_state("d-1").unwrap().last_sequence, 3);
        store.durable().await.unwrap();
        // Every sample once, as written, before and after the compactor
        // folds both records.
        let points = |store: &Store| -> Vec<(i64, f64)> {
            store
                .raw_samples("d-1", "system.cpu.utilization", &[], t - 10, t + 10)
                .unwrap()
                .into_iter()
                .flat_map(|(_, _, p)| p)
                .collect()
        };
        let want = vec![(t, 1.0), (t + 1, 2.0), (t + 2, 3.0)];
        assert_eq!(points(&store), want);
        store.compact().unwrap();
        assert_eq!(store.telemetry.scan_prefix(b"l/").count(), 0);
        assert_eq!(points(&store), want);
        store.close().await.unwrap();
        // The state survives a reopen (the cache is only a copy).
        let store = Store::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(store.ingest_state("d-1").unwrap().last_sequence, 3);
        let resend = store
            .ingest_group("d-1", vec![batch(3, t + 2, 3.0)], t)
            .unwrap();
        assert!(!resend[0].stored);
    }

    #[tokio::test]
    async fn the_newest_record_is_the_state_until_a_fold_moves_it_to_s() {
        let dir = tempfile::tempdir().unwrap();
        let t = 1_800_000_000_000;
        let store = Store::open(dir.path(), 16 << 20).unwrap();
        store
            .ingest_group("d-1", vec![batch(1, t, 1.0), batch(2, t + 1, 2.0)], t + 5)
            .unwrap();
        let mut quiet = batch(3, t + 2, 0.0);
        quiet.samples.clear();
        quiet.dropped_reports = 4;
        store.ingest_group("d-1", vec![quiet], t + 6).unwrap();
        // The report path wrote no `s/`: only the records hold the state.
        assert!(
            store
                .telemetry
                .get(series::state_key("d-1"))
                .unwrap()
                .is_none()
        );
        store.close().await.unwrap();

        let store = Store::open(dir.path(), 16 << 20).unwrap();
        let state = store.ingest_state("d-1").unwrap();
        assert_eq!(
            (
                state.last_sequence,
                state.last_seen_ms,
                state.dropped_reports_total
            ),
            (3, t + 6, 4)
        );
        assert!(
            !store
                .ingest_group("d-1", vec![batch(3, t + 2, 0.0)], t)
                .unwrap()[0]
                .stored
        );
        store.compact().unwrap();
        assert_eq!(store.telemetry.scan_prefix(b"l/").count(), 0);
        let folded: IngestState = super::super::decode_json(
            "d-1",
            &store
                .telemetry
                .get(series::state_key("d-1"))
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(folded, state);
        store.close().await.unwrap();

        let store = Store::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(store.ingest_state("d-1").unwrap(), state);
    }

    #[tokio::test]
    async fn series_tables_grow_with_new_series_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t = 1_800_000_000_000;
        let store = Store::open(dir.path(), 16 << 20).unwrap();
        store
            .ingest_group("d-1", vec![batch(1, t, 1.0)], t)
            .unwrap();
        let table = |store: &Store| store.telemetry.get(series::table_key("d-1")).unwrap();
        let first = table(&store).expect("the first record wrote the table");
        // The same series again: the table is not written again.
        store
            .ingest_group("d-1", vec![batch(2, t + 1, 2.0)], t)
            .unwrap();
        assert_eq!(table(&store), Some(first.clone()));
        store.close().await.unwrap();

        // After a restart the table is read back; a new series extends it
        // and both records (one per table version) decode.
        let store = Store::open(dir.path(), 16 << 20).unwrap();
        let mut disk = batch(3, t + 2, 0.25);
        disk.samples[0].metric = "system.filesystem.utilization".into();
        disk.samples[0].attributes = vec![v1::Attribute {
            key: "mountpoint".into(),
            value: "/".into(),
        }];
        store.ingest_group("d-1", vec![disk], t).unwrap();
        let grown = table(&store).unwrap();
        assert!(grown.starts_with(&first) && grown.len() > first.len());
        let read = |store: &Store, metric: &str| -> Vec<(i64, f64)> {
            store
                .raw_samples("d-1", metric, &[], t - 10, t + 10)
                .unwrap()
                .into_iter()
                .flat_map(|(_, _, p)| p)
                .collect()
        };
        let cpu = vec![(t, 1.0), (t + 1, 2.0)];
        let fs = vec![(t + 2, 0.25)];
        assert_eq!(read(&store, "system.cpu.utilization"), cpu);
        assert_eq!(read(&store, "system.filesystem.utilization"), fs);
        store.compact().unwrap();
        assert_eq!(read(&store, "system.cpu.utilization"), cpu);
        assert_eq!(read(&store, "system.filesystem.utilization"), fs);
    }
}
