//! The notification outbox: what receivers still have to hear.
//!
//! Trees: `outbox` (key = 8 big-endian bytes from `Db::generate_id`, value =
//! a [`Notification`] as JSON; written by the alert engine in the same
//! atomic write as the state change), `outbox_acks` (record key ++ receiver
//! name → delivery time: that receiver has it), `outbox_dead` (record key
//! [++ receiver name] → why it was set aside: unreadable records, and
//! records a receiver refused outright). A record leaves `outbox`, with its
//! acks, in the transaction that records the last configured receiver's ack.

use super::{Result, Store, StoreError};
use crate::alerts::notification::Notification;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

pub const OUTBOX_TREE: &str = "outbox";
const ACKS_TREE: &str = "outbox_acks";
const DEAD_TREE: &str = "outbox_dead";

pub type OutboxKey = [u8; 8];

/// The outbox key for an id from `Db::generate_id`: big-endian, so keys sort
/// in the order ids were handed out.
pub fn outbox_key(id: u64) -> OutboxKey {
    id.to_be_bytes()
}

/// One queued record; `notification` is `Err(reason)` when it does not parse.
pub struct Entry {
    pub key: OutboxKey,
    pub notification: std::result::Result<Notification, String>,
}

#[derive(Clone)]
pub struct Outbox {
    db: sled::Db,
    records: sled::Tree,
    acks: sled::Tree,
    dead: sled::Tree,
}

impl Store {
    pub fn outbox(&self) -> Result<Outbox> {
        Ok(Outbox {
            records: self.db.open_tree(OUTBOX_TREE)?,
            acks: self.db.open_tree(ACKS_TREE)?,
            dead: self.db.open_tree(DEAD_TREE)?,
            db: self.db.clone(),
        })
    }
}

fn ack_key(key: &OutboxKey, receiver: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + receiver.len());
    k.extend_from_slice(key);
    k.extend_from_slice(receiver.as_bytes());
    k
}

fn as_key(bytes: &[u8]) -> Option<OutboxKey> {
    bytes.try_into().ok()
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

impl Outbox {
    /// Queues a notification on its own (the engine writes its records inside
    /// its own transactions; this is for tools and tests). Not durable until
    /// the store's next `durable()`.
    pub fn enqueue(&self, notification: &Notification) -> Result<OutboxKey> {
        let key = outbox_key(self.db.generate_id()?);
        let value = serde_json::to_vec(notification).map_err(|e| StoreError::Corrupt {
            key: notification.id.clone(),
            reason: e.to_string(),
        })?;
        self.records.insert(key, value)?;
        Ok(key)
    }

    /// Wakes when anything is written to the outbox.
    pub fn watch(&self) -> sled::Subscriber {
        self.records.watch_prefix(Vec::<u8>::new())
    }

    /// The first record after `after` (from the start if None) that `receiver`
    /// has not taken yet. Reads one record at a time, so memory stays bounded
    /// however long the queue grows.
    pub fn next_for(&self, receiver: &str, after: Option<OutboxKey>) -> Result<Option<Entry>> {
        let range = match after {
            Some(k) => self.records.range((
                std::ops::Bound::Excluded(k.to_vec()),
                std::ops::Bound::Unbounded,
            )),
            None => self.records.iter(),
        };
        for item in range {
            let (k, v) = item?;
            let Some(key) = as_key(&k) else {
                // Not a key the engine writes; set aside like a bad record.
                self.bury_raw(&k, &v, "outbox key is not 8 bytes")?;
                continue;
            };
            if self.acks.contains_key(ack_key(&key, receiver))? {
                continue;
            }
            let notification = serde_json::from_slice(&v).map_err(|e| e.to_string());
            return Ok(Some(Entry { key, notification }));
        }
        Ok(None)
    }

    /// How many records `receiver` has not taken yet.
    pub fn pending_for(&self, receiver: &str) -> Result<u64> {
        let mut n = 0;
        for item in self.records.iter().keys() {
            let k = item?;
            if !self
                .acks
                .contains_key([&k[..], receiver.as_bytes()].concat())?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Records that `receiver` has taken `key`. Once every one of `receivers`
    /// has, the record and all its acks go, in the same transaction. Returns
    /// whether the record left the outbox.
    pub fn ack(&self, key: &OutboxKey, receiver: &str, receivers: &[String]) -> Result<bool> {
        let now = vakt_proto::now_unix_ms().to_be_bytes();
        (&self.records, &self.acks)
            .transaction(|(records, acks)| {
                if records.get(key)?.is_none() {
                    return Ok(false);
                }
                acks.insert(ack_key(key, receiver), &now[..])?;
                for r in receivers {
                    if acks.get(ack_key(key, r))?.is_none() {
                        return Ok(false);
                    }
                }
                records.remove(&key[..])?;
                for r in receivers {
                    acks.remove(ack_key(key, r))?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(true)
            })
            .map_err(tx_error)
    }

    /// Keeps a copy of what `receiver` refused, with the reason, for ops.
    pub fn record_refusal(&self, key: &OutboxKey, receiver: &str, reason: &str) -> Result<()> {
        if let Some(v) = self.records.get(key)? {
            let entry = serde_json::json!({
                "receiver": receiver,
                "reason": reason,
                "record": String::from_utf8_lossy(&v),
            });
            self.dead
                .insert(ack_key(key, receiver), entry.to_string().into_bytes())?;
        }
        Ok(())
    }

    /// Moves an unreadable record out of the queue (into `outbox_dead`), so
    /// it is reported once instead of retried forever.
    /// Returns false if another worker already did.
    pub fn bury(&self, key: &OutboxKey, reason: &str) -> Result<bool> {
        match self.records.get(key)? {
            Some(v) => {
                self.bury_raw(key, &v, reason)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn bury_raw(&self, key: &[u8], value: &[u8], reason: &str) -> Result<()> {
        let entry = serde_json::json!({
            "reason": reason,
            "record": String::from_utf8_lossy(value),
        });
        let entry = entry.to_string().into_bytes();
        (&self.records, &self.dead)
            .transaction(|(records, dead)| {
                records.remove(key)?;
                dead.insert(key, entry.clone())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(tx_error)
    }

    /// Drops acks whose record is gone (left behind by a receiver that was
    /// removed from the config), and lets records that only waited for
    /// receivers no longer configured leave. Run at startup.
    pub fn tidy(&self, receivers: &[String]) -> Result<()> {
        for item in self.acks.iter().keys() {
            let k = item?;
            if k.len() >= 8 && !self.records.contains_key(&k[..8])? {
                self.acks.remove(k)?;
            }
        }
        if receivers.is_empty() {
            // Nobody to deliver to: keep everything for when one is configured.
            return Ok(());
        }
        for item in self.records.iter().keys() {
            let k = item?;
            let Some(key) = as_key(&k) else { continue };
            let all = receivers
                .iter()
                .map(|r| self.acks.contains_key(ack_key(&key, r)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if all.iter().all(|&taken| taken)
                && let Some(last) = receivers.last()
            {
                self.ack(&key, last, receivers)?;
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// How many records were set aside (unreadable or refused).
    pub fn dead_len(&self) -> usize {
        self.dead.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::notification::NotificationStatus;

    fn sample(id: &str) -> Notification {
        Notification {
            id: id.into(),
            fingerprint: "ab".into(),
            status: NotificationStatus::Firing,
            labels: Default::default(),
            annotations: Default::default(),
            starts_at_unix_ms: 1,
            ends_at_unix_ms: None,
            generator_url: String::new(),
        }
    }

    #[tokio::test]
    async fn a_record_leaves_only_when_every_receiver_took_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let outbox = store.outbox().unwrap();
        let receivers = vec!["a".to_owned(), "b".to_owned()];
        let k1 = outbox.enqueue(&sample("1")).unwrap();
        let k2 = outbox.enqueue(&sample("2")).unwrap();
        assert!(k1 < k2);
        let first = outbox.next_for("a", None).unwrap().unwrap();
        assert_eq!(first.key, k1);
        assert!(!outbox.ack(&k1, "a", &receivers).unwrap());
        // a moves on; b still sees the first record.
        assert_eq!(outbox.next_for("a", None).unwrap().unwrap().key, k2);
        assert_eq!(outbox.next_for("b", None).unwrap().unwrap().key, k1);
        assert_eq!(outbox.pending_for("a").unwrap(), 1);
        assert_eq!(outbox.pending_for("b").unwrap(), 2);
        assert!(outbox.ack(&k1, "b", &receivers).unwrap());
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.acks.len(), 0);
        // Acking a record that is gone is a no-op.
        assert!(!outbox.ack(&k1, "a", &receivers).unwrap());
        assert_eq!(outbox.acks.len(), 0);
    }

    #[tokio::test]
    async fn unreadable_records_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let outbox = store.outbox().unwrap();
        outbox
            .records
            .insert(outbox_key(7), &b"{not json"[..])
            .unwrap();
        outbox.records.insert(&b"short"[..], &b"{}"[..]).unwrap();
        let entry = outbox.next_for("a", None).unwrap().unwrap();
        assert!(entry.notification.is_err());
        outbox.bury(&entry.key, "bad json").unwrap();
        assert!(outbox.next_for("a", None).unwrap().is_none());
        assert_eq!(outbox.dead_len(), 2);
    }

    #[tokio::test]
    async fn tidy_releases_records_waiting_only_for_removed_receivers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let outbox = store.outbox().unwrap();
        let old = vec!["a".to_owned(), "gone".to_owned()];
        let k = outbox.enqueue(&sample("1")).unwrap();
        outbox.ack(&k, "a", &old).unwrap();
        outbox.tidy(&["a".to_owned()]).unwrap();
        assert!(outbox.is_empty());
        assert_eq!(outbox.acks.len(), 0);
    }
}
