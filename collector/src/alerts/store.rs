//! The alert engine's sled trees: `alerts` (id → Alert JSON), `silences`
//! (id → Silence JSON) and `outbox` (8 big-endian bytes from
//! `generate_id` → Notification JSON). An alert's new state and the
//! notifications it caused are written in one transaction over `alerts` and
//! `outbox`, so a crash can neither lose a notification nor write one twice;
//! callers then await `Store::durable` (the shared group commit).

use super::lifecycle::Alert;
use super::notification::Notification;
use super::silence::Silence;
use crate::store::{Store, StoreError};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::Path;

pub const ALERTS_TREE: &str = "alerts";
pub const SILENCES_TREE: &str = "silences";
pub const OUTBOX_TREE: &str = "outbox";

pub struct AlertTrees {
    alerts: sled::Tree,
    silences: sled::Tree,
    outbox: sled::Tree,
}

/// A change to one alert: its new record (None: forget it) and what to send.
pub struct Write<'a> {
    pub id: &'a str,
    pub alert: Option<&'a Alert>,
    pub notifications: &'a [(u64, Notification)],
}

impl AlertTrees {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            alerts: store.open_tree(ALERTS_TREE)?,
            silences: store.open_tree(SILENCES_TREE)?,
            outbox: store.open_tree(OUTBOX_TREE)?,
        })
    }

    pub fn load_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        load(&self.alerts)
    }

    pub fn load_silences(&self) -> Result<Vec<Silence>, StoreError> {
        load(&self.silences)
    }

    /// Applies alert changes and their notifications atomically (not yet durable).
    pub fn write(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(writes.len());
        for w in writes {
            let alert = w.alert.map(encode);
            let notes: Vec<([u8; 8], Vec<u8>)> = w
                .notifications
                .iter()
                .map(|(key, n)| (key.to_be_bytes(), encode(n)))
                .collect();
            encoded.push((w.id.as_bytes(), alert, notes));
        }
        let outcome = (&self.alerts, &self.outbox).transaction(|(alerts, outbox)| {
            for (id, alert, notes) in &encoded {
                match alert {
                    Some(bytes) => {
                        alerts.insert(*id, bytes.as_slice())?;
                    }
                    None => {
                        alerts.remove(*id)?;
                    }
                }
                for (key, bytes) in notes {
                    outbox.insert(&key[..], bytes.as_slice())?;
                }
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Corrupt {
                key: "alerts".into(),
                reason: "transaction aborted".into(),
            }),
        }
    }

    pub fn put_silence(&self, silence: &Silence) -> Result<(), StoreError> {
        self.silences
            .insert(silence.id.as_bytes(), encode(silence))?;
        Ok(())
    }

    pub fn remove_silence(&self, id: &str) -> Result<(), StoreError> {
        self.silences.remove(id.as_bytes())?;
        Ok(())
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Plain structs with string keys: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn load<T: for<'de> serde::Deserialize<'de>>(tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (key, value) = item?;
        let decoded = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: e.to_string(),
        })?;
        out.push(decoded);
    }
    Ok(out)
}

/// Every notification in the outbox of a database that no collector has
/// open, oldest first (for tests and post-mortems; the notifier reads the
/// live tree itself).
pub fn read_outbox(db_path: &Path) -> anyhow::Result<Vec<(u64, Notification)>> {
    use anyhow::Context;
    // The store's own config: sled refuses a database opened with another
    // segment size or compression than it was created with.
    let db = crate::store::sled_config::config(db_path, 1 << 20, false)
        .open()
        .with_context(|| format!("open {}", db_path.display()))?;
    let tree = db.open_tree(OUTBOX_TREE)?;
    let mut out = Vec::new();
    for item in tree.iter() {
        let (key, value) = item?;
        let key: [u8; 8] = key
            .as_ref()
            .try_into()
            .context("outbox key is not 8 bytes")?;
        out.push((u64::from_be_bytes(key), serde_json::from_slice(&value)?));
    }
    Ok(out)
}
