//! The per-report log record: a batch's samples, compactly encoded, so that
//! the acknowledgement never waits for a chunk rewrite. The compactor folds
//! records into chunks later (`compact.rs`).
//!
//! A record also carries the device's ingest state after it: storing a
//! report is then ONE sled `insert`, atomic by itself. An atomic multi-key
//! `apply_batch` takes sled's global lock exclusively and so waits for every
//! flush in progress, blocking the tokio worker; that wait cost ~1/3 of the
//! durable ingest rate (docs/BENCHMARKS.md). `s/<device>` is brought up to
//! date when the records are folded; until then the newest record is the
//! truth (`Store::stored_state`).
//!
//! Layout: `0x00` (`WITH_STATE`), `len varint` and the state
//! (`encode_state`), then the body: `batch_ts zigzag-varint`, then groups of
//! consecutive samples of one series: the series, `count varint`, and per
//! sample `ts - batch_ts` (zigzag varint) and the value (8 bytes,
//! little-endian). Agents send a series' samples together, so a group is
//! usually one series per report. The series is `0` and its index in the
//! device's series table (`series_table.rs`), or, when the table is full
//! (and in records written before tables), `len varint` and the series id
//! (`series::series_id`), which is never empty.

use super::IngestState;
use super::gorilla::{CodecError, get_varint, put_varint};
use super::series;
use super::series_table::{SeriesNames, SeriesTable};
use vakt_proto::v1;

/// One series' samples from a log record, in the order they were sent.
pub type Group = (Vec<u8>, Vec<(i64, f64)>);

/// First byte of a record that carries an ingest state. Records written
/// before states moved into them start with the body's `batch_ts` varint,
/// whose first byte is 0 only for a batch time of 0, which validation
/// refuses (older than 400 days).
const WITH_STATE: u8 = 0;

pub fn encode(state: &IngestState, batch: &v1::ReportBatch, table: &mut SeriesTable) -> Vec<u8> {
    encode_many(state, std::slice::from_ref(batch), table)
}

/// One record holding the samples of several reports of one device (a
/// stream's group of waiting batches, stored with one sled key) and the
/// device's state after them: their groups one after the other, timestamps
/// relative to the first batch's, so `decode` reads it like a single
/// report's record. Batches without samples add nothing but the state.
/// Series new to `table` are added to it: the caller must then store the
/// table with the record (`SeriesTable::changed`).
pub fn encode_many<'a>(
    state: &IngestState,
    batches: impl IntoIterator<Item = &'a v1::ReportBatch> + Clone,
    table: &mut SeriesTable,
) -> Vec<u8> {
    let batch_ts = batches
        .clone()
        .into_iter()
        .next()
        .map_or(state.last_collected_ms, |b| b.collected_at_unix_ms);
    let total: usize = batches.clone().into_iter().map(|b| b.samples.len()).sum();
    let mut out = Vec::with_capacity(64 + state.hostname.len() + total * 16);
    out.push(WITH_STATE);
    let mut encoded_state = Vec::with_capacity(48 + state.hostname.len());
    encode_state(&mut encoded_state, state);
    put_varint(&mut out, encoded_state.len() as u64);
    out.extend_from_slice(&encoded_state);
    put_varint(&mut out, zigzag(batch_ts));
    for batch in batches {
        encode_samples(&mut out, batch_ts, batch, table);
    }
    out
}

fn encode_samples(
    out: &mut Vec<u8>,
    base_ts: i64,
    batch: &v1::ReportBatch,
    table: &mut SeriesTable,
) {
    let mut i = 0;
    while i < batch.samples.len() {
        let first = &batch.samples[i];
        let same = batch.samples[i..]
            .iter()
            .take_while(|s| s.metric == first.metric && s.attributes == first.attributes)
            .count();
        put_series(out, first, table);
        put_varint(out, same as u64);
        for sample in &batch.samples[i..i + same] {
            let ts = if sample.timestamp_unix_ms == 0 {
                batch.collected_at_unix_ms
            } else {
                sample.timestamp_unix_ms
            };
            put_varint(out, zigzag(ts.wrapping_sub(base_ts)));
            out.extend_from_slice(&sample.value.to_le_bytes());
        }
        i += same;
    }
}

/// A sample's series: `0` and its index in `table`, or (table full) `len
/// varint` and its id. The id is built in place, without an allocation when
/// the attributes are already in key order, as agents send them.
fn put_series(out: &mut Vec<u8>, sample: &v1::Sample, table: &mut SeriesTable) {
    let attrs = &sample.attributes;
    let start = out.len();
    if attrs.windows(2).all(|w| w[0].key <= w[1].key) {
        series::write_series_id(out, &sample.metric, attrs.iter());
    } else {
        out.extend_from_slice(&series::series_id(&sample.metric, attrs));
    }
    match table.index_of(&out[start..]) {
        Some(index) => {
            out.truncate(start);
            out.push(0);
            put_varint(out, u64::from(index));
        }
        None => {
            let id = out.split_off(start);
            put_varint(out, id.len() as u64);
            out.extend_from_slice(&id);
        }
    }
}

/// The ingest state a record carries; `None` for a record written before
/// records carried states.
pub fn decode_state(mut bytes: &[u8]) -> Result<Option<IngestState>, CodecError> {
    let input = &mut bytes;
    let Some(mut fields) = take_state(input)? else {
        return Ok(None);
    };
    decode_state_fields(&mut fields).map(Some)
}

/// Splits off the encoded state (when the record has one), leaving the body.
fn take_state<'a>(input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, CodecError> {
    if input.first() != Some(&WITH_STATE) {
        return Ok(None);
    }
    *input = &input[1..];
    let len = usize::try_from(get_varint(input)?).map_err(|_| CodecError::Truncated)?;
    take(input, len).map(Some)
}

/// The state's fields in a fixed order, integers as varints (signed ones
/// zigzagged), then the hostname and inventory hash with their lengths.
fn encode_state(out: &mut Vec<u8>, state: &IngestState) {
    put_varint(out, state.last_sequence);
    put_varint(out, zigzag(state.last_seen_ms));
    put_varint(out, zigzag(i64::from(state.last_event)));
    put_varint(out, zigzag(state.last_event_ms));
    put_varint(out, state.dropped_reports_total);
    put_varint(out, zigzag(state.last_collected_ms));
    put_varint(out, u64::from(state.generation));
    put_varint(out, state.hostname.len() as u64);
    out.extend_from_slice(state.hostname.as_bytes());
    put_varint(out, state.inventory_hash.len() as u64);
    out.extend_from_slice(&state.inventory_hash);
}

fn decode_state_fields(input: &mut &[u8]) -> Result<IngestState, CodecError> {
    let last_sequence = get_varint(input)?;
    let last_seen_ms = unzigzag(get_varint(input)?);
    let last_event =
        i32::try_from(unzigzag(get_varint(input)?)).map_err(|_| CodecError::Truncated)?;
    let last_event_ms = unzigzag(get_varint(input)?);
    let dropped_reports_total = get_varint(input)?;
    let last_collected_ms = unzigzag(get_varint(input)?);
    let generation = u32::try_from(get_varint(input)?).map_err(|_| CodecError::Truncated)?;
    let len = usize::try_from(get_varint(input)?).map_err(|_| CodecError::Truncated)?;
    // Validation refuses hostnames that are not UTF-8 long before they get here.
    let hostname = String::from_utf8_lossy(take(input, len)?).into_owned();
    let len = usize::try_from(get_varint(input)?).map_err(|_| CodecError::Truncated)?;
    let inventory_hash = take(input, len)?.to_vec();
    Ok(IngestState {
        last_sequence,
        last_seen_ms,
        last_event,
        last_event_ms,
        hostname,
        inventory_hash,
        dropped_reports_total,
        last_collected_ms,
        generation,
    })
}

/// A record's samples, grouped by series (its state, if any, is skipped);
/// `names` is the device's series table, read after the record.
pub fn decode(mut bytes: &[u8], names: &SeriesNames) -> Result<Vec<Group>, CodecError> {
    let input = &mut bytes;
    take_state(input)?;
    let batch_ts = unzigzag(get_varint(input)?);
    let mut groups = Vec::new();
    while !input.is_empty() {
        let len = usize::try_from(get_varint(input)?).map_err(|_| CodecError::Truncated)?;
        let id = if len == 0 {
            let index = get_varint(input)?;
            names
                .get(index)
                .ok_or(CodecError::UnknownSeries(index))?
                .to_vec()
        } else {
            take(input, len)?.to_vec()
        };
        let count = get_varint(input)?;
        // Each sample takes at least 9 bytes: refuse counts the input cannot hold.
        if count > (input.len() / 9) as u64 {
            return Err(CodecError::Truncated);
        }
        let mut samples = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let ts = batch_ts.wrapping_add(unzigzag(get_varint(input)?));
            let raw: [u8; 8] = take(input, 8)?
                .try_into()
                .map_err(|_| CodecError::Truncated)?;
            samples.push((ts, f64::from_le_bytes(raw)));
        }
        groups.push((id, samples));
    }
    Ok(groups)
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], CodecError> {
    if input.len() < n {
        return Err(CodecError::Truncated);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record encoded with a fresh series table, and that table as a
    /// reader loads it.
    fn encoded(state: &IngestState, batches: &[&v1::ReportBatch]) -> (Vec<u8>, SeriesNames) {
        let mut table = SeriesTable::default();
        let record = encode_many(state, batches.iter().copied(), &mut table);
        (record, SeriesNames::decode(&table.encode()).unwrap())
    }

    fn sample(metric: &str, attr: Option<(&str, &str)>, ts: i64, value: f64) -> v1::Sample {
        v1::Sample {
            metric: metric.into(),
            attributes: attr
                .map(|(k, v)| {
                    vec![v1::Attribute {
                        key: k.into(),
                        value: v.into(),
                    }]
                })
                .unwrap_or_default(),
            value,
            timestamp_unix_ms: ts,
        }
    }

    #[test]
    fn a_batch_round_trips_grouped_by_series() {
        let batch = v1::ReportBatch {
            collected_at_unix_ms: 1_000_000,
            samples: vec![
                sample("a", None, 0, 1.5),
                sample("a", None, 999_000, -0.0),
                sample("b", Some(("k", "v")), 0, 7.0),
                sample("a", None, 1_000_500, 2.0),
            ],
            ..Default::default()
        };
        let (record, names) = encoded(&IngestState::default(), &[&batch]);
        let groups = decode(&record, &names).unwrap();
        let a = series::series_id("a", &[]);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].0, a);
        assert_eq!(groups[0].1, vec![(1_000_000, 1.5), (999_000, -0.0)]);
        assert_eq!(groups[1].1, vec![(1_000_000, 7.0)]);
        assert_eq!(groups[2], (a, vec![(1_000_500, 2.0)]));
    }

    #[test]
    fn several_batches_in_one_record_decode_like_their_samples() {
        let a = v1::ReportBatch {
            collected_at_unix_ms: 1_000_000,
            samples: vec![
                sample("m", Some(("k", "v")), 0, 1.0),
                sample("n", None, 999_000, 2.0),
            ],
            ..Default::default()
        };
        let b = v1::ReportBatch {
            collected_at_unix_ms: 1_030_000,
            samples: vec![sample("m", Some(("k", "v")), 0, 3.0)],
            ..Default::default()
        };
        let unsorted = v1::ReportBatch {
            collected_at_unix_ms: 1_060_000,
            samples: vec![v1::Sample {
                attributes: vec![
                    v1::Attribute {
                        key: "z".into(),
                        value: "1".into(),
                    },
                    v1::Attribute {
                        key: "a".into(),
                        value: "2".into(),
                    },
                ],
                ..sample("m", None, 0, 4.0)
            }],
            ..Default::default()
        };
        let (record, names) = encoded(&IngestState::default(), &[&a, &b, &unsorted]);
        let groups = decode(&record, &names).unwrap();
        let m = series::series_id("m", &a.samples[0].attributes);
        assert_eq!(groups[0], (m.clone(), vec![(1_000_000, 1.0)]));
        assert_eq!(groups[1].1, vec![(999_000, 2.0)]);
        assert_eq!(groups[2], (m, vec![(1_030_000, 3.0)]));
        let sorted = series::series_id("m", &unsorted.samples[0].attributes);
        assert_eq!(groups[3], (sorted, vec![(1_060_000, 4.0)]));
        assert_eq!(
            {
                let (record, names) = encoded(&IngestState::default(), &[&a]);
                decode(&record, &names).unwrap()
            },
            groups[..2].to_vec()
        );
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let batch = v1::ReportBatch {
            collected_at_unix_ms: 5,
            samples: vec![sample("a", None, 0, 1.0)],
            ..Default::default()
        };
        let (bytes, names) = encoded(&IngestState::default(), &[&batch]);
        for n in 0..bytes.len() {
            let _ = decode(&bytes[..n], &names);
        }
        assert!(decode(&bytes[..bytes.len() - 1], &names).is_err());
    }

    fn state() -> IngestState {
        IngestState {
            last_sequence: 41,
            last_seen_ms: 1_800_000_000_000,
            last_event: 3,
            last_event_ms: -5,
            hostname: "kiosk-ü-7".into(),
            inventory_hash: vec![0, 1, 0xff],
            dropped_reports_total: u64::MAX,
            last_collected_ms: 1_799_999_999_000,
            generation: 2,
        }
    }

    #[test]
    fn a_record_carries_the_state_after_it() {
        let batch = v1::ReportBatch {
            collected_at_unix_ms: 1_799_999_999_000,
            samples: vec![sample("a", None, 0, 1.5)],
            ..Default::default()
        };
        let (record, names) = encoded(&state(), &[&batch]);
        assert_eq!(decode_state(&record).unwrap(), Some(state()));
        assert_eq!(
            decode(&record, &names).unwrap()[0].1,
            vec![(1_799_999_999_000, 1.5)]
        );
        // A group of reports without samples still stores its state.
        let (empty, names) = encoded(&state(), &[]);
        assert_eq!(decode_state(&empty).unwrap(), Some(state()));
        assert!(decode(&empty, &names).unwrap().is_empty());
        for n in 0..record.len() {
            let _ = decode_state(&record[..n]);
        }
    }

    #[test]
    fn records_written_before_states_moved_into_them_still_decode() {
        let batch = v1::ReportBatch {
            collected_at_unix_ms: 1_799_999_999_000,
            samples: vec![sample("a", None, 0, 1.5)],
            ..Default::default()
        };
        let (record, names) = encoded(&state(), &[&batch]);
        let mut body = record.as_slice();
        take_state(&mut body).unwrap();
        assert_ne!(body[0], WITH_STATE);
        assert_eq!(decode_state(body).unwrap(), None);
        assert_eq!(
            decode(body, &names).unwrap(),
            decode(&record, &names).unwrap()
        );
    }

    #[test]
    fn series_are_named_by_index_and_inline_once_the_table_is_full() {
        let batch = v1::ReportBatch {
            collected_at_unix_ms: 1_000_000,
            samples: vec![
                sample("system.cpu.utilization", None, 0, 0.5),
                sample(
                    "system.filesystem.utilization",
                    Some(("mountpoint", "/")),
                    0,
                    0.7,
                ),
            ],
            ..Default::default()
        };
        let mut table = SeriesTable::default();
        let by_index = encode(&IngestState::default(), &batch, &mut table);
        let names = SeriesNames::decode(&table.encode()).unwrap();
        // A full table: the same samples, their ids written out.
        let mut full = SeriesTable::full();
        let inline = encode(&IngestState::default(), &batch, &mut full);
        assert!(by_index.len() + 40 < inline.len());
        let full_names = SeriesNames::decode(&full.encode()).unwrap();
        assert_eq!(
            decode(&by_index, &names).unwrap(),
            decode(&inline, &full_names).unwrap()
        );
        // Inline ids need no table at all.
        assert_eq!(
            decode(&inline, &SeriesNames::default()).unwrap(),
            decode(&by_index, &names).unwrap()
        );
    }

    #[test]
    fn an_index_the_table_lacks_is_an_error() {
        let batch = v1::ReportBatch {
            collected_at_unix_ms: 5,
            samples: vec![sample("a", None, 0, 1.0)],
            ..Default::default()
        };
        let (record, _) = encoded(&IngestState::default(), &[&batch]);
        assert!(matches!(
            decode(&record, &SeriesNames::default()),
            Err(CodecError::UnknownSeries(0))
        ));
    }
}
