//! sled's configuration, and what sled persists of it.
//!
//! sled 0.34 writes its segment size (its IO buffer, the unit its log
//! reuses space in) into the database's `conf` file and refuses to open the
//! database with a different one. New databases get [`SEGMENT_SIZE`];
//! an existing database keeps the size it was created with, read from that
//! file, so databases written before the change still open.
//!
//! Why 8 MiB and not sled's 512 KiB: sled frees a segment only once every
//! page written into it has been rewritten elsewhere, and cleans (relocates)
//! a segment only when at most half of it is live. Under our pattern — a
//! window's chunks and rollups appended for every series, old windows
//! deleted all over the key space — small segments keep a little live data
//! each and are seldom freed. Measured (`docs/BENCHMARKS.md`, "Storage"):
//! the file grows several times more slowly with 8 MiB segments.
//! (`Mode::LowSpace`/`HighThroughput` is not read anywhere in sled 0.34.7, so
//! it is no lever; we set nothing.)

use std::path::Path;

/// Segment size of databases created from now on (a power of two, at most
/// sled's 16 MiB). sled keeps one IO buffer of this size (two while one is
/// being written), so it costs up to 16 MiB of memory.
pub const SEGMENT_SIZE: usize = 8 << 20;

/// Whether new databases compress sled's pages with zstd (sled's
/// `compression` feature) unless configured (`[storage] compression`). sled
/// persists the choice and refuses to open a database with the other one,
/// so an existing database keeps its own. Off: it makes the file 2-4× smaller
/// but halves the store's ingest rate (`docs/BENCHMARKS.md`, "Storage").
pub const USE_COMPRESSION: bool = false;
/// Whether a new series database (chunks and rollups, written only by the
/// fold: `compact.rs`) is compressed unless configured
/// (`[storage] series_compression`). On: the pages hold dense chunks but
/// repetitive keys and rollup columns, and no acknowledgement waits for it.
pub const COMPRESS_SERIES: bool = true;
/// zstd level when compressing (not persisted: it only affects new writes).
pub const COMPRESSION_FACTOR: i32 = 3;

/// What sled recorded in a database's `conf` file: text lines
/// (`segment_size: 524288`, `use_compression: false`) and a CRC.
fn persisted(path: &Path, name: &str) -> Option<String> {
    let bytes = std::fs::read(path.join("conf")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|line| Some(line.strip_prefix(&prefix)?.trim().to_owned()))
}

/// The segment size sled recorded for the database at `path`, if it exists.
pub fn persisted_segment_size(path: &Path) -> Option<usize> {
    persisted(path, "segment_size")?
        .parse::<usize>()
        .ok()
        .filter(|n| n.is_power_of_two())
}

/// Whether the database at `path` (if it exists) was created compressed.
pub fn persisted_compression(path: &Path) -> Option<bool> {
    persisted(path, "use_compression")?.parse().ok()
}

/// The sled config the store opens `path` with: our segment size and
/// `compress` for a new database, what it was created with for an existing one.
pub fn config(path: &Path, cache_bytes: u64, compress: bool) -> sled::Config {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .segment_size(persisted_segment_size(path).unwrap_or(SEGMENT_SIZE))
        .use_compression(persisted_compression(path).unwrap_or(compress))
        .compression_factor(COMPRESSION_FACTOR)
}

/// Creates an empty database at `path` with another segment size and
/// compression (zstd level, or none), which the store then keeps: for
/// benchmarks comparing settings (not used by the collector).
pub fn create_with(
    path: &Path,
    segment_size: usize,
    compression: Option<i32>,
) -> Result<(), sled::Error> {
    let db = sled::Config::new()
        .path(path)
        .segment_size(segment_size)
        .use_compression(compression.is_some())
        .compression_factor(compression.unwrap_or(COMPRESSION_FACTOR))
        .open()?;
    db.flush()?;
    release(db, path);
    Ok(())
}

/// Drops `db` and returns once sled's own threads have let go of the
/// database's lock file too (up to 10 s): its IO and flush threads can hold
/// the last reference for a moment after a flush completed, and opening the
/// path again in that moment fails with "could not acquire lock".
pub fn release(db: sled::Db, path: &Path) {
    drop(db);
    let lock_file = path.join("db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // sled takes the lock with `flock`, which `File::try_lock` also uses.
    while !lock_is_free(&lock_file) {
        if std::time::Instant::now() >= deadline {
            tracing::warn!(path = %lock_file.display(), "sled still holds the database lock 10 s after close");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn lock_is_free(lock_file: &Path) -> bool {
    let Ok(file) = std::fs::File::open(lock_file) else {
        return true;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            true
        }
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_gets_the_new_segment_size() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("db");
        let db = config(&path, 1 << 20, false).open()?;
        db.insert("k", "v")?;
        db.flush()?;
        drop(db);
        assert_eq!(persisted_segment_size(&path), Some(SEGMENT_SIZE));
        Ok(())
    }

    #[test]
    fn a_database_made_with_sleds_default_opens_and_keeps_its_size()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("db");
        let old = sled::Config::new().path(&path).open()?;
        old.insert("k", "v")?;
        old.flush()?;
        release(old, &path);
        assert_eq!(persisted_segment_size(&path), Some(512 * 1024));
        let db = config(&path, 1 << 20, true).open()?;
        assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..]));
        Ok(())
    }

    /// sled refuses to open a database with the other compression setting
    /// ("cannot change compression values across restarts"); the store reads
    /// the persisted one, so either kind opens and reads back exactly.
    #[test]
    fn compressed_and_plain_databases_both_open_and_round_trip()
    -> Result<(), Box<dyn std::error::Error>> {
        for compressed in [true, false] {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("db");
            create_with(&path, 1 << 20, compressed.then_some(5))?;
            let value: Vec<u8> = (0..20_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect();
            {
                let db = config(&path, 1 << 20, !compressed).open()?;
                for i in 0..50u32 {
                    db.insert(i.to_be_bytes(), value.clone())?;
                }
                db.flush()?;
                release(db, &path);
            }
            assert_eq!(persisted_compression(&path), Some(compressed));
            let mismatched = sled::Config::new()
                .path(&path)
                .segment_size(1 << 20)
                .use_compression(!compressed)
                .open();
            assert!(mismatched.is_err(), "sled opened with the other setting");
            let db = config(&path, 1 << 20, !compressed).open()?;
            for i in 0..50u32 {
                assert_eq!(db.get(i.to_be_bytes())?.as_deref(), Some(&value[..]));
            }
        }
        Ok(())
    }
}
