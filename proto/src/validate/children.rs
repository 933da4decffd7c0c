//! Validation of the tablet-gateway parts of the protocol: the children a
//! gateway reports in its batches, and the Admin requests about them.

use super::{MAX_CLOCK_AHEAD_MS, MAX_TEXT_BYTES, Result, count, fail, required_text, text};
use crate::v1;

/// Children one batch may carry. A gateway that knows more sends the rest in
/// the following batches.
pub const MAX_CHILDREN_PER_BATCH: usize = 1_000;
/// A source's name for a device (MDM id, adb serial).
pub const MAX_CHILD_IDENTIFIER_BYTES: usize = 128;
/// Battery health above 100 % happens on new cells (full charge above design
/// capacity); far above it is a unit mistake (mWh vs Wh).
pub const MAX_BATTERY_HEALTH_PERCENT: f64 = 150.0;
/// Earliest last-sync time accepted (2000-01-01): anything before it is a
/// zero or seconds-vs-milliseconds mistake, not a real sync.
pub const MIN_CHILD_LAST_SYNC_MS: i64 = 946_684_800_000;

/// One reported child. `field` names it in errors (`children[3]`).
pub fn child_device(field: &str, child: &v1::ChildDevice, now_ms: i64) -> Result {
    required_text(
        &format!("{field}.identifier"),
        &child.identifier,
        MAX_CHILD_IDENTIFIER_BYTES,
    )?;
    for (name, value) in [
        ("serial", &child.serial),
        ("model", &child.model),
        ("os_name", &child.os_name),
        ("os_version", &child.os_version),
        ("source", &child.source),
    ] {
        text(&format!("{field}.{name}"), value, MAX_TEXT_BYTES)?;
    }
    for (name, value, max) in [
        ("battery_percent", child.battery_percent, 100.0),
        (
            "battery_health_percent",
            child.battery_health_percent,
            MAX_BATTERY_HEALTH_PERCENT,
        ),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && (0.0..=max).contains(&v))
        {
            return Err(fail(
                format!("{field}.{name}"),
                format!("{v} is not a number from 0 to {max}"),
            ));
        }
    }
    if let (Some(total), Some(free)) = (child.storage_total_bytes, child.storage_free_bytes)
        && free > total
    {
        return Err(fail(
            format!("{field}.storage_free_bytes"),
            format!("{free} is more than storage_total_bytes {total}"),
        ));
    }
    let sync = child.last_sync_unix_ms;
    if sync != 0
        && !(MIN_CHILD_LAST_SYNC_MS..=now_ms.saturating_add(MAX_CLOCK_AHEAD_MS)).contains(&sync)
    {
        return Err(fail(
            format!("{field}.last_sync_unix_ms"),
            format!("{sync} is before 2000 or more than an hour in the future"),
        ));
    }
    Ok(())
}

/// The children of one batch: count, each child, unique identifiers.
pub fn batch_children(children: &[v1::ChildDevice], now_ms: i64) -> Result {
    count("children", children.len(), MAX_CHILDREN_PER_BATCH)?;
    let mut seen = std::collections::HashSet::with_capacity(children.len());
    for (i, child) in children.iter().enumerate() {
        child_device(&format!("children[{i}]"), child, now_ms)?;
        if !seen.insert(child.identifier.as_str()) {
            return Err(fail(
                format!("children[{i}].identifier"),
                format!("{:?} appears twice", child.identifier),
            ));
        }
    }
    Ok(())
}

pub fn list_refused_children_request(req: &v1::ListRefusedChildrenRequest) -> Result {
    text("gateway", &req.gateway, MAX_TEXT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn tablet() -> v1::ChildDevice {
        v1::ChildDevice {
            identifier: "mdm-17".into(),
            serial: "R52N40ABC".into(),
            model: "Galaxy Tab A8".into(),
            os_name: "Android".into(),
            os_version: "14".into(),
            battery_percent: Some(87.5),
            battery_health_percent: Some(101.0),
            storage_total_bytes: Some(64 << 30),
            storage_free_bytes: Some(20 << 30),
            last_sync_unix_ms: NOW - 60_000,
            source: "mdm.sh".into(),
        }
    }

    #[test]
    fn a_full_child_and_a_bare_one_pass() {
        assert_eq!(child_device("c", &tablet(), NOW), Ok(()));
        let bare = v1::ChildDevice {
            identifier: "x".into(),
            ..Default::default()
        };
        assert_eq!(child_device("c", &bare, NOW), Ok(()));
    }

    #[test]
    fn bad_children_name_the_field() {
        type Change = fn(&mut v1::ChildDevice);
        let cases: [(Change, &str); 9] = [
            (|c| c.identifier.clear(), "c.identifier"),
            (|c| c.identifier = "x".repeat(129), "c.identifier"),
            (|c| c.model = "a\nb".into(), "c.model"),
            (|c| c.battery_percent = Some(100.5), "c.battery_percent"),
            (|c| c.battery_percent = Some(f64::NAN), "c.battery_percent"),
            (
                |c| c.battery_health_percent = Some(-1.0),
                "c.battery_health_percent",
            ),
            (
                |c| c.storage_free_bytes = Some(65 << 30),
                "c.storage_free_bytes",
            ),
            // Seconds where milliseconds belong.
            (
                |c| c.last_sync_unix_ms = 1_700_000_000,
                "c.last_sync_unix_ms",
            ),
            (
                |c| c.last_sync_unix_ms = NOW + 2 * 3_600_000,
                "c.last_sync_unix_ms",
            ),
        ];
        for (change, field) in cases {
            let mut child = tablet();
            change(&mut child);
            let err = child_device("c", &child, NOW).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn a_batch_limits_count_and_duplicates() {
        let many = vec![tablet(); MAX_CHILDREN_PER_BATCH + 1];
        assert_eq!(batch_children(&many, NOW).unwrap_err().field, "children");
        let twice = vec![tablet(), tablet()];
        assert_eq!(
            batch_children(&twice, NOW).unwrap_err().field,
            "children[1].identifier"
        );
        let mut other = tablet();
        other.identifier = "mdm-18".into();
        assert_eq!(batch_children(&[tablet(), other], NOW), Ok(()));
    }
}
