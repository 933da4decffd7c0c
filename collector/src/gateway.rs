//! Tablet gateways as ops see them: resolving `--via GATEWAY`, and the child
//! and gateway facts added to the device view (`fleet::device_view` stays
//! about devices that run an agent themselves).

use crate::error::Error;
use crate::store::{DeviceRecord, RefusedRecord, Store, StoreError};
use vakt_proto::v1::{self, DeviceStatus};

/// A child is online while its gateway reported it within this window: the
/// gateway's sources run on their own schedule (minutes, typically), so the
/// agent's report interval says nothing about them. Sources should run at
/// least this often.
pub const CHILD_REPORT_WINDOW_MS: i64 = 3600 * 1000;
/// A child whose MDM last heard from it longer ago than this is offline even
/// though the gateway still lists it.
pub const CHILD_SYNC_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// The device id of the gateway a registration names (id, hostname or
/// serial). It must be a registered, unrevoked device of class gateway.
pub fn resolve_gateway(store: &Store, needle: &str) -> Result<DeviceRecord, tonic::Status> {
    let gateway = store
        .find_device(needle)
        .map_err(Error::from)?
        .ok_or_else(|| {
            tonic::Status::not_found(format!("via_gateway: no device matches {needle:?}"))
        })?;
    if gateway.revoked_at_ms != 0 {
        return Err(tonic::Status::failed_precondition(format!(
            "via_gateway: {} is revoked",
            gateway.device_id
        )));
    }
    if gateway.class != "gateway" {
        return Err(tonic::Status::failed_precondition(format!(
            "via_gateway: {} is registered as class {:?}, not gateway (register it with --class gateway)",
            gateway.device_id, gateway.class
        )));
    }
    Ok(gateway)
}

/// A child device's status: from what its gateway reported, not from reports
/// of its own (it has no agent).
pub fn child_status(
    record: &DeviceRecord,
    child: Option<&v1::ChildState>,
    now_ms: i64,
) -> DeviceStatus {
    if record.revoked_at_ms != 0 {
        return DeviceStatus::Revoked;
    }
    let Some(child) = child else {
        return DeviceStatus::NeverSeen;
    };
    let sync = child.reported.as_ref().map_or(0, |c| c.last_sync_unix_ms);
    let reported_recently =
        now_ms.saturating_sub(child.reported_at_unix_ms) <= CHILD_REPORT_WINDOW_MS;
    let synced_recently = sync == 0 || now_ms.saturating_sub(sync) <= CHILD_SYNC_WINDOW_MS;
    if reported_recently && synced_recently {
        DeviceStatus::Online
    } else {
        DeviceStatus::Offline
    }
}

/// Adds the gateway facts to a device view: for a child, its gateway, what the
/// gateway reported, and a status and last-seen time based on that; for a
/// gateway, the children it reported that were refused.
pub fn decorate(
    store: &Store,
    record: &DeviceRecord,
    view: &mut v1::Device,
    now_ms: i64,
) -> Result<(), StoreError> {
    view.via_gateway.clone_from(&record.via_gateway);
    let child = store.child_state(&record.device_id)?;
    let is_child = !record.via_gateway.is_empty() || child.is_some();
    if is_child && record.enrolled_at_ms == 0 {
        view.status = child_status(record, child.as_ref(), now_ms) as i32;
        if let Some(child) = &child {
            if view.via_gateway.is_empty() {
                view.via_gateway.clone_from(&child.gateway_device_id);
            }
            let sync = child.reported.as_ref().map_or(0, |c| c.last_sync_unix_ms);
            view.last_seen_at_unix_ms = if sync > 0 {
                sync
            } else {
                child.reported_at_unix_ms
            };
        }
    }
    view.child = child;
    if record.class == "gateway" {
        let gateway = store.gateway_record(&record.device_id)?;
        view.refused_children = gateway
            .refused
            .into_iter()
            .map(|r| refused_view(&record.device_id, r))
            .collect();
        view.invalid_child_lines_total = gateway.invalid_lines_total;
    }
    Ok(())
}

pub fn refused_view(gateway_id: &str, r: RefusedRecord) -> v1::RefusedChild {
    v1::RefusedChild {
        gateway_device_id: gateway_id.to_owned(),
        identifier: r.identifier,
        serial: r.serial,
        reason: r.reason,
        first_seen_unix_ms: r.first_seen_ms,
        last_seen_unix_ms: r.last_seen_ms,
        count: r.count,
    }
}

/// `ListRefusedChildren`: every gateway's refusals, or one gateway's.
pub fn list_refused(
    store: &Store,
    req: &v1::ListRefusedChildrenRequest,
) -> Result<v1::ListRefusedChildrenResponse, Error> {
    let only = if req.gateway.is_empty() {
        None
    } else {
        Some(
            store
                .find_device(&req.gateway)?
                .ok_or_else(|| Error::NotFound(format!("no device matches {:?}", req.gateway)))?
                .device_id,
        )
    };
    let mut children: Vec<v1::RefusedChild> = store
        .refused_children()?
        .into_iter()
        .filter(|(gateway, _)| only.as_ref().is_none_or(|o| o == gateway))
        .map(|(gateway, r)| refused_view(&gateway, r))
        .collect();
    children.sort_by(|a, b| {
        (&a.gateway_device_id, &a.identifier).cmp(&(&b.gateway_device_id, &b.identifier))
    });
    Ok(v1::ListRefusedChildrenResponse { children })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn reported(at: i64, sync: i64) -> v1::ChildState {
        v1::ChildState {
            reported: Some(v1::ChildDevice {
                identifier: "t".into(),
                last_sync_unix_ms: sync,
                ..Default::default()
            }),
            gateway_device_id: "d-g".into(),
            reported_at_unix_ms: at,
        }
    }

    #[test]
    fn child_statuses() {
        let rec = DeviceRecord::default();
        let hour = 3600 * 1000;
        for (child, want) in [
            (None, DeviceStatus::NeverSeen),
            (Some(reported(NOW - 60_000, 0)), DeviceStatus::Online),
            (
                Some(reported(NOW - 60_000, NOW - hour)),
                DeviceStatus::Online,
            ),
            // Still listed by the MDM, but silent for two days.
            (
                Some(reported(NOW - 60_000, NOW - 48 * hour)),
                DeviceStatus::Offline,
            ),
            // The gateway stopped mentioning it.
            (
                Some(reported(NOW - 2 * hour, NOW - 2 * hour)),
                DeviceStatus::Offline,
            ),
        ] {
            assert_eq!(child_status(&rec, child.as_ref(), NOW), want, "{child:?}");
        }
        let revoked = DeviceRecord {
            revoked_at_ms: 1,
            ..Default::default()
        };
        assert_eq!(
            child_status(&revoked, Some(&reported(NOW, NOW)), NOW),
            DeviceStatus::Revoked
        );
    }
}
