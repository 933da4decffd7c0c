//! Registrations, one-time tokens, enrollment, revocation and flags: the
//! `devices`, `index`, `tokens` and `denylist` trees.

use super::{
    DeviceRecord, Flag, IngestState, MAX_FLAGS, MAX_ISSUED_SERIALS, Registration, Result, Store,
    TokenRecord, decode_json, encode_json, flatten, flatten_tx, index_key, series,
};
use serde::Deserialize;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::borrow::Cow;

/// The fields of a device record that fleet-wide counts need, decoded without
/// the rest (labels, flags, serials) and borrowing from sled's buffer: a scan
/// of 50,000 devices then allocates almost nothing.
#[derive(Debug, Default, Deserialize)]
pub struct DeviceBrief<'a> {
    #[serde(borrow)]
    pub class: Cow<'a, str>,
    #[serde(borrow)]
    pub department: Cow<'a, str>,
    #[serde(default)]
    pub revoked_at_ms: i64,
}

/// The fields of a device's ingest state that its status needs.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct StateBrief {
    pub last_seen_ms: i64,
    pub last_event: i32,
    pub last_event_ms: i64,
}

impl Store {
    pub fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.devices
            .get(device_id)?
            .map(|v| decode_json(device_id, &v))
            .transpose()
    }

    pub fn devices(&self) -> Result<Vec<DeviceRecord>> {
        self.devices
            .iter()
            .map(|item| {
                let (k, v) = item?;
                decode_json(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// Calls `visit` for every registered device with the fields its status
    /// and fleet grouping need, streaming over the tree instead of collecting
    /// every full record first (what `devices` does).
    pub fn for_each_device_brief(
        &self,
        mut visit: impl FnMut(&DeviceBrief<'_>, &StateBrief),
    ) -> Result<()> {
        for item in self.devices.iter() {
            let (key, value) = item?;
            let id = String::from_utf8_lossy(&key);
            let device: DeviceBrief<'_> =
                serde_json::from_slice(&value).map_err(|e| super::StoreError::Corrupt {
                    key: id.clone().into_owned(),
                    reason: e.to_string(),
                })?;
            let state = self.ingest_state_brief(&id)?;
            visit(&device, &state);
        }
        Ok(())
    }

    /// Whether the database answers: one read, whatever the fleet size (the
    /// readiness probe runs every few seconds).
    pub fn ready(&self) -> Result<()> {
        self.devices.first()?;
        Ok(())
    }

    /// Finds a device by id, serial, product UUID, machine id or hostname.
    pub fn find_device(&self, needle: &str) -> Result<Option<DeviceRecord>> {
        if let Some(device) = self.device(needle)? {
            return Ok(Some(device));
        }
        for kind in ["serial", "uuid", "mid"] {
            if let Some(id) = self.index.get(index_key(kind, needle))? {
                return self.device(&String::from_utf8_lossy(&id));
            }
        }
        for device in self.devices()? {
            let state = self.ingest_state(&device.device_id)?;
            if state.hostname == needle || device.enrolled_hostname == needle {
                return Ok(Some(device));
            }
        }
        Ok(None)
    }

    /// Registers a device, or updates the one registered with the same serial
    /// (product UUID, machine id), and gives it a new token; the old token of
    /// that device stops working. Returns the record and whether it is new.
    pub async fn register(
        &self,
        registration: Registration,
        new_device_id: String,
        token_id: String,
        token: TokenRecord,
    ) -> Result<(DeviceRecord, bool)> {
        let _guard = self.registration_lock.lock().await;
        let mut existing = None;
        for (kind, value) in registration.identifiers() {
            if let Some(id) = self.index.get(index_key(kind, value))? {
                // A revoked device keeps its identity for the record; the
                // same hardware registered again gets a new one.
                existing = self
                    .device(&String::from_utf8_lossy(&id))?
                    .filter(|d| d.revoked_at_ms == 0);
                if existing.is_some() {
                    break;
                }
            }
        }
        let created = existing.is_none();
        let mut record = existing.unwrap_or_else(|| DeviceRecord {
            device_id: new_device_id,
            registered_at_ms: token.created_at_ms,
            ..Default::default()
        });
        let old_token = record.token_id.replace(token_id.clone());
        // An update changes what it names and keeps the rest, so re-running
        // `register --serial S` to get a fresh token does not wipe the
        // department or labels given the first time.
        let keep_or = |field: &mut String, given: String| {
            if !given.is_empty() {
                *field = given;
            }
        };
        keep_or(&mut record.serial, registration.serial.clone());
        keep_or(&mut record.product_uuid, registration.product_uuid.clone());
        keep_or(&mut record.machine_id, registration.machine_id.clone());
        keep_or(&mut record.model, registration.model);
        if registration.class != "unknown" {
            keep_or(&mut record.class, registration.class);
        } else if record.class.is_empty() {
            record.class = registration.class;
        }
        keep_or(&mut record.department, registration.department);
        keep_or(&mut record.owner, registration.owner);
        keep_or(&mut record.via_gateway, registration.via_gateway);
        if !registration.labels.is_empty() {
            record.labels = registration.labels;
        }
        let token = TokenRecord {
            device_id: record.device_id.clone(),
            ..token
        };
        let device_json = encode_json(&record);
        let token_json = encode_json(&token);
        let identifiers: Vec<Vec<u8>> = [
            ("serial", &record.serial),
            ("uuid", &record.product_uuid),
            ("mid", &record.machine_id),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| index_key(k, v))
        .collect();
        let device_id = record.device_id.clone();
        (&self.devices, &self.index, &self.tokens)
            .transaction(|(devices, index, tokens)| {
                if let Some(old) = &old_token {
                    tokens.remove(old.as_bytes())?;
                }
                tokens.insert(token_id.as_bytes(), token_json.as_slice())?;
                devices.insert(device_id.as_bytes(), device_json.as_slice())?;
                for key in &identifiers {
                    index.insert(key.as_slice(), device_id.as_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(flatten_tx)?;
        Ok((record, created))
    }

    /// Applies `change` to a device record atomically; `None` if it is unknown.
    pub fn update_device(
        &self,
        device_id: &str,
        change: impl Fn(&mut DeviceRecord),
    ) -> Result<Option<DeviceRecord>> {
        let mut updated = None;
        self.devices.fetch_and_update(device_id, |old| {
            let mut record: DeviceRecord = serde_json::from_slice(old?).ok()?;
            change(&mut record);
            let bytes = encode_json(&record);
            updated = Some(record);
            Some(bytes)
        })?;
        Ok(updated)
    }

    pub fn token(&self, token_id: &str) -> Result<Option<TokenRecord>> {
        self.tokens
            .get(token_id)?
            .map(|v| decode_json(token_id, &v))
            .transpose()
    }

    /// Marks the token used and records the enrollment, atomically: of two
    /// concurrent enrollments with one token, exactly one gets `Ok(Some)`.
    pub fn complete_enrollment(
        &self,
        token_id: &str,
        now_ms: i64,
        enrolled: impl Fn(&mut DeviceRecord),
    ) -> Result<Option<DeviceRecord>> {
        // Fold the previous instance's reports first: its log records carry
        // the device's newest state, and the new instance's sequence starts
        // again from 1, so its records would otherwise reuse their keys.
        if let Some(token) = self.token(token_id)? {
            self.fold_device(&token.device_id)?;
        }
        let outcome = (&self.tokens, &self.devices, &self.telemetry, &self.denylist).transaction(
            |(tokens, devices, telemetry, denylist)| {
                let Some(raw) = tokens.get(token_id.as_bytes())? else {
                    return Ok(None);
                };
                let mut token: TokenRecord =
                    decode_json(token_id, &raw).map_err(ConflictableTransactionError::Abort)?;
                if token.used_at_ms != 0 || token.expires_at_ms <= now_ms {
                    return Ok(None);
                }
                token.used_at_ms = now_ms;
                let device_id = token.device_id.clone();
                let Some(raw) = devices.get(device_id.as_bytes())? else {
                    return Ok(None);
                };
                let mut device: DeviceRecord =
                    decode_json(&device_id, &raw).map_err(ConflictableTransactionError::Abort)?;
                if device.token_id.as_deref() != Some(token_id) {
                    return Ok(None);
                }
                device.token_id = None;
                // A new enrollment is a new agent instance with a new key: the
                // certificates of the previous one stop working, and its
                // report sequence starts again from 1 (not a clone).
                let previous = std::mem::take(&mut device.issued_serials);
                for serial in &previous {
                    denylist.insert(serial.as_bytes(), device_id.as_bytes())?;
                }
                // The previous instance's log records were folded just
                // before, so `s/` is current; the new generation makes any
                // record it still sends meanwhile stale (`stored_state`).
                let state_key = series::state_key(&device_id);
                let mut state: IngestState = match telemetry.get(&state_key)? {
                    Some(raw) => decode_json(&device_id, &raw)
                        .map_err(ConflictableTransactionError::Abort)?,
                    None => IngestState::default(),
                };
                state.last_sequence = 0;
                state.last_collected_ms = 0;
                state.generation = state.generation.wrapping_add(1);
                telemetry.insert(state_key, encode_json(&state))?;
                enrolled(&mut device);
                tokens.insert(token_id.as_bytes(), encode_json(&token))?;
                devices.insert(device_id.as_bytes(), encode_json(&device))?;
                Ok(Some(device))
            },
        );
        let done = flatten(outcome)?;
        if let Some(device) = &done {
            // The transaction reset the stored sequence; the hot copy is stale.
            self.forget_ingest_state(&device.device_id);
        }
        Ok(done)
    }

    /// Gives an existing device a new one-time token; its previous token stops
    /// working. `None` if the device is unknown.
    pub fn reissue_token(
        &self,
        device_id: &str,
        token_id: &str,
        token: TokenRecord,
    ) -> Result<Option<DeviceRecord>> {
        let token = TokenRecord {
            device_id: device_id.to_owned(),
            ..token
        };
        let token_json = encode_json(&token);
        let outcome = (&self.devices, &self.tokens).transaction(|(devices, tokens)| {
            let Some(raw) = devices.get(device_id.as_bytes())? else {
                return Ok(None);
            };
            let mut device: DeviceRecord =
                decode_json(device_id, &raw).map_err(ConflictableTransactionError::Abort)?;
            if let Some(old) = device.token_id.replace(token_id.to_owned()) {
                tokens.remove(old.as_bytes())?;
            }
            tokens.insert(token_id.as_bytes(), token_json.as_slice())?;
            devices.insert(device_id.as_bytes(), encode_json(&device))?;
            Ok(Some(device))
        });
        flatten(outcome)
    }

    /// Revokes a device: marks it, drops its pending token and denylists every
    /// certificate serial it was ever issued. Idempotent.
    pub fn revoke(&self, device_id: &str, now_ms: i64) -> Result<Option<DeviceRecord>> {
        let outcome = (&self.devices, &self.tokens, &self.denylist).transaction(
            |(devices, tokens, denylist)| {
                let Some(raw) = devices.get(device_id.as_bytes())? else {
                    return Ok(None);
                };
                let mut device: DeviceRecord =
                    decode_json(device_id, &raw).map_err(ConflictableTransactionError::Abort)?;
                if device.revoked_at_ms == 0 {
                    device.revoked_at_ms = now_ms;
                }
                if let Some(token) = device.token_id.take() {
                    tokens.remove(token.as_bytes())?;
                }
                for serial in &device.issued_serials {
                    denylist.insert(serial.as_bytes(), device_id.as_bytes())?;
                }
                devices.insert(device_id.as_bytes(), encode_json(&device))?;
                Ok(Some(device))
            },
        );
        flatten(outcome)
    }

    pub fn is_denylisted(&self, cert_serial: &str) -> Result<bool> {
        Ok(self.denylist.contains_key(cert_serial)?)
    }

    /// Records a certificate issued to a device (enrollment or renewal).
    pub fn record_certificate(record: &mut DeviceRecord, serial: &str, not_after_ms: i64) {
        record.cert_serial = serial.to_owned();
        record.cert_not_after_ms = not_after_ms;
        record.issued_serials.push(serial.to_owned());
        if record.issued_serials.len() > MAX_ISSUED_SERIALS {
            // Serials this old have long expired; the certificate check
            // refuses them on expiry regardless.
            let excess = record.issued_serials.len() - MAX_ISSUED_SERIALS;
            record.issued_serials.drain(..excess);
        }
    }

    /// Adds a flag unless one of the same kind was raised within `quiet_ms`.
    /// Returns whether it was added.
    pub fn flag_device(&self, device_id: &str, flag: Flag, quiet_ms: i64) -> Result<bool> {
        // update_device may retry its closure; the last run's verdict counts.
        let added = std::cell::Cell::new(false);
        self.update_device(device_id, |d| {
            let recent = d
                .flags
                .iter()
                .any(|f| f.kind == flag.kind && flag.at_ms - f.at_ms < quiet_ms);
            added.set(!recent);
            if !recent {
                d.flags.push(flag.clone());
                if d.flags.len() > MAX_FLAGS {
                    d.flags.remove(0);
                }
            }
        })?;
        Ok(added.get())
    }
}
