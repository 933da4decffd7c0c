//! The alert engine's pass over every device (its 15-s tick), decoding only
//! what its rules read and borrowing from sled's buffers: no full
//! `DeviceRecord` (serials, certificate history, owner, …) per device per tick.

use super::{Flag, Store, StoreError};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The fields of a device record that time-based alert rules need.
#[derive(Debug, Default, Deserialize)]
pub struct DeviceForAlerts<'a> {
    #[serde(borrow)]
    pub device_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub class: Cow<'a, str>,
    #[serde(borrow, default)]
    pub department: Cow<'a, str>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub registered_at_ms: i64,
    #[serde(borrow, default)]
    pub enrolled_hostname: Cow<'a, str>,
    #[serde(default)]
    pub revoked_at_ms: i64,
    #[serde(default)]
    pub flags: Vec<Flag>,
}

impl Store {
    /// Calls `visit` for every registered device, in id order, streaming
    /// over the tree; stops at the first error `visit` returns.
    pub fn for_each_device_for_alerts<E: From<StoreError>>(
        &self,
        mut visit: impl FnMut(&DeviceForAlerts<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        for item in self.devices.iter() {
            let (key, value) = item.map_err(StoreError::from)?;
            let device: DeviceForAlerts<'_> =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: e.to_string(),
                })?;
            visit(&device)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeviceRecord;

    #[test]
    fn the_partial_decode_reads_what_a_full_record_holds() {
        let mut record = DeviceRecord {
            device_id: "d-1".into(),
            serial: "SN-1".into(),
            class: "server".into(),
            department: "IT \"ops\"".into(),
            registered_at_ms: 5,
            enrolled_hostname: "web-1".into(),
            revoked_at_ms: 0,
            issued_serials: vec!["a".into(), "b".into()],
            flags: vec![Flag {
                kind: "clone-suspected".into(),
                at_ms: 7,
                detail: "seq went back".into(),
            }],
            ..Default::default()
        };
        record.labels.insert("rack".into(), "r1".into());
        let json = serde_json::to_vec(&record).unwrap();
        let brief: DeviceForAlerts<'_> = serde_json::from_slice(&json).unwrap();
        assert_eq!(brief.device_id, "d-1");
        assert_eq!(brief.class, "server");
        assert_eq!(brief.department, "IT \"ops\"");
        assert_eq!(brief.labels, record.labels);
        assert_eq!(brief.registered_at_ms, 5);
        assert_eq!(brief.enrolled_hostname, "web-1");
        assert_eq!(brief.flags, record.flags);
    }
}
