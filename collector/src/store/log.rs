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
    let batch_ts = batch.collected_at_unix_ms;
    let mut out = Vec::with_capacity(64 + batch.samples.len() * 48);
    put_varint(&mut out, zigzag(batch_ts));
    let mut i = 0;
    while i < batch.samples.len() {
        let first = &batch.samples[i];
        let same = batch.samples[i..]
            .iter()
            .take_while(|s| s.metric == first.metric && s.attributes == first.attributes)
            .count();
        let id = series::series_id(&first.metric, &first.attributes);
        put_varint(&mut out, id.len() as u64);
        out.extend_from_slice(&id);
        put_varint(&mut out, same as u64);
        for sample in &batch.samples[i..i + same] {
            let ts = if sample.timestamp_unix_ms == 0 {
                batch_ts
            } else {
                sample.timestamp_unix_ms
            };
            put_varint(&mut out, zigzag(ts.wrapping_sub(batch_ts)));
            out.extend_from_slice(&sample.value.to_le_bytes());
        }
        i += same;
    }
    out
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
