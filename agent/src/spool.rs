//! Reports the collector has not acknowledged yet, one file per batch:
//! `spool/00000000000000000042.pb` holds the prost-encoded `ReportBatch` with
//! sequence 42. A file is complete once it carries its final name (temp file,
//! fsync, rename, fsync dir), and is deleted only when the collector has
//! acknowledged it or the size cap pushes it out.
//!
//! Only names and sizes are kept in memory; contents are read when sent.

use anyhow::Context;
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vakt_proto::v1::ReportBatch;

const SUFFIX: &str = ".pb";

/// What making room in the spool cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Batches deleted unacknowledged.
    pub batches: u64,
    /// The `dropped_reports` those batches were carrying to the collector. A
    /// long outage drops the very batches that announce earlier drops, so these
    /// must be announced again or the collector's count falls short.
    pub carried: u64,
}

impl Dropped {
    /// Reports the collector must now be told about.
    pub fn to_announce(&self) -> u64 {
        self.batches + self.carried
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// sequence → file size
    entries: BTreeMap<u64, u64>,
    total_bytes: u64,
}

fn file_name(sequence: u64) -> String {
    format!("{sequence:020}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&s| s > 0)
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        crate::state::create_dir(dir)?;
        let mut entries = BTreeMap::new();
        let mut total_bytes = 0;
        let listing =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write the agent crashed in the middle of; it was never acknowledged
                // or sent, and the batch it held is lost either way.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(sequence) = parse_name(&name) else {
                tracing::warn!(file = %entry.path().display(), "ignoring unexpected file in spool");
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            entries.insert(sequence, size);
            total_bytes += size;
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            entries,
            total_bytes,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn max_sequence(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
    }

    pub fn min_sequence(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes;
    }

    /// Stores a batch durably. Makes room first by dropping the oldest batches
    /// above `in_flight_upto`; returns what was dropped so the caller can report it.
    ///
    /// Batches up to `in_flight_upto` are on their way on a live stream and
    /// about to be acknowledged: dropping one would count as lost a report the
    /// collector is storing. They may hold the spool over its cap by a window's
    /// worth until their acknowledgement deletes them.
    pub fn push(&mut self, batch: &ReportBatch, in_flight_upto: u64) -> anyhow::Result<Dropped> {
        anyhow::ensure!(
            self.max_sequence().is_none_or(|max| batch.sequence > max),
            "spool: sequence {} is not above {:?}",
            batch.sequence,
            self.max_sequence()
        );
        let data = batch.encode_to_vec();
        let size = data.len() as u64;
        let mut dropped = Dropped::default();
        // The newest batch is always kept, even when it alone exceeds the cap.
        while self.total_bytes + size > self.max_bytes {
            let Some(oldest) = self.next_sequence_after(in_flight_upto) else {
                break;
            };
            dropped.batches += 1;
            dropped.carried += self.remove_one(oldest)?;
        }
        crate::state::write_atomic(&self.path(batch.sequence), &data, 0o600, true)?;
        self.entries.insert(batch.sequence, size);
        self.total_bytes += size;
        Ok(dropped)
    }

    pub fn contains(&self, sequence: u64) -> bool {
        self.entries.contains_key(&sequence)
    }

    /// How many stored batches have a sequence in `(after, upto]`.
    pub fn count_between(&self, after: u64, upto: u64) -> usize {
        if upto <= after {
            return 0;
        }
        self.entries.range(after + 1..=upto).count()
    }

    pub fn next_sequence_after(&self, after: u64) -> Option<u64> {
        self.entries
            .range(after.saturating_add(1)..)
            .next()
            .map(|(s, _)| *s)
    }

    /// Removes one batch that will never be accepted; returns the drop count
    /// it carried (see [`Dropped::carried`]).
    pub fn remove_one(&mut self, sequence: u64) -> anyhow::Result<u64> {
        let carried = self.carried(sequence);
        self.remove(sequence)?;
        Ok(carried)
    }

    /// The `dropped_reports` a stored batch announces. Read only when a batch
    /// is dropped: a damaged file counts as announcing none.
    fn carried(&self, sequence: u64) -> u64 {
        std::fs::read(self.path(sequence))
            .ok()
            .and_then(|data| ReportBatch::decode(data.as_slice()).ok())
            .map_or(0, |b| b.dropped_reports)
    }

    /// Deletes every batch up to and including `sequence`; returns how many.
    pub fn ack(&mut self, sequence: u64) -> anyhow::Result<usize> {
        let done: Vec<u64> = self.entries.range(..=sequence).map(|(s, _)| *s).collect();
        for s in &done {
            self.remove(*s)?;
        }
        Ok(done.len())
    }

    /// The first stored batch with a sequence above `after`. Files that no longer
    /// decode (disk damage, manual edits) are logged and removed, never fatal.
    pub fn next_after(&mut self, after: u64) -> Option<ReportBatch> {
        loop {
            let sequence = *self.entries.range(after.saturating_add(1)..).next()?.0;
            let path = self.path(sequence);
            let decoded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|data| ReportBatch::decode(&data[..]).map_err(|e| e.to_string()))
                .and_then(|batch| {
                    if batch.sequence == sequence {
                        Ok(batch)
                    } else {
                        Err(format!("holds sequence {}", batch.sequence))
                    }
                });
            match decoded {
                Ok(batch) => return Some(batch),
                Err(reason) => {
                    tracing::warn!(file = %path.display(), "removing unreadable spooled report: {reason}");
                    if let Err(e) = self.remove(sequence) {
                        tracing::warn!("{e:#}");
                        // Forget it anyway, so a file that cannot be deleted is not retried forever.
                        if let Some(size) = self.entries.remove(&sequence) {
                            self.total_bytes = self.total_bytes.saturating_sub(size);
                        }
                    }
                }
            }
        }
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(file_name(sequence))
    }

    fn remove(&mut self, sequence: u64) -> anyhow::Result<()> {
        let path = self.path(sequence);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
        if let Some(size) = self.entries.remove(&sequence) {
            self.total_bytes = self.total_bytes.saturating_sub(size);
        }
        Ok(())
    }
}

/// Spool depth as `status` shows it, without opening the spool for writing.
pub fn depth(dir: &Path) -> (usize, u64) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    listing
        .flatten()
        .filter(|e| parse_name(&e.file_name().to_string_lossy()).is_some())
        .fold((0, 0), |(n, bytes), e| {
            (n + 1, bytes + e.metadata().map(|m| m.len()).unwrap_or(0))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vakt_proto::v1::Sample;

    fn batch(sequence: u64, samples: usize) -> ReportBatch {
        ReportBatch {
            sequence,
            collected_at_unix_ms: vakt_proto::now_unix_ms(),
            samples: (0..samples)
                .map(|i| Sample {
                    metric: "system.uptime".into(),
                    value: i as f64,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn drain(spool: &mut Spool) -> Vec<u64> {
        let mut seen = Vec::new();
        let mut after = 0;
        while let Some(b) = spool.next_after(after) {
            after = b.sequence;
            seen.push(after);
        }
        seen
    }

    #[test]
    fn survives_reopen_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for s in [1, 2, 3, 10, 11] {
            assert_eq!(spool.push(&batch(s, 3), 0).unwrap(), Dropped::default());
        }
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.len(), 5);
        assert_eq!(spool.max_sequence(), Some(11));
        assert_eq!(drain(&mut spool), vec![1, 2, 3, 10, 11]);
        assert_eq!(spool.next_after(3).unwrap().sequence, 10);
        assert_eq!(spool.next_after(3).unwrap().samples.len(), 3);
    }

    #[test]
    fn ack_deletes_up_to_and_including() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for s in 1..=5 {
            spool.push(&batch(s, 1), 0).unwrap();
        }
        assert_eq!(spool.ack(3).unwrap(), 3);
        assert_eq!(spool.ack(3).unwrap(), 0);
        assert_eq!(drain(&mut spool), vec![4, 5]);
        let reopened = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(reopened.len(), 2);
        assert_eq!(reopened.total_bytes(), spool.total_bytes());
    }

    #[test]
    fn cap_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(1, 20).encoded_len() as u64;
        // Room for three batches, not four.
        let mut spool = Spool::open(dir.path(), one * 3 + one / 2).unwrap();
        let mut dropped = 0;
        for s in 1..=5 {
            dropped += spool.push(&batch(s, 20), 0).unwrap().batches;
        }
        assert_eq!(dropped, 2);
        assert_eq!(drain(&mut spool), vec![3, 4, 5]);
        assert!(spool.total_bytes() <= one * 3 + one / 2);
    }

    #[test]
    fn dropping_a_batch_hands_back_the_drops_it_announced() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(1, 20).encoded_len() as u64;
        let mut spool = Spool::open(dir.path(), one * 2 + one / 2).unwrap();
        let announcing = |s: u64, n: u64| ReportBatch {
            dropped_reports: n,
            ..batch(s, 20)
        };
        assert_eq!(spool.push(&announcing(1, 0), 0).unwrap().batches, 0);
        assert_eq!(spool.push(&announcing(2, 7), 0).unwrap().batches, 0);
        let first = spool.push(&announcing(3, 0), 0).unwrap();
        assert_eq!((first.batches, first.carried), (1, 0));
        let second = spool.push(&announcing(4, 1), 0).unwrap();
        // Batch 2 goes, and with it the news of 7 earlier drops.
        assert_eq!((second.batches, second.carried), (1, 7));
        assert_eq!(second.to_announce(), 8);
    }

    #[test]
    fn batches_in_flight_are_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(1, 20).encoded_len() as u64;
        let mut spool = Spool::open(dir.path(), one * 2 + one / 2).unwrap();
        for s in 1..=2 {
            spool.push(&batch(s, 20), 0).unwrap();
        }
        // 1 is on the wire: 2 goes instead.
        assert_eq!(spool.push(&batch(3, 20), 1).unwrap().batches, 1);
        assert_eq!(drain(&mut spool), vec![1, 3]);
        // Everything in flight: over the cap rather than losing a delivered report.
        assert_eq!(spool.push(&batch(4, 20), 3).unwrap().batches, 0);
        assert_eq!(drain(&mut spool), vec![1, 3, 4]);
    }

    #[test]
    fn corrupt_files_are_removed_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(&batch(1, 1), 0).unwrap();
        spool.push(&batch(3, 1), 0).unwrap();
        std::fs::write(dir.path().join(file_name(2)), b"\xff\xff\xff garbage").unwrap();
        // A file named for one sequence but holding another is damage too.
        std::fs::write(dir.path().join(file_name(4)), batch(9, 1).encode_to_vec()).unwrap();
        std::fs::write(dir.path().join(".00000000000000000005.pb.tmp"), b"half").unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(drain(&mut spool), vec![1, 3]);
        assert_eq!(spool.len(), 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn sequences_must_increase() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(&batch(5, 1), 0).unwrap();
        assert!(spool.push(&batch(5, 1), 0).is_err());
        assert!(spool.push(&batch(4, 1), 0).is_err());
    }
}
