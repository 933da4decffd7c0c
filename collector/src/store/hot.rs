//! Hot ingest state: each device's `IngestState`, kept in memory
//! write-through, so storing a report reads no sled key and decodes no JSON.
//!
//! sled stays the truth: an entry is loaded from it on first use and replaced
//! only after the batch that wrote the new state was applied, so the cache
//! never holds a state sled lacks. Code that changes a stored state outside
//! `Store::ingest` (enrollment) calls `Store::forget_ingest_state`. One
//! `HotStates` lives inside each ingest lock stripe; a stripe that outgrows
//! `MAX_PER_STRIPE` starts over, which bounds memory for any fleet size.
//!
//! The entry also holds the device's series table (`series_table.rs`),
//! loaded on the first report that needs it, under the same rules.

use super::series_table::SeriesTable;
use super::{IngestState, Result};
use std::collections::HashMap;

/// Devices cached per stripe (64 stripes: ~260k devices). A state takes
/// ~0.2 KiB, a table ~2.5 KiB for 30 series: ~0.7 GiB at most; the 19,000
/// devices one collector holds on our test machine peaked ~75 MiB higher
/// with tables than without (docs/BENCHMARKS.md, "Fleet scale").
const MAX_PER_STRIPE: usize = 4096;

#[derive(Default)]
pub(super) struct HotStates {
    states: HashMap<String, Hot>,
}

/// One device's cached ingest state and, once loaded, its series table.
pub(super) struct Hot {
    pub state: IngestState,
    pub table: Option<SeriesTable>,
}

impl HotStates {
    pub(super) fn get_or_load(
        &mut self,
        device_id: &str,
        load: impl FnOnce() -> Result<IngestState>,
    ) -> Result<&mut Hot> {
        if !self.states.contains_key(device_id) {
            let state = load()?;
            if self.states.len() >= MAX_PER_STRIPE {
                self.states.clear();
            }
            self.states
                .insert(device_id.to_owned(), Hot { state, table: None });
        }
        // Inserted just above when missing.
        self.states
            .get_mut(device_id)
            .ok_or_else(|| super::StoreError::Corrupt {
                key: device_id.to_owned(),
                reason: "ingest state cache lost an entry".into(),
            })
    }

    pub(super) fn forget(&mut self, device_id: &str) {
        self.states.remove(device_id);
    }

    /// After a failed write: the cached table may hold series that sled
    /// lacks, so it is read again on next use.
    pub(super) fn forget_table(&mut self, device_id: &str) {
        if let Some(entry) = self.states.get_mut(device_id) {
            entry.table = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_once_and_forgets_on_request() {
        let mut hot = HotStates::default();
        let mut loads = 0;
        for _ in 0..3 {
            let state = hot
                .get_or_load("d-1", || {
                    loads += 1;
                    Ok(IngestState::default())
                })
                .unwrap();
            state.state.last_sequence += 1;
        }
        assert_eq!(loads, 1);
        assert_eq!(
            hot.get_or_load("d-1", || unreachable!())
                .unwrap()
                .state
                .last_sequence,
            3
        );
        hot.forget("d-1");
        let fresh = hot
            .get_or_load("d-1", || Ok(IngestState::default()))
            .unwrap();
        assert_eq!(fresh.state.last_sequence, 0);
    }

    #[test]
    fn a_full_stripe_starts_over() {
        let mut hot = HotStates::default();
        for i in 0..MAX_PER_STRIPE + 1 {
            hot.get_or_load(&format!("d-{i}"), || Ok(IngestState::default()))
                .unwrap();
        }
        assert_eq!(hot.states.len(), 1);
    }
}
