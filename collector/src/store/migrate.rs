//! Rewrites chunks and rollups stored device first (formats 1–2:
//! `c/<device>/<series><window>`, `r/…`, plus the `wc/ wr/` time index) into
//! the window-first keys of format 3 (`series.rs`), once, when the store
//! opens.
//!
//! Each batch moves up to `BATCH` values atomically (new key in, old key
//! out), so a crash mid-way loses and duplicates nothing: the next open
//! finds the old keys that are left and goes on. `format::claim` records
//! format 3 before this runs, so a format-2 collector refuses the database
//! rather than read a half-moved one.

use super::series::{self, Kind};
use super::{Result, compact::corrupt};
use std::time::Instant;

const BATCH: usize = 2_000;
/// A progress line every this many keys: a 1,000-device month holds ~5 M.
const REPORT_EVERY: u64 = 200_000;

const LEGACY: [(Kind, &[u8]); 2] = [(Kind::Raw, b"c/"), (Kind::Rollup, b"r/")];
const LEGACY_INDEX: [&[u8]; 2] = [b"wc/", b"wr/"];

/// What one open moved and dropped (all zero on a database already in format 3).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub moved: u64,
    pub index_entries_removed: u64,
}

/// Moves every device-first chunk and rollup to its window-first key and
/// removes the old time index.
pub fn to_window_first_keys(telemetry: &sled::Tree) -> Result<Migrated> {
    let mut done = Migrated::default();
    let pending = LEGACY
        .iter()
        .map(|(_, tag)| *tag)
        .chain(LEGACY_INDEX)
        .any(|tag| telemetry.scan_prefix(tag).next().is_some());
    if !pending {
        return Ok(done);
    }
    let started = Instant::now();
    tracing::info!("storage: moving chunks and rollups to window-first keys (format 3), once");
    for (kind, tag) in LEGACY {
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in telemetry.scan_prefix(tag).take(BATCH) {
                let (old, value) = item?;
                let (window, device, id) =
                    split_legacy(tag, &old).ok_or_else(|| corrupt(&old, "malformed chunk key"))?;
                batch.insert(series::chunk_key(kind, window, device, id), value);
                batch.remove(old);
                n += 1;
            }
            if n == 0 {
                break;
            }
            telemetry.apply_batch(batch)?;
            let before = done.moved;
            done.moved += n;
            if done.moved / REPORT_EVERY > before / REPORT_EVERY {
                tracing::info!(
                    moved = done.moved,
                    seconds = started.elapsed().as_secs(),
                    "storage: still moving"
                );
            }
        }
    }
    for tag in LEGACY_INDEX {
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for key in telemetry.scan_prefix(tag).keys().take(BATCH) {
                batch.remove(key?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            telemetry.apply_batch(batch)?;
            done.index_entries_removed += n;
        }
    }
    tracing::info!(
        moved = done.moved,
        index_entries_removed = done.index_entries_removed,
        seconds = started.elapsed().as_secs_f64(),
        "storage: chunks and rollups now keyed window first"
    );
    Ok(done)
}

/// `<tag><device>/<series id ending in \0><window, 8 bytes>` → its parts.
fn split_legacy<'k>(tag: &[u8], key: &'k [u8]) -> Option<(i64, &'k str, &'k [u8])> {
    let rest = key.strip_prefix(tag)?;
    let (body, window) = rest.split_at_checked(rest.len().checked_sub(8)?)?;
    let slash = body.iter().position(|b| *b == b'/')?;
    let device = std::str::from_utf8(&body[..slash]).ok()?;
    let id = &body[slash + 1..];
    if id.last() != Some(&0) {
        return None;
    }
    Some((series::decode_timestamp(window)?, device, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::series::{WINDOW_MS, series_id};

    fn legacy_key(tag: &[u8], device: &str, id: &[u8], window: i64) -> Vec<u8> {
        let mut key = [tag, device.as_bytes(), b"/", id].concat();
        key.extend_from_slice(&series::timestamp_bytes(window));
        key
    }

    #[test]
    fn device_first_keys_move_and_the_time_index_goes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("telemetry").unwrap();
        let id = series_id(
            "system.filesystem.utilization",
            &[vakt_proto::v1::Attribute {
                key: "mount".into(),
                value: "/".into(),
            }],
        );
        let mut want = Vec::new();
        for (i, (kind, tag)) in LEGACY.into_iter().enumerate() {
            for device in ["d-1", "d-2"] {
                for w in 1..=3 {
                    let old = legacy_key(tag, device, &id, w * WINDOW_MS);
                    let value = format!("{i}{device}{w}").into_bytes();
                    tree.insert(&old, value.clone()).unwrap();
                    let index = [
                        LEGACY_INDEX[i],
                        &series::timestamp_bytes(w * WINDOW_MS),
                        &old,
                    ];
                    tree.insert(index.concat(), &[][..]).unwrap();
                    want.push((series::chunk_key(kind, w * WINDOW_MS, device, &id), value));
                }
            }
        }
        // Everything else stays as it is.
        tree.insert(b"l/d-1/\0\0\0\0\0\0\0\x01", &b"record"[..])
            .unwrap();
        tree.insert(series::horizon_key(Kind::Raw), &[0; 8][..])
            .unwrap();

        let done = to_window_first_keys(&tree).unwrap();
        assert_eq!(
            done,
            Migrated {
                moved: 12,
                index_entries_removed: 12
            }
        );
        want.push((b"l/d-1/\0\0\0\0\0\0\0\x01".to_vec(), b"record".to_vec()));
        want.push((series::horizon_key(Kind::Raw), vec![0; 8]));
        want.sort();
        let have: Vec<(Vec<u8>, Vec<u8>)> = tree
            .iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect();
        assert_eq!(have, want);
        assert_eq!(to_window_first_keys(&tree).unwrap(), Migrated::default());
    }

    #[test]
    fn a_malformed_old_key_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("telemetry").unwrap();
        tree.insert(b"c/d-1/no-terminator", &b"x"[..]).unwrap();
        assert!(to_window_first_keys(&tree).is_err());
        assert!(tree.get(b"c/d-1/no-terminator").unwrap().is_some());
    }
}
