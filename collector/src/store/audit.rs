//! The audit log: the `audit` tree, keyed by time.

use super::{AuditEntry, AuditFilter, Result, Store, decode_json, encode_json, series};

impl Store {
    /// Appends to the audit log (durable with the next `durable()`).
    pub fn audit(&self, entry: &AuditEntry) -> Result<()> {
        // Time-ordered keys; the id breaks ties between entries of one millisecond.
        let id = self.db.generate_id()?;
        let mut key = series::timestamp_bytes(entry.at_ms).to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        self.audit.insert(key, encode_json(entry))?;
        Ok(())
    }

    /// The newest `limit` matching entries, oldest first.
    pub fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        let start = series::timestamp_bytes(filter.since_ms).to_vec();
        for item in self.audit.range(start..).rev() {
            let (k, v) = item?;
            let entry: AuditEntry = decode_json(&hex::encode(&k), &v)?;
            if !entry.action.starts_with(&filter.action_prefix) {
                continue;
            }
            if !filter.target.is_empty() && entry.target != filter.target {
                continue;
            }
            out.push(entry);
            if out.len() >= filter.limit {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }
}
