//! Moves older layouts to the current one, once, when the store opens:
//! chunks and rollups stored device first (formats 1–2:
//! `c/<device>/<series><window>`, `r/…`, plus the `wc/ wr/` time index) to
//! the window-first keys of format 3 (`series.rs`), then those keys and the
//! retention horizons out of the hot database into the series database
//! (format 4, `to_series_database`).
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
/// Values per copy into the series database (each batch ends in an fsync).
const MOVE_BATCH: usize = 20_000;
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
                batch.insert(v3_chunk_key(kind, window, device, id), value);
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

/// What lives in the series database since format 4: chunks and rollups
/// (rekeyed) and the retention horizons (`series::horizon_key`, as they are).
const SERIES_PREFIXES: [(Option<Kind>, &[u8]); 3] = [
    (Some(Kind::Raw), b"raw/"),
    (Some(Kind::Rollup), b"rollup/"),
    (None, b"meta/horizon/"),
];

/// A format-3 chunk key: `<tag><window><device>/<series id>`.
fn v3_chunk_key(kind: Kind, window: i64, device_id: &str, series_id: &[u8]) -> Vec<u8> {
    let mut key = series::window_prefix(kind, window);
    key.extend_from_slice(device_id.as_bytes());
    key.push(b'/');
    key.extend_from_slice(series_id);
    key
}

/// A format-3 chunk key in the format-4 layout (`series::chunk_key`).
fn rekey_v3(kind: Kind, key: &[u8]) -> Option<Vec<u8>> {
    let rest = key.strip_prefix(kind.tag())?;
    let window = series::decode_timestamp(rest.get(..8)?)?;
    let rest = &rest[8..];
    let slash = rest.iter().position(|b| *b == b'/')?;
    let device = std::str::from_utf8(&rest[..slash]).ok()?;
    let id = &rest[slash + 1..];
    (id.last() == Some(&0)).then(|| series::chunk_key(kind, window, device, id))
}

/// Moves chunks, rollups and retention horizons from the hot database's
/// `telemetry` tree to the series database's `series` tree, rekeying chunks
/// and rollups metric before device (`series::chunk_key`). A batch is
/// copied and made durable in the series database before it is removed
/// from the hot one, so a crash at any point leaves every value in at least
/// one of them, and the next open copies what is left again (same values).
/// The hot removals are made durable before the store is used: otherwise a
/// value rewritten by a fold could later be overwritten by its old copy.
pub fn to_series_database(
    hot_db: &sled::Db,
    telemetry: &sled::Tree,
    series_db: &sled::Db,
    series_tree: &sled::Tree,
) -> Result<u64> {
    let pending = SERIES_PREFIXES
        .iter()
        .any(|(_, tag)| telemetry.scan_prefix(tag).next().is_some());
    if !pending {
        return Ok(0);
    }
    let started = Instant::now();
    tracing::info!("storage: moving chunks and rollups into the series database (format 4), once");
    let mut moved = 0u64;
    for (kind, tag) in SERIES_PREFIXES {
        loop {
            let mut copy = sled::Batch::default();
            let mut remove = sled::Batch::default();
            let mut n = 0;
            for item in telemetry.scan_prefix(tag).take(MOVE_BATCH) {
                let (key, value) = item?;
                let new_key = match kind {
                    Some(kind) => {
                        rekey_v3(kind, &key).ok_or_else(|| corrupt(&key, "malformed chunk key"))?
                    }
                    None => key.to_vec(),
                };
                copy.insert(new_key, value);
                remove.remove(key);
                n += 1;
            }
            if n == 0 {
                break;
            }
            series_tree.apply_batch(copy)?;
            series_db.flush()?;
            telemetry.apply_batch(remove)?;
            let before = moved;
            moved += n;
            if moved / REPORT_EVERY > before / REPORT_EVERY {
                tracing::info!(
                    moved,
                    seconds = started.elapsed().as_secs(),
                    "storage: still moving"
                );
            }
        }
    }
    hot_db.flush()?;
    tracing::info!(
        moved,
        seconds = started.elapsed().as_secs_f64(),
        "storage: chunks and rollups now in the series database"
    );
    Ok(moved)
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
                    want.push((v3_chunk_key(kind, w * WINDOW_MS, device, &id), value));
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
    fn chunks_rollups_and_horizons_move_to_the_series_database_rekeyed() {
        let dir = tempfile::tempdir().unwrap();
        let hot = sled::Config::new().path(dir.path()).open().unwrap();
        let telemetry = hot.open_tree("telemetry").unwrap();
        let series_db = sled::Config::new()
            .path(dir.path().join("series"))
            .open()
            .unwrap();
        let series_tree = series_db.open_tree("series").unwrap();
        let id = series_id("system.cpu.utilization", &[]);
        let mut want = Vec::new();
        for kind in [Kind::Raw, Kind::Rollup] {
            for w in 1..=3 {
                let old = v3_chunk_key(kind, w * WINDOW_MS, "d-1", &id);
                telemetry.insert(&old, &b"chunk"[..]).unwrap();
                let key = series::chunk_key(kind, w * WINDOW_MS, "d-1", &id);
                want.push((key, b"chunk".to_vec()));
            }
            telemetry
                .insert(series::horizon_key(kind), &[0; 8][..])
                .unwrap();
            want.push((series::horizon_key(kind), vec![0; 8]));
        }
        // A copy left by a crash after the copy, before the removal.
        series_tree.insert(&want[0].0, &b"chunk"[..]).unwrap();
        let stays = [
            (b"l/d-1/\0\0\0\0\0\0\0\x01".to_vec(), b"record".to_vec()),
            (b"meta/format".to_vec(), 4u64.to_be_bytes().to_vec()),
            (series::state_key("d-1"), b"{}".to_vec()),
        ];
        for (k, v) in &stays {
            telemetry.insert(k, v.clone()).unwrap();
        }

        let moved = to_series_database(&hot, &telemetry, &series_db, &series_tree).unwrap();
        assert_eq!(moved, 8);
        want.sort();
        let dump = |tree: &sled::Tree| -> Vec<(Vec<u8>, Vec<u8>)> {
            tree.iter()
                .map(|kv| {
                    let (k, v) = kv.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect()
        };
        assert_eq!(dump(&series_tree), want);
        let mut stays = stays.to_vec();
        stays.sort();
        assert_eq!(dump(&telemetry), stays);
        assert_eq!(
            to_series_database(&hot, &telemetry, &series_db, &series_tree).unwrap(),
            0
        );
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
