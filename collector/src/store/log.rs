//! The per-report log record: a batch's samples, compactly encoded, written
//! in the same atomic sled batch as the device's ingest state so that the
//! acknowledgement never waits for a chunk rewrite. The compactor folds
//! records into chunks later (`compact.rs`).
//!
//! Layout: `batch_ts zigzag-varint`, then groups of consecutive samples of
//! one series: `len varint`, series id (`series::series_id`), `count
//! varint`, and per sample `ts - batch_ts` (zigzag varint) and the value
//! (8 bytes, little-endian). Agents send a series' samples together, so a
//! group is usually one series per report.

use super::gorilla::{CodecError, get_varint, put_varint};
use super::series;
use vakt_proto::v1;

/// One series' samples from a log record, in the order they were sent.
pub type Group = (Vec<u8>, Vec<(i64, f64)>);

pub fn encode(batch: &v1::ReportBatch) -> Vec<u8> {
    encode_many(std::slice::from_ref(batch))
}

/// One record holding the samples of several reports of one device (a
/// stream's group of waiting batches, stored with one sled key): their
/// groups one after the other, timestamps relative to the first batch's, so
/// `decode` reads it like a single report's record.
pub fn encode_many<'a>(batches: impl IntoIterator<Item = &'a v1::ReportBatch> + Clone) -> Vec<u8> {
    let mut batches_iter = batches.clone().into_iter();
    let Some(first) = batches_iter.next() else {
        return Vec::new();
    };
    let batch_ts = first.collected_at_unix_ms;
    let total: usize = batches.clone().into_iter().map(|b| b.samples.len()).sum();
    let mut out = Vec::with_capacity(16 + total * 64);
    put_varint(&mut out, zigzag(batch_ts));
    for batch in batches {
        encode_samples(&mut out, batch_ts, batch);
    }
    out
}

fn encode_samples(out: &mut Vec<u8>, base_ts: i64, batch: &v1::ReportBatch) {
    let mut i = 0;
    while i < batch.samples.len() {
        let first = &batch.samples[i];
        let same = batch.samples[i..]
            .iter()
            .take_while(|s| s.metric == first.metric && s.attributes == first.attributes)
            .count();
        put_series_id(out, first);
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

/// `len varint` and `series::series_id` of a sample's series, written in
/// place (no intermediate allocation when its attributes are already in key
/// order, as agents send them).
fn put_series_id(out: &mut Vec<u8>, sample: &v1::Sample) {
    let attrs = &sample.attributes;
    if !attrs.windows(2).all(|w| w[0].key <= w[1].key) {
        let id = series::series_id(&sample.metric, attrs);
        put_varint(out, id.len() as u64);
        out.extend_from_slice(&id);
        return;
    }
    let len = sample.metric.len()
        + 2
        + attrs
            .iter()
            .map(|a| a.key.len() + a.value.len() + 1)
            .sum::<usize>()
        + attrs.len().saturating_sub(1);
    put_varint(out, len as u64);
    let start = out.len();
    series::write_series_id(out, &sample.metric, attrs.iter());
    debug_assert_eq!(out.len() - start, len);
}

pub fn decode(mut bytes: &[u8]) -> Result<Vec<Group>, CodecError> {
    let input = &mut bytes;
    let batch_ts = unzigzag(get_varint(input)?);
    let mut groups = Vec::new();
    while !input.is_empty() {
        let len = usize::try_from(get_varint(input)?).map_err(|_| CodecError::Truncated)?;
        let id = take(input, len)?.to_vec();
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
        let groups = decode(&encode(&batch)).unwrap();
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
        let groups = decode(&encode_many([&a, &b, &unsorted])).unwrap();
        let m = series::series_id("m", &a.samples[0].attributes);
        assert_eq!(groups[0], (m.clone(), vec![(1_000_000, 1.0)]));
        assert_eq!(groups[1].1, vec![(999_000, 2.0)]);
        assert_eq!(groups[2], (m, vec![(1_030_000, 3.0)]));
        let sorted = series::series_id("m", &unsorted.samples[0].attributes);
        assert_eq!(groups[3], (sorted, vec![(1_060_000, 4.0)]));
        assert_eq!(decode(&encode(&a)).unwrap(), groups[..2].to_vec());
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let batch = v1::ReportBatch {
            collected_at_unix_ms: 5,
            samples: vec![sample("a", None, 0, 1.0)],
            ..Default::default()
        };
        let bytes = encode(&batch);
        for n in 0..bytes.len() {
            let _ = decode(&bytes[..n]);
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
