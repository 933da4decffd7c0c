//! Key layout of the hot database's `telemetry` tree. A report of samples
//! writes one log record carrying the device's new ingest state; one with an
//! inventory also writes it and `s/`, in one atomic sled batch. The
//! compactor later folds log records into chunks in the series database and
//! then removes them in one batch per device (`compact.rs`), which also
//! brings `s/` up to date.
//!
//! - `s/<device>`                    → the device's ingest state as of the last
//!   fold, enrollment or inventory (JSON); newer in the newest log record
//! - `i/<device>`                    → its current inventory (protobuf)
//! - `l/<device>/<seq>`              → one report's (or stream group's) samples,
//!   not yet folded, and the ingest state after them (`log.rs`)
//! - `n/<device>`                    → the device's series table: the series
//!   ids its log records name by index (`series_table.rs`); only grows
//! - `meta/format`                   → the storage format (`format.rs`)
//!
//! and of the `series` tree in the series database (`mod.rs`), which only
//! the fold and retention write:
//!
//! - `raw/<window><metric>\x1e<device>/<attributes>\0` → a raw chunk: one
//!   series' samples of one window (`WINDOW_MS`), Gorilla-encoded (`gorilla.rs`)
//! - `rollup/<window><metric>\x1e<device>/<attributes>\0` → the same window's
//!   5-minute rollups (min, max, sum, count per bucket), Gorilla-encoded
//! - `folded/<device>` → which log records the device's last fold took
//!   (`compact.rs`)
//! - `meta/horizon/wc/`, `meta/horizon/wr/` → how far retention has deleted
//!   raw chunks and rollups (big-endian ms): a query reads raw samples only
//!   for ranges after the raw horizon
//!
//! A series id (`<series>`) is the metric name, then each attribute sorted
//! by key as `\x1e key \x1f value`, then `\0`. Validation refuses control
//! characters in names and values, so the separators are unambiguous;
//! `<window>` and `<seq>` are big-endian.
//!
//! Chunks and rollups are keyed **time first** (format 3, `format.rs`): a
//! sealed window's keys sit together and are never written again, a fold
//! rewrites only the newest windows' leaves, and retention deletes one
//! contiguous key range. Keyed device first (formats 1–2: `c/<device>/…`,
//! `r/<device>/…` plus a `wc/ wr/` time index), every window added a key to
//! every device's leaves all over the tree, and sled's log-structured file
//! kept segments with a little live data in each: it grew ~6× faster than
//! the data (docs/BENCHMARKS.md, "Storage"). Within a window, **metric
//! before device** (format 4): a fleet question about one metric reads one
//! contiguous run of keys per window instead of a few keys out of every
//! device's 30-odd series, so it touches (and decompresses) a tenth of the
//! pages. `migrate.rs` rewrites old keys.

use vakt_proto::v1;

const RECORD_SEP: u8 = 0x1e;
const UNIT_SEP: u8 = 0x1f;

/// Samples of one series in one window share a chunk. Six hours at a 30 s
/// interval is 720 samples: long enough that the ~80-byte key and sled's
/// per-item overhead cost ~0.15 bytes a sample, short enough that
/// re-encoding the open chunk on every fold stays cheap.
pub const WINDOW_MS: i64 = 6 * 3_600_000;
/// Rollup bucket width.
pub const BUCKET_MS: i64 = 5 * 60_000;

pub fn state_key(device_id: &str) -> Vec<u8> {
    [b"s/", device_id.as_bytes()].concat()
}

pub fn table_key(device_id: &str) -> Vec<u8> {
    [b"n/", device_id.as_bytes()].concat()
}

pub fn inventory_key(device_id: &str) -> Vec<u8> {
    [b"i/", device_id.as_bytes()].concat()
}

/// Prefix of every log record of one device.
pub fn log_prefix(device_id: &str) -> Vec<u8> {
    [b"l/", device_id.as_bytes(), b"/"].concat()
}

pub fn log_key(device_id: &str, sequence: u64) -> Vec<u8> {
    let mut key = log_prefix(device_id);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// Raw chunks (`Kind::Raw`) or rollups (`Kind::Rollup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Raw,
    Rollup,
}

impl Kind {
    pub fn tag(self) -> &'static [u8] {
        match self {
            Kind::Raw => b"raw/",
            Kind::Rollup => b"rollup/",
        }
    }
}

/// Where every `kind` key of the window starting at `window` begins; the
/// keys of later windows sort after it.
pub fn window_prefix(kind: Kind, window: i64) -> Vec<u8> {
    [kind.tag(), &timestamp_bytes(window)[..]].concat()
}

/// Prefix of every chunk of one metric of one device in one window; what
/// follows it is the series' attributes and `\0`.
pub fn metric_prefix(kind: Kind, window: i64, device_id: &str, metric: &str) -> Vec<u8> {
    let mut key = window_prefix(kind, window);
    key.extend_from_slice(metric.as_bytes());
    key.push(RECORD_SEP);
    key.extend_from_slice(device_id.as_bytes());
    key.push(b'/');
    key
}

/// The device-independent id of a series: metric, attributes, `\0`.
pub fn series_id(metric: &str, attributes: &[v1::Attribute]) -> Vec<u8> {
    let mut key = Vec::with_capacity(metric.len() + 2 + attributes.len() * 24);
    let mut sorted: Vec<&v1::Attribute> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    write_series_id(&mut key, metric, sorted.into_iter());
    key
}

/// Appends the series id of `metric` with `attributes`, which must already
/// be in key order (`series_id` sorts them).
pub fn write_series_id<'a>(
    out: &mut Vec<u8>,
    metric: &str,
    attributes: impl Iterator<Item = &'a v1::Attribute>,
) {
    out.extend_from_slice(metric.as_bytes());
    out.push(RECORD_SEP);
    for (i, attr) in attributes.enumerate() {
        if i > 0 {
            out.push(RECORD_SEP);
        }
        out.extend_from_slice(attr.key.as_bytes());
        out.push(UNIT_SEP);
        out.extend_from_slice(attr.value.as_bytes());
    }
    out.push(0);
}

/// The metric and attributes of a series id.
pub fn split_series_id(id: &[u8]) -> Option<(String, Vec<v1::Attribute>)> {
    let body = id.strip_suffix(&[0])?;
    let sep = body.iter().position(|b| *b == RECORD_SEP)?;
    let metric = String::from_utf8_lossy(&body[..sep]).into_owned();
    Some((metric, decode_attributes(&body[sep + 1..])))
}

/// The key of one series' chunk (or rollup) for the window starting at
/// `window`: `<tag><window><metric>\x1e<device>/<attributes>\0`, the series
/// id (`series_id`) with the device inserted after its metric.
pub fn chunk_key(kind: Kind, window: i64, device_id: &str, series_id: &[u8]) -> Vec<u8> {
    let mut key = window_prefix(kind, window);
    key.reserve(series_id.len() + device_id.len() + 1);
    let metric_end = series_id
        .iter()
        .position(|b| *b == RECORD_SEP)
        .map_or(series_id.len(), |at| at + 1);
    key.extend_from_slice(&series_id[..metric_end]);
    key.extend_from_slice(device_id.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&series_id[metric_end..]);
    key
}

/// A `kind` chunk key's parts.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkKey<'k> {
    pub window: i64,
    pub device_id: &'k str,
    /// The series id, as `series_id` writes it.
    pub series_id: Vec<u8>,
}

/// The window, device and series id of a `kind` chunk key (metric names hold
/// no `\x1e` and device ids no `/`).
pub fn split_chunk_key(kind: Kind, key: &[u8]) -> Option<ChunkKey<'_>> {
    let rest = key.strip_prefix(kind.tag())?;
    let window = decode_timestamp(rest.get(..8)?)?;
    let rest = &rest[8..];
    let metric_end = rest.iter().position(|b| *b == RECORD_SEP)? + 1;
    let device_len = rest[metric_end..].iter().position(|b| *b == b'/')?;
    let device_id = std::str::from_utf8(&rest[metric_end..metric_end + device_len]).ok()?;
    let attributes = &rest[metric_end + device_len + 1..];
    if attributes.last() != Some(&0) {
        return None;
    }
    Some(ChunkKey {
        window,
        device_id,
        series_id: [&rest[..metric_end], attributes].concat(),
    })
}

/// In the series database: the log records (their 8-byte sequences) whose
/// samples the device's last fold wrote into chunks (`compact.rs`).
pub fn folded_key(device_id: &str) -> Vec<u8> {
    [b"folded/", device_id.as_bytes()].concat()
}

/// Where retention records how far it has deleted `kind` (the names date
/// from the time index of formats 1–2; stored, so kept).
pub fn horizon_key(kind: Kind) -> Vec<u8> {
    match kind {
        Kind::Raw => b"meta/horizon/wc/".to_vec(),
        Kind::Rollup => b"meta/horizon/wr/".to_vec(),
    }
}

/// The start of the window holding `timestamp_ms`.
pub fn window_of(timestamp_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(WINDOW_MS)
}

pub fn bucket_of(timestamp_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(BUCKET_MS)
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
        let id = series_id("m", &[attr("b", "2=,}"), attr("a", "1")]);
        assert_eq!(
            split_series_id(&id),
            Some(("m".into(), vec![attr("a", "1"), attr("b", "2=,}")]))
        );
        assert_eq!(
            split_series_id(&series_id("m", &[])),
            Some(("m".into(), vec![]))
        );
    }

    #[test]
    fn a_metric_prefix_does_not_match_a_longer_metric_name() {
        let id = series_id("system.cpu.utilization2", &[]);
        let longer = chunk_key(Kind::Raw, 0, "d-1", &id);
        let prefix = metric_prefix(Kind::Raw, 0, "d-1", "system.cpu.utilization");
        assert!(!longer.starts_with(&prefix));
        // Nor one device's prefix another device whose id extends it.
        let id = series_id("system.cpu.utilization", &[]);
        let other = chunk_key(Kind::Raw, 0, "d-10", &id);
        assert!(!other.starts_with(&prefix));
        assert!(chunk_key(Kind::Raw, 0, "d-1", &id).starts_with(&prefix));
    }

    #[test]
    fn chunk_keys_sort_by_window_then_metric_and_split_back() {
        let id = series_id("m", &[attr("mount", "/")]);
        let early = chunk_key(Kind::Rollup, WINDOW_MS, "d-2", &id);
        let late = chunk_key(Kind::Rollup, 2 * WINDOW_MS, "d-1", &id);
        assert!(early < late);
        assert!(late < window_prefix(Kind::Rollup, 3 * WINDOW_MS));
        // Within a window one metric's chunks of every device sit together.
        let other_metric = chunk_key(Kind::Rollup, WINDOW_MS, "d-1", &series_id("n", &[]));
        let same_metric = chunk_key(Kind::Rollup, WINDOW_MS, "d-3", &id);
        assert!(early < same_metric && same_metric < other_metric);
        assert_eq!(
            split_chunk_key(Kind::Rollup, &early),
            Some(ChunkKey {
                window: WINDOW_MS,
                device_id: "d-2",
                series_id: id.clone()
            })
        );
        let bare = series_id("m", &[]);
        let key = chunk_key(Kind::Raw, 0, "d-1", &bare);
        assert_eq!(split_chunk_key(Kind::Raw, &key).unwrap().series_id, bare);
        assert_eq!(split_chunk_key(Kind::Raw, &early), None);
        assert!(!Kind::Rollup.tag().starts_with(Kind::Raw.tag()));
    }

    #[test]
    fn windows_and_buckets_align() {
        assert_eq!(window_of(WINDOW_MS + 5), WINDOW_MS);
        assert_eq!(bucket_of(BUCKET_MS * 3 - 1), BUCKET_MS * 2);
    }
}
