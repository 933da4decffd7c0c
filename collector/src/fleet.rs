//! How the collector describes a device to ops: registration, enrollment,
//! ingest state and inventory combined, with a status derived from them.

use crate::store::{DeviceRecord, IngestState};
use std::time::Duration;
use vakt_proto::v1::{self, DeviceStatus, EventKind};

/// A device is online while its last report is younger than this many
/// report intervals (plus a fixed grace for slow links and GC pauses).
const ONLINE_INTERVALS: u32 = 3;
const ONLINE_GRACE: Duration = Duration::from_secs(10);

pub fn status(
    record: &DeviceRecord,
    state: &IngestState,
    now_ms: i64,
    report_interval: Duration,
) -> DeviceStatus {
    status_of(
        record.revoked_at_ms,
        Seen {
            last_seen_ms: state.last_seen_ms,
            last_event: state.last_event,
            last_event_ms: state.last_event_ms,
        },
        now_ms,
        report_interval,
    )
}

/// What a device's status depends on in its ingest state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub last_seen_ms: i64,
    pub last_event: i32,
    pub last_event_ms: i64,
}

/// `status` from only the fields it reads, for scans that do not decode
/// whole records (the `/metrics` fleet gauges).
pub fn status_of(
    revoked_at_ms: i64,
    seen: Seen,
    now_ms: i64,
    report_interval: Duration,
) -> DeviceStatus {
    if revoked_at_ms != 0 {
        return DeviceStatus::Revoked;
    }
    if seen.last_seen_ms == 0 {
        return DeviceStatus::NeverSeen;
    }
    let window = report_interval * ONLINE_INTERVALS + ONLINE_GRACE;
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let said_goodbye = seen.last_event_ms >= seen.last_seen_ms.saturating_sub(window_ms);
    match EventKind::try_from(seen.last_event) {
        Ok(EventKind::Shutdown) if said_goodbye => DeviceStatus::Off,
        Ok(EventKind::Sleep) if said_goodbye => DeviceStatus::Asleep,
        _ if now_ms.saturating_sub(seen.last_seen_ms) <= window_ms => DeviceStatus::Online,
        _ => DeviceStatus::Offline,
    }
}

pub fn device_view(
    record: &DeviceRecord,
    state: &IngestState,
    inventory: Option<v1::Inventory>,
    now_ms: i64,
    report_interval: Duration,
) -> v1::Device {
    let hostname = if state.hostname.is_empty() {
        record.enrolled_hostname.clone()
    } else {
        state.hostname.clone()
    };
    v1::Device {
        device_id: record.device_id.clone(),
        hostname,
        serial: record.serial.clone(),
        product_uuid: record.product_uuid.clone(),
        machine_id: record.machine_id.clone(),
        model: record.model.clone(),
        class: v1::DeviceClass::from_short_name(&record.class)
            .unwrap_or(v1::DeviceClass::Unspecified) as i32,
        department: record.department.clone(),
        owner: record.owner.clone(),
        labels: record
            .labels
            .iter()
            .map(|(k, v)| v1::Attribute {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        status: status(record, state, now_ms, report_interval) as i32,
        registered_at_unix_ms: record.registered_at_ms,
        enrolled_at_unix_ms: record.enrolled_at_ms,
        last_seen_at_unix_ms: state.last_seen_ms,
        last_sequence: state.last_sequence,
        certificate_not_after_unix_ms: record.cert_not_after_ms,
        inventory,
        report_interval_seconds: u32::try_from(report_interval.as_secs()).unwrap_or(u32::MAX),
        last_event: state.last_event,
        flags: record
            .flags
            .iter()
            .map(|f| v1::DeviceFlag {
                kind: f.kind.clone(),
                at_unix_ms: f.at_ms,
                detail: f.detail.clone(),
            })
            .collect(),
        revoked_at_unix_ms: record.revoked_at_ms,
        dropped_reports_total: state.dropped_reports_total,
        // Filled from the software store by the Admin service.
        software_package_count: 0,
        software_hash: Vec::new(),
        software_updated_at_unix_ms: 0,
        // Tablet-gateway facts: added by `gateway::decorate`.
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn seen(at: i64, event: EventKind, event_at: i64) -> IngestState {
        IngestState {
            last_seen_ms: at,
            last_event: event as i32,
            last_event_ms: event_at,
            ..Default::default()
        }
    }

    #[test]
    fn statuses() {
        let rec = DeviceRecord::default();
        let interval = Duration::from_secs(30);
        let now = 100 * MIN;
        let cases = [
            (IngestState::default(), DeviceStatus::NeverSeen),
            (
                seen(now - 1000, EventKind::AgentStart, 0),
                DeviceStatus::Online,
            ),
            (
                seen(now - 10 * MIN, EventKind::AgentStart, 0),
                DeviceStatus::Offline,
            ),
            (
                seen(now - 10 * MIN, EventKind::Shutdown, now - 10 * MIN),
                DeviceStatus::Off,
            ),
            (
                seen(now - 10 * MIN, EventKind::Sleep, now - 10 * MIN),
                DeviceStatus::Asleep,
            ),
            // A shutdown long before the last report is history, not the present.
            (
                seen(now - 10 * MIN, EventKind::Shutdown, now - 50 * MIN),
                DeviceStatus::Offline,
            ),
        ];
        for (state, want) in cases {
            assert_eq!(status(&rec, &state, now, interval), want, "{state:?}");
        }
        let revoked = DeviceRecord {
            revoked_at_ms: 1,
            ..Default::default()
        };
        assert_eq!(
            status(
                &revoked,
                &seen(now, EventKind::AgentStart, 0),
                now,
                interval
            ),
            DeviceStatus::Revoked
        );
    }
}
