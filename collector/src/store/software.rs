//! Installed software and the inventory change history (issue 4).
//!
//! Everything here is written into the same `sled::Batch` as the report that
//! carried it (see `Store::ingest`), so the stored set, its hash and the
//! device's last sequence can never disagree after a crash. Keys in the
//! `telemetry` tree (`\x1f` separates; validation refuses control characters,
//! and device ids are `[a-z0-9-]`):
//!
//! - `sws/<device>`                  → the set's hash, size, last change (JSON)
//! - `sw/<device>\x1f<name>\x1f<arch>`  → one installed package (protobuf)
//! - `swp/<name>\x1f<device>\x1f<arch>` → its version: "which devices have P"
//!   is one prefix scan, however large the fleet
//! - `ih/<device>\x1f<ms><seq>`       → one inventory or software change
//!   (protobuf `InventoryChange`; big-endian time, then sequence)

use super::{Result, Store, StoreError, decode_json, encode_json, hex_bytes, series};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vakt_proto::v1;
use vakt_proto::validate::MAX_HISTORY_PACKAGES;

const SEP: u8 = 0x1f;

/// What the collector holds of a device's software set.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SoftwareState {
    /// `vakt_proto::software_hash` of the stored set; empty = none stored.
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
    pub package_count: u32,
    pub updated_at_ms: i64,
}

type Key = (String, String);
type Set = BTreeMap<Key, v1::Package>;

fn state_key(device_id: &str) -> Vec<u8> {
    [b"sws/", device_id.as_bytes()].concat()
}

fn package_prefix(device_id: &str) -> Vec<u8> {
    let mut key = [b"sw/", device_id.as_bytes()].concat();
    key.push(SEP);
    key
}

fn package_key(device_id: &str, name: &str, arch: &str) -> Vec<u8> {
    let mut key = package_prefix(device_id);
    key.extend_from_slice(name.as_bytes());
    key.push(SEP);
    key.extend_from_slice(arch.as_bytes());
    key
}

fn index_prefix(name: &str) -> Vec<u8> {
    let mut key = [b"swp/", name.as_bytes()].concat();
    key.push(SEP);
    key
}

fn index_key(name: &str, device_id: &str, arch: &str) -> Vec<u8> {
    let mut key = index_prefix(name);
    key.extend_from_slice(device_id.as_bytes());
    key.push(SEP);
    key.extend_from_slice(arch.as_bytes());
    key
}

fn history_prefix(device_id: &str) -> Vec<u8> {
    let mut key = [b"ih/", device_id.as_bytes()].concat();
    key.push(SEP);
    key
}

fn history_key(device_id: &str, at_ms: i64, sequence: u64) -> Vec<u8> {
    let mut key = history_prefix(device_id);
    key.extend_from_slice(&series::timestamp_bytes(at_ms));
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    }
}

fn read_state(tree: &sled::Tree, device_id: &str) -> Result<SoftwareState> {
    Ok(tree
        .get(state_key(device_id))?
        .map(|v| decode_json(device_id, &v))
        .transpose()?
        .unwrap_or_default())
}

fn read_set(tree: &sled::Tree, device_id: &str) -> Result<Set> {
    let mut set = Set::new();
    for item in tree.scan_prefix(package_prefix(device_id)) {
        let (k, v) = item?;
        let p = v1::Package::decode(v.as_ref()).map_err(|e| corrupt(&k, e))?;
        set.insert((p.name.clone(), p.architecture.clone()), p);
    }
    Ok(set)
}

/// Stages what a report's inventory and software change into `writes`.
/// `previous_inventory_hash` is the stored hash before this report. Returns
/// whether the collector now lacks the software set the agent described (the
/// ack then asks for the full list).
pub(super) fn stage(
    tree: &sled::Tree,
    writes: &mut sled::Batch,
    device_id: &str,
    batch: &v1::ReportBatch,
    previous_inventory_hash: &[u8],
    now_ms: i64,
) -> Result<bool> {
    if let Some(inventory) = &batch.inventory
        && vakt_proto::inventory_hash(inventory) != previous_inventory_hash
    {
        let previous = tree
            .get(series::inventory_key(device_id))?
            .map(|v| v1::Inventory::decode(v.as_ref()))
            .transpose()
            .map_err(|e| corrupt(&series::inventory_key(device_id), e))?
            .unwrap_or_default();
        if !only_boot_time_wobble(&previous, inventory) {
            let change = v1::InventoryChange {
                at_unix_ms: now_ms,
                sequence: batch.sequence,
                kind: "inventory".into(),
                changed_fields: changed_fields(&previous, inventory),
                ..Default::default()
            };
            writes.insert(
                history_key(device_id, now_ms, batch.sequence),
                change.encode_to_vec(),
            );
        }
    }
    if batch.software.is_none() && batch.software_hash.is_empty() {
        // An agent that cannot read a package database: no lookup on the
        // ingest path for it.
        return Ok(false);
    }
    let mut state = read_state(tree, device_id)?;
    if let Some(changes) = &batch.software {
        stage_software(
            tree,
            writes,
            device_id,
            batch.sequence,
            changes,
            &mut state,
            now_ms,
        )?;
    }
    Ok(!batch.software_hash.is_empty() && batch.software_hash != state.hash)
}

fn stage_software(
    tree: &sled::Tree,
    writes: &mut sled::Batch,
    device_id: &str,
    sequence: u64,
    changes: &v1::SoftwareChanges,
    state: &mut SoftwareState,
    now_ms: i64,
) -> Result<()> {
    if !changes.full && changes.base_hash != state.hash {
        tracing::info!(
            device_id,
            sequence,
            "software diff against a set this collector does not hold; asking for the full list"
        );
        return Ok(());
    }
    let old = read_set(tree, device_id)?;
    let mut new = if changes.full {
        Set::new()
    } else {
        old.clone()
    };
    for k in &changes.removed {
        new.remove(&(k.name.clone(), k.architecture.clone()));
    }
    for p in &changes.upserted {
        new.insert((p.name.clone(), p.architecture.clone()), p.clone());
    }
    let hash = vakt_proto::software_hash(new.values());
    if hash != changes.result_hash {
        // The agent's idea of the result differs from what applying its own
        // change gives: keep what is stored and ask for the list.
        tracing::warn!(
            device_id,
            sequence,
            "software change does not produce its result hash"
        );
        return Ok(());
    }
    let mut entry = v1::InventoryChange {
        at_unix_ms: now_ms,
        sequence,
        kind: "software".into(),
        incremental: !changes.full,
        ..Default::default()
    };
    let mut record = |name: &str, arch: &str, old: &str, new: &str| {
        if entry.packages.len() < MAX_HISTORY_PACKAGES {
            entry.packages.push(v1::PackageChange {
                name: name.to_owned(),
                architecture: arch.to_owned(),
                old_version: old.to_owned(),
                new_version: new.to_owned(),
            });
        }
    };
    for ((name, arch), p) in &old {
        if !new.contains_key(&(name.clone(), arch.clone())) {
            writes.remove(package_key(device_id, name, arch));
            writes.remove(index_key(name, device_id, arch));
            entry.removed += 1;
            record(name, arch, &p.version, "");
        }
    }
    for ((name, arch), p) in &new {
        let before = old.get(&(name.clone(), arch.clone()));
        if before == Some(p) {
            continue;
        }
        writes.insert(package_key(device_id, name, arch), p.encode_to_vec());
        writes.insert(index_key(name, device_id, arch), p.version.as_bytes());
        match before {
            Some(b) => {
                entry.changed += 1;
                record(name, arch, &b.version, &p.version);
            }
            None => {
                entry.added += 1;
                record(name, arch, "", &p.version);
            }
        }
    }
    // A full list that changes nothing (sent because the agent restarted or
    // was asked) is not history; the first list, even empty, is.
    if entry.added + entry.removed + entry.changed > 0 || state.hash.is_empty() {
        writes.insert(
            history_key(device_id, now_ms, sequence),
            entry.encode_to_vec(),
        );
        state.updated_at_ms = now_ms;
    }
    state.hash = hash;
    state.package_count = u32::try_from(new.len()).unwrap_or(u32::MAX);
    writes.insert(state_key(device_id), encode_json(state));
    Ok(())
}

/// The kernel derives `btime` from the wall clock, so NTP adjustments move the
/// boot time by a second or so without a reboot; that alone is not history.
const BOOT_TIME_WOBBLE_MS: i64 = 60_000;

fn only_boot_time_wobble(old: &v1::Inventory, new: &v1::Inventory) -> bool {
    let wobble = (old.boot_time_unix_ms - new.boot_time_unix_ms).abs() <= BOOT_TIME_WOBBLE_MS;
    let same_otherwise = v1::Inventory {
        boot_time_unix_ms: old.boot_time_unix_ms,
        ..new.clone()
    } == *old;
    wobble && same_otherwise
}

/// The inventory fields whose value differs (every set field for a first
/// inventory). Fields added to `Inventory` later and not named here show as
/// "other".
fn changed_fields(old: &v1::Inventory, new: &v1::Inventory) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! compare {
        ($($field:ident),* $(,)?) => {
            $(if old.$field != new.$field {
                out.push(stringify!($field).to_owned());
            })*
        };
    }
    compare!(
        hostname,
        os_name,
        os_version,
        kernel_version,
        architecture,
        cpu_model,
        cpu_logical_cores,
        cpu_physical_cores,
        memory_total_bytes,
        swap_total_bytes,
        disks,
        network_interfaces,
        serial,
        product_uuid,
        machine_id,
        manufacturer,
        model,
        bios_version,
        bios_date,
        chassis_type,
        agent_version,
        boot_time_unix_ms,
        batteries,
    );
    if out.is_empty() {
        out.push("other".to_owned());
    }
    out
}

/// One device that has a package installed.
#[derive(Clone, Debug, PartialEq)]
pub struct PackageInstall {
    pub device_id: String,
    pub architecture: String,
    pub version: String,
}

impl Store {
    pub fn software_state(&self, device_id: &str) -> Result<SoftwareState> {
        read_state(&self.telemetry, device_id)
    }

    /// The device's installed packages, sorted by name then architecture.
    pub fn packages(&self, device_id: &str) -> Result<Vec<v1::Package>> {
        Ok(read_set(&self.telemetry, device_id)?
            .into_values()
            .collect())
    }

    /// Inventory and software changes at or after `since_ms`, oldest first;
    /// the newest `limit` when there are more.
    pub fn inventory_history(
        &self,
        device_id: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<v1::InventoryChange>> {
        let prefix = history_prefix(device_id);
        let from = history_key(device_id, since_ms, 0);
        let mut out = std::collections::VecDeque::new();
        for item in self.telemetry.range(from..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push_back(v1::InventoryChange::decode(v.as_ref()).map_err(|e| corrupt(&k, e))?);
            if out.len() > limit {
                out.pop_front();
            }
        }
        Ok(out.into())
    }

    /// Every device that has a package of this exact name installed.
    pub fn find_package(&self, name: &str) -> Result<Vec<PackageInstall>> {
        let prefix = index_prefix(name);
        let mut out = Vec::new();
        for item in self.telemetry.scan_prefix(&prefix) {
            let (k, v) = item?;
            let rest = &k[prefix.len()..];
            let Some(at) = rest.iter().position(|b| *b == SEP) else {
                return Err(corrupt(&k, "package index key without architecture"));
            };
            out.push(PackageInstall {
                device_id: String::from_utf8_lossy(&rest[..at]).into_owned(),
                architecture: String::from_utf8_lossy(&rest[at + 1..]).into_owned(),
                version: String::from_utf8_lossy(&v).into_owned(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "software_tests.rs"]
mod tests;
