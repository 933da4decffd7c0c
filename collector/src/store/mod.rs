//! Storage: the one place that knows sled. The gRPC services call these
//! methods and never touch trees themselves.
//!
//! Two sled databases. The hot one, at the configured path, takes every
//! acknowledged write; its trees (a fixed, small set): `devices`
//! (registration and enrollment records), `index` (serial / product UUID /
//! machine id → device id), `tokens` (token id → hashed one-time secret) and
//! `telemetry` (ingest state, inventory, per-report log records; see
//! `series`). Writes there are not durable until `durable()` returns: callers
//! that acknowledge something await it first. The series database, in the
//! `series` directory inside it, holds the compressed chunks and rollups the
//! fold writes (`compact.rs`): zstd-compressed by sled by default, which the
//! ingest path then never pays for.

mod alert_scan;
mod audit;
mod children;
pub mod compact;
mod devices;
mod events;
pub mod fleet_queries;
mod flush;
mod fold_slices;
mod format;
mod gorilla;
mod hot;
mod ingest;
mod log;
mod migrate;
pub mod outbox;
pub mod read;
pub mod retention;
pub mod series;
mod series_table;
pub mod sled_config;
mod software;
pub use software::{PackageInstall, SoftwareState};

pub use alert_scan::DeviceForAlerts;
pub use children::{ChildPolicy, GatewayRecord, MAX_REFUSED_PER_GATEWAY, RefusedRecord};
pub use events::ReportStored;
use flush::{FlushError, Flusher};
pub use fold_slices::{DEFAULT_SLICE_BUDGET, SliceBudget};
use prost::Message;
use serde::{Deserialize, Serialize};
use sled::transaction::TransactionError;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicI64;
use std::sync::{Mutex, RwLock};
use vakt_proto::v1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Flush(#[from] FlushError),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("query would return more than {0} points; use a larger step or a shorter range")]
    TooManyPoints(usize),
    #[error("the final flush did not finish: {0}")]
    Closing(String),
    #[error(
        "this database was written by a newer collector (storage format {found}; this one reads up to {supported}): run that collector, or restore a backup taken before the upgrade"
    )]
    NewerFormat { found: u64, supported: u64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What ops registered about a device, and what enrollment added.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub serial: String,
    pub product_uuid: String,
    pub machine_id: String,
    pub model: String,
    pub class: String,
    pub department: String,
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    pub registered_at_ms: i64,
    /// The token that may enroll this device now (None once used).
    pub token_id: Option<String>,
    pub enrolled_at_ms: i64,
    /// Hostname as the device reported it at enrollment.
    pub enrolled_hostname: String,
    pub cert_serial: String,
    pub cert_not_after_ms: i64,
    pub revoked_at_ms: i64,
    /// Every certificate serial issued to this device (denylisted on revoke).
    #[serde(default)]
    pub issued_serials: Vec<String>,
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// A tablet's gateway (device id): only its reports of this device count.
    #[serde(default)]
    pub via_gateway: String,
}

/// A security finding about a device, shown to ops and kept for audit.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Flag {
    pub kind: String,
    pub at_ms: i64,
    pub detail: String,
}

/// One line of the audit log.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
    pub peer: String,
}

/// Which audit entries to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub since_ms: i64,
    pub action_prefix: String,
    pub target: String,
    pub limit: usize,
}

const MAX_ISSUED_SERIALS: usize = 64;
const MAX_FLAGS: usize = 32;

/// A one-time enrollment token, stored only as the hash of its secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub device_id: String,
    pub secret_sha256: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: i64,
}

/// Per-device state that changes with every report; carried by the report's
/// log record (`log.rs`), in the same sled value as its samples, so it can
/// never disagree with them. `s/<device>` holds it as of the last fold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IngestState {
    pub last_sequence: u64,
    pub last_seen_ms: i64,
    pub last_event: i32,
    pub last_event_ms: i64,
    pub hostname: String,
    #[serde(with = "hex_bytes")]
    pub inventory_hash: Vec<u8>,
    pub dropped_reports_total: u64,
    /// The agent's collected_at of the newest stored batch: a resend carries an
    /// older one, a cloned identity sending its own reports a newer one.
    #[serde(default)]
    pub last_collected_ms: i64,
    /// Bumped by every enrollment, which restarts the sequence: a state
    /// carried by a log record of an earlier generation is stale.
    #[serde(default)]
    pub generation: u32,
}

/// The result of ingesting one batch.
#[derive(Debug, PartialEq)]
pub struct Ingested {
    /// The highest sequence stored for the device (after this batch).
    pub acked_sequence: u64,
    /// False when the batch was a resend of an already stored sequence.
    pub stored: bool,
    /// The collector lacks the inventory whose hash the batch carries.
    pub need_inventory: bool,
    /// The sequence went backwards with fresh data: another agent is using
    /// this identity.
    pub clone_suspected: bool,
    /// The collector lacks the software set the batch describes.
    pub need_full_software: bool,
}

pub struct Store {
    db: sled::Db,
    devices: sled::Tree,
    index: sled::Tree,
    tokens: sled::Tree,
    telemetry: sled::Tree,
    audit: sled::Tree,
    denylist: sled::Tree,
    /// Chunks, rollups, retention horizons and fold markers (`compact.rs`),
    /// in `series_db`: made durable by the fold itself, not the flusher.
    series: sled::Tree,
    series_db: sled::Db,
    flusher: Flusher,
    /// Serializes the read-modify-write of one device's ingest state (a device
    /// normally has one stream, but a cloned identity may have two), and
    /// holds the stripe's states write-through (`hot.rs`), so the ingest path
    /// reads no sled key and decodes no JSON.
    ingest_locks: Vec<Mutex<hot::HotStates>>,
    /// Registrations are rare; one lock keeps "same serial → same device" exact.
    registration_lock: tokio::sync::Mutex<()>,
    child_policy: ChildPolicy,
    /// "Report stored" events for the alert engine (published once durable).
    events: events::Events,
    /// A fold holds its device's stripe exclusively, a read shared: a read
    /// then sees each sample exactly once, in a log record or in a chunk.
    fold_locks: Vec<RwLock<()>>,
    options: StorageOptions,
    /// Raw chunks (index 0) and rollups (index 1) of windows ending at or
    /// before this are gone (retention); persisted in `series::horizon_key`.
    horizons: [AtomicI64; 2],
    /// Where the database lives; `close` waits for sled's lock on it.
    path: std::path::PathBuf,
}

/// Retention and memory settings of the store (`[storage]` in collector.toml).
#[derive(Clone, Debug, PartialEq)]
pub struct StorageOptions {
    /// sled's page cache; its resident memory is a multiple of this.
    pub cache_bytes: u64,
    /// Raw samples are kept at least this long (whole 6-hour chunks go).
    pub raw_retention_ms: i64,
    /// 5-minute rollups are kept at least this long.
    pub rollup_retention_ms: i64,
    /// zstd-compress sled's pages if the database is created now (an existing
    /// database keeps what it was created with; `sled_config.rs`).
    pub compress_new_database: bool,
    /// The same for the series database (chunks and rollups), which only
    /// the fold writes: on by default.
    pub compress_new_series: bool,
}

pub const DEFAULT_RAW_RETENTION_MS: i64 = 14 * 86_400_000;
pub const DEFAULT_ROLLUP_RETENTION_MS: i64 = 400 * 86_400_000;

impl StorageOptions {
    pub fn with_cache(cache_bytes: u64) -> Self {
        Self {
            cache_bytes,
            raw_retention_ms: DEFAULT_RAW_RETENTION_MS,
            rollup_retention_ms: DEFAULT_ROLLUP_RETENTION_MS,
            compress_new_database: sled_config::USE_COMPRESSION,
            compress_new_series: sled_config::COMPRESS_SERIES,
        }
    }
}

const INGEST_LOCK_STRIPES: usize = 64;

/// Where the series database of the database at `path` lives.
pub fn series_db_path(path: &Path) -> std::path::PathBuf {
    path.join("series")
}

/// A new or updated registration.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    pub serial: String,
    pub product_uuid: String,
    pub machine_id: String,
    pub model: String,
    pub class: String,
    pub department: String,
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    /// The gateway's device id (already resolved), or empty.
    pub via_gateway: String,
}

impl Store {
    /// Opens (or creates) the database with default retention. Must run
    /// inside a tokio runtime: it starts the flusher task.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self> {
        Self::open_with(path, StorageOptions::with_cache(cache_bytes))
    }

    pub fn open_with(path: &Path, options: StorageOptions) -> Result<Self> {
        // Half the cache each: the hot database's working set is the log
        // records not yet folded, the series database's what queries read.
        let cache = options.cache_bytes / 2;
        let db = sled_config::config(path, cache, options.compress_new_database).open()?;
        let telemetry = db.open_tree("telemetry")?;
        format::claim(&telemetry)?;
        migrate::to_window_first_keys(&telemetry)?;
        let series_path = series_db_path(path);
        let series_db =
            sled_config::config(&series_path, cache, options.compress_new_series).open()?;
        let series = series_db.open_tree("series")?;
        migrate::to_series_database(&db, &telemetry, &series_db, &series)?;
        let horizon = |kind| -> Result<AtomicI64> {
            let stored = series.get(series::horizon_key(kind))?;
            Ok(AtomicI64::new(
                stored
                    .and_then(|v| series::decode_timestamp(&v))
                    .unwrap_or(0),
            ))
        };
        let horizons = [horizon(series::Kind::Raw)?, horizon(series::Kind::Rollup)?];
        Ok(Self {
            devices: db.open_tree("devices")?,
            index: db.open_tree("index")?,
            tokens: db.open_tree("tokens")?,
            telemetry,
            audit: db.open_tree("audit")?,
            denylist: db.open_tree("denylist")?,
            series,
            series_db,
            flusher: Flusher::start(db.clone()),
            ingest_locks: (0..INGEST_LOCK_STRIPES)
                .map(|_| Mutex::new(hot::HotStates::default()))
                .collect(),
            registration_lock: tokio::sync::Mutex::new(()),
            child_policy: ChildPolicy::default(),
            events: events::Events::default(),
            fold_locks: (0..INGEST_LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
            options,
            horizons,
            db,
            path: path.to_path_buf(),
        })
    }

    /// Waits until every write made before this call is on disk.
    pub async fn durable(&self) -> Result<()> {
        let covered = self.events.take();
        self.flusher.durable().await?;
        self.events.publish(covered);
        Ok(())
    }

    /// Batches as they become durable (see `events`).
    pub fn subscribe_reports(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<ReportStored>> {
        self.events.subscribe()
    }

    /// A tree owned by another module (the alert engine's `alerts`,
    /// `silences` and `outbox`), in the same database and group commit.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// A database-wide unique, increasing id (outbox keys).
    pub fn generate_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    /// Flushes and releases both databases. Returns only once sled's own
    /// threads have let go of the file lock too, so the same process may open
    /// the path again at once (sled's IO threads can hold the last reference
    /// for a moment after a flush has completed).
    pub async fn close(self) -> Result<()> {
        let Store {
            db,
            flusher,
            path,
            devices,
            index,
            tokens,
            telemetry,
            audit,
            denylist,
            series,
            series_db,
            ..
        } = self;
        flusher.shutdown().await;
        drop((devices, index, tokens, telemetry, audit, denylist, series));
        let flushed = tokio::task::spawn_blocking(move || {
            let result = db.flush().and(series_db.flush());
            sled_config::release(series_db, &series_db_path(&path));
            sled_config::release(db, &path);
            result
        })
        .await;
        match flushed {
            Ok(result) => {
                result?;
            }
            Err(join) => return Err(StoreError::Closing(join.to_string())),
        }
        Ok(())
    }

    /// Both databases' files.
    pub fn size_on_disk(&self) -> u64 {
        let hot = self.db.size_on_disk().unwrap_or(0);
        hot.saturating_add(self.series_db.size_on_disk().unwrap_or(0))
    }

    // ---- telemetry ----

    pub fn ingest_state(&self, device_id: &str) -> Result<IngestState> {
        let mut hot = self.lock_ingest(device_id);
        Ok(self.cached_state(&mut hot, device_id)?.clone())
    }

    /// The fields of `ingest_state` a device's status needs, without cloning
    /// the rest (the metrics endpoint asks this of every device).
    pub fn ingest_state_brief(&self, device_id: &str) -> Result<devices::StateBrief> {
        let mut hot = self.lock_ingest(device_id);
        let state = self.cached_state(&mut hot, device_id)?;
        Ok(devices::StateBrief {
            last_seen_ms: state.last_seen_ms,
            last_event: state.last_event,
            last_event_ms: state.last_event_ms,
        })
    }

    /// The stored ingest state, read from sled only on the first use.
    fn cached_state<'a>(
        &self,
        hot: &'a mut hot::HotStates,
        device_id: &str,
    ) -> Result<&'a mut IngestState> {
        Ok(&mut hot
            .get_or_load(device_id, || self.stored_state(device_id))?
            .state)
    }

    /// The cached state and series table, each read from sled only on first use.
    fn cached_hot<'a>(
        &self,
        hot: &'a mut hot::HotStates,
        device_id: &str,
    ) -> Result<(&'a mut IngestState, &'a mut series_table::SeriesTable)> {
        let entry = hot.get_or_load(device_id, || self.stored_state(device_id))?;
        let table = match &mut entry.table {
            Some(table) => table,
            none => none.insert(self.stored_series_table(device_id)?),
        };
        Ok((&mut entry.state, table))
    }

    /// The newest durable state: the one carried by the device's newest log
    /// record of the current generation when that is ahead of `s/<device>`
    /// (written at the last fold or enrollment). Records are keyed by
    /// sequence, so the newest is the last; the caller holds the ingest lock.
    fn stored_state(&self, device_id: &str) -> Result<IngestState> {
        let mut state: IngestState = self
            .telemetry
            .get(series::state_key(device_id))?
            .map(|v| decode_json(device_id, &v))
            .transpose()?
            .unwrap_or_default();
        // Newest first; records of an earlier generation (an instance that
        // reported while being enrolled again) are skipped.
        for item in self
            .telemetry
            .scan_prefix(series::log_prefix(device_id))
            .rev()
        {
            let (key, value) = item?;
            let Some(carried) = log::decode_state(&value).map_err(|e| compact::corrupt(&key, e))?
            else {
                break; // Written with `s/` in one batch: `s/` is as new.
            };
            if carried.generation == state.generation {
                if carried.last_sequence > state.last_sequence {
                    state = carried;
                }
                break;
            }
        }
        Ok(state)
    }

    fn lock_ingest(&self, device_id: &str) -> std::sync::MutexGuard<'_, hot::HotStates> {
        self.ingest_locks[stripe_of(device_id)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops the cached ingest state of a device whose stored state was
    /// changed outside `ingest` (enrollment resets its sequence).
    pub(super) fn forget_ingest_state(&self, device_id: &str) {
        self.lock_ingest(device_id).forget(device_id);
    }

    pub fn inventory(&self, device_id: &str) -> Result<Option<v1::Inventory>> {
        self.telemetry
            .get(series::inventory_key(device_id))?
            .map(|v| {
                v1::Inventory::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                    key: format!("inventory of {device_id}"),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Stores one validated batch for a device (not yet durable). A batch whose
    /// sequence is not above the stored one is a resend: nothing is written.
    pub fn ingest(
        &self,
        device_id: &str,
        batch: &v1::ReportBatch,
        now_ms: i64,
    ) -> Result<Ingested> {
        let mut hot = self.lock_ingest(device_id);
        let (cached, table) = self.cached_hot(&mut hot, device_id)?;
        if batch.sequence <= cached.last_sequence {
            return Ok(Ingested {
                acked_sequence: cached.last_sequence,
                stored: false,
                need_inventory: false,
                clone_suspected: batch.collected_at_unix_ms > cached.last_collected_ms,
                need_full_software: false,
            });
        }
        let old_inventory = match &batch.inventory {
            Some(_) if self.events.wanted() => self.inventory(device_id)?,
            _ => None,
        };
        // Changed on a copy: the cache takes it only once the batch is applied.
        let mut state = cached.clone();
        let mut writes = sled::Batch::default();
        let need_full_software = software::stage(
            &self.telemetry,
            &mut writes,
            device_id,
            batch,
            &state.inventory_hash,
            now_ms,
        )?;
        if let Some(inventory) = &batch.inventory {
            let hash = vakt_proto::inventory_hash(inventory);
            writes.insert(series::inventory_key(device_id), inventory.encode_to_vec());
            state.inventory_hash = hash;
            if !inventory.hostname.is_empty() {
                state.hostname.clone_from(&inventory.hostname);
            }
        }
        state.advance(batch, now_ms);
        let children = self.stage_children(device_id, batch, now_ms, &mut writes)?;
        // One compact log record per report, folded into chunks later
        // (`compact.rs`): one sled key instead of one per sample. This path
        // writes several keys anyway, so `s/` is brought up to date too.
        // Encoded last: from here the cached table may hold new series, and
        // only the batch below can fail before they are stored.
        if !batch.samples.is_empty() {
            writes.insert(
                series::log_key(device_id, batch.sequence),
                log::encode(&state, batch, table),
            );
            if table.changed() {
                writes.insert(series::table_key(device_id), table.encode());
            }
        }
        writes.insert(series::state_key(device_id), encode_json(&state));
        if let Err(e) = self.telemetry.apply_batch(writes) {
            hot.forget_table(device_id);
            return Err(e.into());
        }
        table.saved();
        cached.clone_from(&state);
        drop(hot);
        children.audit(self, now_ms)?;
        if self.events.wanted() {
            self.events
                .stored(ReportStored::of(device_id, batch, now_ms, old_inventory));
        }
        let need_inventory =
            !batch.inventory_hash.is_empty() && batch.inventory_hash != state.inventory_hash;
        Ok(Ingested {
            acked_sequence: state.last_sequence,
            stored: true,
            need_inventory,
            clone_suspected: false,
            need_full_software,
        })
    }
}

impl Registration {
    fn identifiers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("serial", self.serial.as_str()),
            ("uuid", self.product_uuid.as_str()),
            ("mid", self.machine_id.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
    }
}

fn index_key(kind: &str, value: &str) -> Vec<u8> {
    [kind.as_bytes(), b"/", value.as_bytes()].concat()
}

fn stripe_of(device_id: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    device_id.hash(&mut h);
    (h.finish() % INGEST_LOCK_STRIPES as u64) as usize
}

fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode_json<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn flatten<T>(outcome: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    match outcome {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

fn flatten_tx(err: TransactionError<()>) -> StoreError {
    match err {
        TransactionError::Abort(()) => StoreError::Corrupt {
            key: "transaction".into(),
            reason: "aborted".into(),
        },
        TransactionError::Storage(e) => e.into(),
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
