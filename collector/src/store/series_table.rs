//! A device's series table: log records name a series by its index here
//! instead of spelling out its id (`metric \x1e key \x1f value ... \0`).
//!
//! Why: the ids were ~3/4 of a record (~1.3 KB for 30 samples), and sled's
//! cost per insert grows with the value (it copies the value into its log
//! buffer and into the leaf it rewrites). Records of ~0.4 KB raised the
//! durable ingest rate by 20–26 % (docs/BENCHMARKS.md, "Series tables").
//!
//! The table under `n/<device>` only grows: index `i` names the same series
//! for as long as the device exists, so a record stays readable whatever is
//! added later. A report that brings a new series writes the table and its
//! record in one atomic sled batch, so no durable record ever names an index
//! the durable table lacks. Readers take the records first and the table
//! after them, which therefore holds every index those records use.
//!
//! Layout of the value: the ids one after the other, each as `len varint`
//! and the bytes, in index order.

use super::gorilla::{CodecError, get_varint, put_varint};
use super::{Result, Store, series};
use std::collections::HashMap;

/// Beyond this many series a device's new series are written inline in each
/// record (as before tables): bounds the table and its memory for a device
/// that invents series without end.
pub const MAX_SERIES: usize = 4096;

/// The write side: series id → index, for the ingest path.
#[derive(Default)]
pub struct SeriesTable {
    index: HashMap<Box<[u8]>, u32>,
    /// Entries added since the table was last written to sled.
    unsaved: usize,
}

impl From<SeriesNames> for SeriesTable {
    fn from(names: SeriesNames) -> Self {
        let index = names
            .0
            .into_iter()
            .zip(0u32..)
            .map(|(id, i)| (id.into_boxed_slice(), i))
            .collect();
        Self { index, unsaved: 0 }
    }
}

impl SeriesTable {
    /// The index of `id`, added when new; `None` once the table is full.
    pub fn index_of(&mut self, id: &[u8]) -> Option<u32> {
        if let Some(&i) = self.index.get(id) {
            return Some(i);
        }
        if self.index.len() >= MAX_SERIES {
            return None;
        }
        let i = u32::try_from(self.index.len()).ok()?;
        self.index.insert(id.into(), i);
        self.unsaved += 1;
        Some(i)
    }

    /// A table with no room left: records encoded with it spell out their
    /// series ids, as records written before tables did.
    #[cfg(test)]
    pub fn full() -> Self {
        let mut table = Self::default();
        for i in 0..MAX_SERIES {
            table.index_of(format!("test.full.{i}\x1e\0").as_bytes());
        }
        table
    }

    /// Whether entries were added since the table was last saved.
    pub fn changed(&self) -> bool {
        self.unsaved > 0
    }

    /// Called once the encoded table is applied to sled.
    pub fn saved(&mut self) {
        self.unsaved = 0;
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<(&[u8], u32)> = self.index.iter().map(|(k, &i)| (&**k, i)).collect();
        ids.sort_unstable_by_key(|&(_, i)| i);
        let mut out = Vec::with_capacity(ids.iter().map(|(id, _)| id.len() + 1).sum());
        for (id, _) in ids {
            put_varint(&mut out, id.len() as u64);
            out.extend_from_slice(id);
        }
        out
    }
}

/// The read side: index → series id, for decoding records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SeriesNames(Vec<Vec<u8>>);

impl SeriesNames {
    pub fn decode(mut bytes: &[u8]) -> Result<Self, CodecError> {
        let input = &mut bytes;
        let mut ids = Vec::new();
        while !input.is_empty() {
            let len = usize::try_from(get_varint(input)?).map_err(|_| CodecError::Truncated)?;
            if input.len() < len {
                return Err(CodecError::Truncated);
            }
            let (id, rest) = input.split_at(len);
            ids.push(id.to_vec());
            *input = rest;
        }
        Ok(Self(ids))
    }

    pub fn get(&self, index: u64) -> Option<&[u8]> {
        self.0.get(usize::try_from(index).ok()?).map(Vec::as_slice)
    }
}

impl Store {
    pub(super) fn stored_series_table(&self, device_id: &str) -> Result<SeriesTable> {
        self.series_names(device_id).map(SeriesTable::from)
    }

    pub(super) fn series_names(&self, device_id: &str) -> Result<SeriesNames> {
        let key = series::table_key(device_id);
        match self.telemetry.get(&key)? {
            Some(bytes) => {
                SeriesNames::decode(&bytes).map_err(|e| super::compact::corrupt(&key, e))
            }
            None => Ok(SeriesNames::default()),
        }
    }

    /// A device's log records (key, value), oldest first, and its series
    /// table to decode them: read AFTER the records, so it holds every index
    /// they name; not read at all when there are none (fleet queries look at
    /// every device's records, most of which are folded).
    pub(super) fn logged_records(
        &self,
        device_id: &str,
    ) -> Result<(Vec<(sled::IVec, sled::IVec)>, SeriesNames)> {
        let records = self
            .telemetry
            .scan_prefix(series::log_prefix(device_id))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let names = if records.is_empty() {
            SeriesNames::default()
        } else {
            self.series_names(device_id)?
        };
        Ok((records, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_stable_and_round_trip() {
        let mut table = SeriesTable::default();
        assert_eq!(table.index_of(b"a\x1e\0"), Some(0));
        assert_eq!(table.index_of(b"b\x1e\0"), Some(1));
        assert_eq!(table.index_of(b"a\x1e\0"), Some(0));
        assert!(table.changed());
        let bytes = table.encode();
        let names = SeriesNames::decode(&bytes).unwrap();
        assert_eq!(names.get(0), Some(&b"a\x1e\0"[..]));
        assert_eq!(names.get(1), Some(&b"b\x1e\0"[..]));
        assert_eq!(names.get(2), None);
        let mut again = SeriesTable::from(SeriesNames::decode(&bytes).unwrap());
        assert!(!again.changed());
        assert_eq!(again.index_of(b"b\x1e\0"), Some(1));
        assert_eq!(again.index_of(b"c\x1e\0"), Some(2));
    }

    #[test]
    fn a_full_table_adds_nothing() {
        let mut table = SeriesTable::default();
        for i in 0..MAX_SERIES {
            assert!(table.index_of(format!("m{i}\x1e\0").as_bytes()).is_some());
        }
        assert_eq!(table.index_of(b"one-more\x1e\0"), None);
        assert_eq!(table.index_of(b"m7\x1e\0"), Some(7));
    }

    #[test]
    fn a_truncated_table_is_an_error_not_a_panic() {
        let mut table = SeriesTable::default();
        table.index_of(b"system.cpu.utilization\x1e\0");
        let bytes = table.encode();
        for n in 1..bytes.len() {
            assert!(SeriesNames::decode(&bytes[..n]).is_err());
        }
    }
}
