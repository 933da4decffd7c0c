//! Key layout of the `telemetry` tree, where everything one report writes
//! lands in a single atomic sled batch:
//!
//! - `s/<device>`                 → the device's ingest state (JSON)
//! - `i/<device>`                 → its current inventory (protobuf)
//! - `m/<device>/<series>\0<ts>`  → one sample value (f64, big-endian)
//!
//! `<series>` is the metric name, then each attribute sorted by key as
//! `\x1e key \x1f value`. Validation refuses control characters in names and
//! values, so the separators are unambiguous and `\0` ends every series key;
//! `<ts>` is big-endian milliseconds, so a series' samples are in time order
//! and a time range is one sled range scan.

use vakt_proto::v1;

const RECORD_SEP: u8 = 0x1e;
const UNIT_SEP: u8 = 0x1f;

pub fn state_key(device_id: &str) -> Vec<u8> {
    [b"s/", device_id.as_bytes()].concat()
}

pub fn inventory_key(device_id: &str) -> Vec<u8> {
    [b"i/", device_id.as_bytes()].concat()
}

/// Prefix of every sample of one metric of one device.
pub fn metric_prefix(device_id: &str, metric: &str) -> Vec<u8> {
    let mut key = [b"m/", device_id.as_bytes(), b"/", metric.as_bytes()].concat();
    key.push(RECORD_SEP);
    key
}

/// Prefix of every sample of one device.
pub fn device_samples_prefix(device_id: &str) -> Vec<u8> {
    [b"m/", device_id.as_bytes(), b"/"].concat()
}

/// The series part of a sample key, up to and including the `\0`.
pub fn series_key(device_id: &str, metric: &str, attributes: &[v1::Attribute]) -> Vec<u8> {
    let mut key = metric_prefix(device_id, metric);
    let mut sorted: Vec<&v1::Attribute> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, attr) in sorted.iter().enumerate() {
        if i > 0 {
            key.push(RECORD_SEP);
        }
        key.extend_from_slice(attr.key.as_bytes());
        key.push(UNIT_SEP);
        key.extend_from_slice(attr.value.as_bytes());
    }
    key.push(0);
    key
}

pub fn sample_key(series: &[u8], timestamp_ms: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(series.len() + 8);
    key.extend_from_slice(series);
    key.extend_from_slice(&timestamp_bytes(timestamp_ms));
    key
}

/// Validation keeps timestamps positive; clamp anyway so a negative one can
/// never wrap into the far future.
pub fn timestamp_bytes(timestamp_ms: i64) -> [u8; 8] {
    u64::try_from(timestamp_ms).unwrap_or(0).to_be_bytes()
}

/// The attributes encoded in a series key (the part after the metric prefix,
/// without the trailing `\0`).
pub fn decode_attributes(encoded: &[u8]) -> Vec<v1::Attribute> {
    if encoded.is_empty() {
        return Vec::new();
    }
    encoded
        .split(|b| *b == RECORD_SEP)
        .filter_map(|pair| {
            let at = pair.iter().position(|b| *b == UNIT_SEP)?;
            Some(v1::Attribute {
                key: String::from_utf8_lossy(&pair[..at]).into_owned(),
                value: String::from_utf8_lossy(&pair[at + 1..]).into_owned(),
            })
        })
        .collect()
}

pub fn decode_timestamp(bytes: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    i64::try_from(u64::from_be_bytes(arr)).ok()
}

pub fn decode_value(bytes: &[u8]) -> Option<f64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    Some(f64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(k: &str, v: &str) -> v1::Attribute {
        v1::Attribute {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn attributes_round_trip_in_key_order() {
        let key = series_key("d-1", "m", &[attr("b", "2=,}"), attr("a", "1")]);
        let prefix = metric_prefix("d-1", "m");
        let encoded = &key[prefix.len()..key.len() - 1];
        assert_eq!(
            decode_attributes(encoded),
            vec![attr("a", "1"), attr("b", "2=,}")]
        );
    }

    #[test]
    fn a_metric_prefix_does_not_match_a_longer_metric_name() {
        let longer = series_key("d-1", "system.cpu.utilization2", &[]);
        assert!(!longer.starts_with(&metric_prefix("d-1", "system.cpu.utilization")));
    }
}
