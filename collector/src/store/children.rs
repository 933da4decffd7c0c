//! Tablet-gateway children: which reported child a gateway may speak for, and
//! what is stored about accepted and refused ones. Everything a report changes
//! is appended to the same `sled::Batch` as the gateway's own report, so a
//! crash never keeps one without the other.
//!
//! Keys in the `telemetry` tree:
//! - `gw/c/<child device id>` → the child's last reported state (`ChildState`, protobuf)
//! - `gw/g/<gateway device id>` → the gateway's refused children and its
//!   invalid-line count (JSON)

use super::{DeviceRecord, Result, Store, StoreError, decode_json, encode_json, index_key};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use vakt_proto::v1;

/// Refused identifiers remembered per gateway; the least recently seen is
/// forgotten first, so a source gone mad cannot grow the record without bound.
pub const MAX_REFUSED_PER_GATEWAY: usize = 512;
/// Audit entries one report may add for newly refused identifiers; beyond it,
/// one summary entry. A gateway inventing identifiers cannot flood the log.
pub const MAX_REFUSED_AUDITS_PER_REPORT: usize = 16;

/// Whether a gateway may also speak for tablets registered (without `--via`)
/// in its own department. Off unless the collector config turns it on.
#[derive(Debug, Default)]
pub struct ChildPolicy {
    by_department: AtomicBool,
}

impl ChildPolicy {
    pub fn set_accept_by_department(&self, on: bool) {
        self.by_department.store(on, Ordering::Relaxed);
    }
}

/// A refused child, as remembered for its gateway.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RefusedRecord {
    pub identifier: String,
    pub serial: String,
    pub reason: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub count: u64,
}

/// What the collector remembers about a gateway's children.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GatewayRecord {
    pub refused: Vec<RefusedRecord>,
    pub invalid_lines_total: u64,
}

/// The part of a report's effect that happens after its batch is applied:
/// audit entries for identifiers refused for the first time.
#[derive(Debug, Default)]
#[must_use]
pub struct Staged {
    gateway_id: String,
    newly_refused: Vec<RefusedRecord>,
}

fn child_key(device_id: &str) -> Vec<u8> {
    [b"gw/c/", device_id.as_bytes()].concat()
}

fn gateway_key(device_id: &str) -> Vec<u8> {
    [b"gw/g/", device_id.as_bytes()].concat()
}

impl Store {
    pub fn child_policy(&self) -> &ChildPolicy {
        &self.child_policy
    }

    /// What the gateway last reported about a child device.
    pub fn child_state(&self, device_id: &str) -> Result<Option<v1::ChildState>> {
        self.telemetry
            .get(child_key(device_id))?
            .map(|v| {
                v1::ChildState::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                    key: format!("child state of {device_id}"),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// The refused children and invalid-line count of a gateway.
    pub fn gateway_record(&self, device_id: &str) -> Result<GatewayRecord> {
        Ok(self
            .telemetry
            .get(gateway_key(device_id))?
            .map(|v| decode_json(device_id, &v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Every gateway's refused children, gateway id first.
    pub fn refused_children(&self) -> Result<Vec<(String, RefusedRecord)>> {
        let mut out = Vec::new();
        for item in self.telemetry.scan_prefix(b"gw/g/") {
            let (key, value) = item?;
            let gateway = String::from_utf8_lossy(&key[5..]).into_owned();
            let record: GatewayRecord = decode_json(&gateway, &value)?;
            out.extend(record.refused.into_iter().map(|r| (gateway.clone(), r)));
        }
        Ok(out)
    }

    /// Decides each child of a gateway's batch and appends what changes to
    /// `writes`. The caller holds the gateway's ingest lock, which serializes
    /// the read-modify-write of its gateway record.
    pub(super) fn stage_children(
        &self,
        gateway_id: &str,
        batch: &v1::ReportBatch,
        now_ms: i64,
        writes: &mut sled::Batch,
    ) -> Result<Staged> {
        let mut staged = Staged {
            gateway_id: gateway_id.to_owned(),
            ..Default::default()
        };
        if batch.children.is_empty() && batch.invalid_child_lines == 0 {
            return Ok(staged);
        }
        let gateway = self.device(gateway_id)?.unwrap_or_default();
        let mut record = self.gateway_record(gateway_id)?;
        record.invalid_lines_total = record
            .invalid_lines_total
            .saturating_add(u64::from(batch.invalid_child_lines));
        let by_department = self.child_policy.by_department.load(Ordering::Relaxed);
        for child in &batch.children {
            match self.decide(&gateway, child, by_department)? {
                Ok(device_id) => {
                    let state = v1::ChildState {
                        reported: Some(child.clone()),
                        gateway_device_id: gateway_id.to_owned(),
                        reported_at_unix_ms: now_ms,
                    };
                    writes.insert(child_key(&device_id), state.encode_to_vec());
                    // Registered since it was refused: no longer a refusal.
                    record.refused.retain(|r| r.identifier != child.identifier);
                }
                Err(reason) => {
                    match record
                        .refused
                        .iter_mut()
                        .find(|r| r.identifier == child.identifier)
                    {
                        Some(known) => {
                            known.serial.clone_from(&child.serial);
                            known.reason = reason;
                            known.last_seen_ms = now_ms;
                            known.count = known.count.saturating_add(1);
                        }
                        None => {
                            let new = RefusedRecord {
                                identifier: child.identifier.clone(),
                                serial: child.serial.clone(),
                                reason,
                                first_seen_ms: now_ms,
                                last_seen_ms: now_ms,
                                count: 1,
                            };
                            staged.newly_refused.push(new.clone());
                            record.refused.push(new);
                        }
                    }
                }
            }
        }
        if record.refused.len() > MAX_REFUSED_PER_GATEWAY {
            record
                .refused
                .sort_by_key(|r| std::cmp::Reverse(r.last_seen_ms));
            record.refused.truncate(MAX_REFUSED_PER_GATEWAY);
        }
        record
            .refused
            .sort_by(|a, b| a.identifier.cmp(&b.identifier));
        writes.insert(gateway_key(gateway_id), encode_json(&record));
        Ok(staged)
    }

    /// The registered device a gateway may report as this child, or why not.
    fn decide(
        &self,
        gateway: &DeviceRecord,
        child: &v1::ChildDevice,
        by_department: bool,
    ) -> Result<Result<String, String>> {
        if gateway.class != "gateway" {
            return Ok(Err(
                "the reporting device is not registered as a gateway".into()
            ));
        }
        let Some(device) = self.registered_child(child)? else {
            return Ok(Err("not registered".into()));
        };
        if device.revoked_at_ms != 0 {
            return Ok(Err(format!("{} is revoked", device.device_id)));
        }
        if device.device_id == gateway.device_id {
            return Ok(Err("names the gateway itself".into()));
        }
        if device.via_gateway == gateway.device_id {
            return Ok(Ok(device.device_id));
        }
        if !device.via_gateway.is_empty() {
            return Ok(Err(format!(
                "{} is registered via another gateway ({})",
                device.device_id, device.via_gateway
            )));
        }
        let same_department = by_department
            && !gateway.department.is_empty()
            && device.department == gateway.department
            && device.class == "tablet"
            && device.enrolled_at_ms == 0;
        if same_department {
            return Ok(Ok(device.device_id));
        }
        Ok(Err(format!(
            "{} is not registered via this gateway",
            device.device_id
        )))
    }

    /// The registration a child names: by its serial, else by its identifier
    /// (as a serial, product UUID or machine id).
    fn registered_child(&self, child: &v1::ChildDevice) -> Result<Option<DeviceRecord>> {
        let mut lookups = Vec::new();
        if !child.serial.is_empty() {
            lookups.push(index_key("serial", &child.serial));
        }
        for kind in ["serial", "uuid", "mid"] {
            lookups.push(index_key(kind, &child.identifier));
        }
        for key in lookups {
            if let Some(id) = self.index.get(key)? {
                return self.device(&String::from_utf8_lossy(&id));
            }
        }
        Ok(None)
    }
}

impl Staged {
    /// Audits each identifier refused for the first time (once, not once per
    /// report). Runs after the batch is applied, so a failed write audits nothing.
    pub(super) fn audit(self, store: &Store, now_ms: i64) -> Result<()> {
        let more = self
            .newly_refused
            .len()
            .saturating_sub(MAX_REFUSED_AUDITS_PER_REPORT);
        if more > 0 {
            store.audit(&super::AuditEntry {
                at_ms: now_ms,
                actor: format!("device:{}", self.gateway_id),
                action: "gateway.child_refused".into(),
                target: self.gateway_id.clone(),
                outcome: "refused".into(),
                detail: format!(
                    "{more} more identifiers refused in one report (not audited one by one; see vaktctl devices --refused)"
                ),
                peer: String::new(),
            })?;
        }
        for refused in self
            .newly_refused
            .into_iter()
            .take(MAX_REFUSED_AUDITS_PER_REPORT)
        {
            tracing::warn!(
                gateway = %self.gateway_id,
                identifier = %refused.identifier,
                serial = %refused.serial,
                reason = %refused.reason,
                "gateway child refused"
            );
            store.audit(&super::AuditEntry {
                at_ms: now_ms,
                actor: format!("device:{}", self.gateway_id),
                action: "gateway.child_refused".into(),
                target: self.gateway_id.clone(),
                outcome: "refused".into(),
                detail: format!(
                    "identifier {:?} serial {:?}: {}",
                    refused.identifier, refused.serial, refused.reason
                ),
                peer: String::new(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "children_tests.rs"]
mod tests;
