//! The storage format a database was written in, so that a collector
//! refuses a database it would misread instead of folding garbage.
//!
//! Format 1: log records spell out their series ids (no `meta/format`
//! key). Format 2: records may name a series by its index in the device's
//! series table (`series_table.rs`), which a format-1 collector misreads.
//! Format 3: chunks and rollups keyed window first (`series.rs`), where a
//! format-2 collector would find none; `migrate.rs` moves older keys.
//! Format 4: chunks, rollups and retention horizons live in the separate
//! series database (`mod.rs`), where a format-3 collector would find none.
//! A collector opens any format up to its own and then records its own; one
//! that finds a newer format refuses to start. Collectors older than this
//! check do not read the key: going back across format 2 or 3 means
//! restoring a backup taken before the upgrade.

use super::{Result, StoreError};

/// The format this collector writes.
pub const CURRENT: u64 = 4;

const KEY: &[u8] = b"meta/format";

/// Checks the format recorded in `telemetry` and records `CURRENT` there.
pub fn claim(telemetry: &sled::Tree) -> Result<()> {
    let found = match telemetry.get(KEY)? {
        None => 1,
        Some(bytes) => {
            let raw: [u8; 8] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                key: "meta/format".into(),
                reason: format!("{} bytes, want 8", bytes.len()),
            })?;
            u64::from_be_bytes(raw)
        }
    };
    if found > CURRENT {
        return Err(StoreError::NewerFormat {
            found,
            supported: CURRENT,
        });
    }
    if found < CURRENT {
        telemetry.insert(KEY, &CURRENT.to_be_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_claimed_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("telemetry").unwrap();
        claim(&tree).unwrap();
        assert_eq!(
            tree.get(KEY).unwrap().as_deref(),
            Some(&CURRENT.to_be_bytes()[..])
        );
        claim(&tree).unwrap();
        tree.insert(KEY, &(CURRENT + 1).to_be_bytes()).unwrap();
        let refused = claim(&tree).unwrap_err();
        assert!(
            matches!(refused, StoreError::NewerFormat { found, supported }
            if found == CURRENT + 1 && supported == CURRENT)
        );
        assert!(refused.to_string().contains("newer collector"), "{refused}");
        tree.insert(KEY, &b"x"[..]).unwrap();
        assert!(matches!(claim(&tree), Err(StoreError::Corrupt { .. })));
    }
}
