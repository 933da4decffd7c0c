//! Validation of the fleet-wide query requests (fleet.proto).

use super::{
    MAX_ATTRIBUTES, MAX_KEY_BYTES, MAX_LABELS, MAX_METRIC_NAME_BYTES, MAX_QUERY_RANGE_MS,
    MAX_TEXT_BYTES, MAX_VALUE_BYTES, Result, attributes, fail, identifier, required_text, text,
};
use crate::v1;

/// Most rows `FleetTop` returns per group.
pub const MAX_TOP_K: u32 = 1000;
/// Most samples one fleet aggregation may scan (all devices together); a p95
/// keeps them in memory, 8 bytes each.
pub const MAX_FLEET_QUERY_SAMPLES: usize = 20_000_000;
/// Longest stale-after period a summary accepts.
pub const MAX_STALE_AFTER_SECONDS: u64 = 400 * 24 * 3600;

pub fn fleet_selector(selector: Option<&v1::FleetSelector>) -> Result {
    let Some(s) = selector else {
        return Ok(());
    };
    text("selector.department", &s.department, MAX_TEXT_BYTES)?;
    if v1::DeviceClass::try_from(s.class).is_err() {
        return Err(fail("selector.class", "unknown device class"));
    }
    attributes("selector.labels", &s.labels, MAX_LABELS)
}

fn grouping(group_by: i32, label: &str) -> Result {
    match v1::GroupBy::try_from(group_by) {
        Ok(v1::GroupBy::Label) => identifier("group_label", label, MAX_KEY_BYTES),
        Ok(_) if label.is_empty() => Ok(()),
        Ok(_) => Err(fail("group_label", "only with GROUP_BY_LABEL")),
        Err(_) => Err(fail("group_by", "unknown grouping")),
    }
}

pub fn fleet_aggregate_request(req: &v1::FleetAggregateRequest, now_ms: i64) -> Result {
    identifier("metric", &req.metric, MAX_METRIC_NAME_BYTES)?;
    attributes("attributes", &req.attributes, MAX_ATTRIBUTES)?;
    match v1::Aggregation::try_from(req.aggregation) {
        Ok(v1::Aggregation::Last) => {
            return Err(fail(
                "aggregation",
                "LAST is not a fleet aggregation; FleetTop lists current values",
            ));
        }
        Ok(_) => {}
        Err(_) => return Err(fail("aggregation", "unknown aggregation")),
    }
    grouping(req.group_by, &req.group_label)?;
    let until = if req.until_unix_ms == 0 {
        now_ms
    } else {
        req.until_unix_ms
    };
    if req.since_unix_ms < 0 || req.since_unix_ms > until {
        return Err(fail("since_unix_ms", "must be before the end of the range"));
    }
    if until - req.since_unix_ms > MAX_QUERY_RANGE_MS {
        return Err(fail("since_unix_ms", "range longer than 400 days"));
    }
    fleet_selector(req.selector.as_ref())
}

pub fn fleet_top_request(req: &v1::FleetTopRequest) -> Result {
    identifier("metric", &req.metric, MAX_METRIC_NAME_BYTES)?;
    attributes("attributes", &req.attributes, MAX_ATTRIBUTES)?;
    if req.k > MAX_TOP_K {
        return Err(fail("k", format!("at most {MAX_TOP_K}")));
    }
    if req.newer_than_unix_ms < 0 {
        return Err(fail("newer_than_unix_ms", "must not be negative"));
    }
    grouping(req.group_by, &req.group_label)?;
    fleet_selector(req.selector.as_ref())
}

pub fn inventory_query_request(req: &v1::InventoryQueryRequest) -> Result {
    use v1::inventory_query_request::Question;
    match &req.question {
        None => return Err(fail("question", "one question is required")),
        Some(Question::ByOs(true) | Question::ByModel(true)) => {}
        Some(Question::ByOs(false) | Question::ByModel(false)) => {
            return Err(fail("question", "by_os/by_model must be true when set"));
        }
        Some(Question::BatteryHealthBelowPercent(p)) => {
            if !(p.is_finite() && *p > 0.0 && *p <= 100.0) {
                return Err(fail(
                    "battery_health_below_percent",
                    "must be above 0 and at most 100",
                ));
            }
        }
        Some(Question::Package(p)) => {
            required_text("package.name", &p.name, MAX_VALUE_BYTES)?;
            text("package.version", &p.version, MAX_VALUE_BYTES)?;
        }
    }
    fleet_selector(req.selector.as_ref())
}

pub fn fleet_summary_request(req: &v1::FleetSummaryRequest) -> Result {
    for (field, value) in [
        ("disk_utilization_threshold", req.disk_utilization_threshold),
        ("battery_health_threshold", req.battery_health_threshold),
    ] {
        if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
            return Err(fail(field, "must be a fraction between 0 and 1"));
        }
    }
    if req.stale_after_seconds > MAX_STALE_AFTER_SECONDS {
        return Err(fail("stale_after_seconds", "at most 400 days"));
    }
    fleet_selector(req.selector.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate() -> v1::FleetAggregateRequest {
        v1::FleetAggregateRequest {
            metric: "system.filesystem.utilization".into(),
            aggregation: v1::Aggregation::Max as i32,
            group_by: v1::GroupBy::Department as i32,
            since_unix_ms: 1_800_000_000_000 - 86_400_000,
            ..Default::default()
        }
    }

    #[test]
    fn aggregate_requests() {
        let now = 1_800_000_000_000;
        assert_eq!(fleet_aggregate_request(&aggregate(), now), Ok(()));
        let bad = |change: fn(&mut v1::FleetAggregateRequest)| {
            let mut req = aggregate();
            change(&mut req);
            fleet_aggregate_request(&req, now)
                .expect_err("refused")
                .field
        };
        assert_eq!(bad(|r| r.metric = "1x".into()), "metric");
        assert_eq!(bad(|r| r.aggregation = 99), "aggregation");
        assert_eq!(
            bad(|r| r.aggregation = v1::Aggregation::Last as i32),
            "aggregation"
        );
        assert_eq!(
            bad(|r| r.group_by = v1::GroupBy::Label as i32),
            "group_label"
        );
        assert_eq!(bad(|r| r.group_label = "site".into()), "group_label");
        assert_eq!(bad(|r| r.since_unix_ms = -1), "since_unix_ms");
        assert_eq!(bad(|r| r.since_unix_ms = 0), "since_unix_ms");
        assert_eq!(
            bad(|r| {
                r.selector = Some(v1::FleetSelector {
                    department: "a\nb".into(),
                    ..Default::default()
                })
            }),
            "selector.department"
        );
    }

    #[test]
    fn top_inventory_and_summary_requests() {
        let top = v1::FleetTopRequest {
            metric: "system.battery.health".into(),
            k: MAX_TOP_K + 1,
            ..Default::default()
        };
        assert_eq!(fleet_top_request(&top).expect_err("k").field, "k");
        use v1::inventory_query_request::Question;
        let q = |question| v1::InventoryQueryRequest {
            question,
            selector: None,
        };
        assert!(inventory_query_request(&q(None)).is_err());
        assert!(inventory_query_request(&q(Some(Question::ByOs(true)))).is_ok());
        for p in [0.0, 101.0, f64::NAN] {
            assert!(
                inventory_query_request(&q(Some(Question::BatteryHealthBelowPercent(p)))).is_err()
            );
        }
        assert!(
            inventory_query_request(&q(Some(Question::Package(v1::PackageMatch::default()))))
                .is_err()
        );
        let summary = v1::FleetSummaryRequest {
            disk_utilization_threshold: 1.5,
            ..Default::default()
        };
        assert_eq!(
            fleet_summary_request(&summary)
                .expect_err("threshold")
                .field,
            "disk_utilization_threshold"
        );
        assert!(fleet_summary_request(&v1::FleetSummaryRequest::default()).is_ok());
    }
}
