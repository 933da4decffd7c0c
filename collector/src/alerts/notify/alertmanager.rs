//! Alertmanager API v2: `POST /api/v2/alerts` with a JSON array of alerts.
//!
//! Alertmanager forgets a firing alert it has not heard of for its
//! `resolve_timeout`, or at its `endsAt`. Like Prometheus, the collector sets
//! `endsAt` a few resend intervals ahead on every firing alert and re-sends
//! everything still firing every `resend_interval`; a resolved alert gets its
//! real `endsAt`, which ends it at once.

use super::http::{HttpClient, Target};
use super::receiver::{Failure, classify};
use crate::alerts::notification::{Notification, NotificationStatus};
use hyper::http::Method;
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime};

/// `endsAt` of a firing alert is this many resend intervals ahead
/// (Prometheus uses 4 × max(resend delay, evaluation interval)).
pub const HOLD_INTERVALS: u32 = 4;
/// Alerts per POST when re-sending (Alertmanager takes any number; this keeps
/// one request's body modest with a large fleet).
pub const RESEND_BATCH: usize = 500;

pub struct Alertmanager {
    target: Target,
    client: HttpClient,
    /// How far ahead `endsAt` of a firing alert is set.
    pub hold: Duration,
}

impl Alertmanager {
    pub fn new(target: Target, client: HttpClient, resend_interval: Duration) -> Self {
        Self {
            target: target.join("/api/v2/alerts"),
            client,
            hold: resend_interval * HOLD_INTERVALS,
        }
    }

    pub async fn send(&self, notifications: &[Notification]) -> Result<(), Failure> {
        let now = vakt_proto::now_unix_ms();
        let alerts: Vec<Value> = notifications
            .iter()
            .map(|n| alert_json(n, now, self.hold))
            .collect();
        let body = serde_json::to_vec(&alerts).map_err(|e| Failure::Refused(e.to_string()))?;
        let response = self
            .client
            .request(
                Method::POST,
                &self.target,
                &[("content-type", "application/json".to_owned())],
                body,
            )
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        classify(&response)
    }
}

/// Alertmanager's label names are Prometheus label names.
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

pub fn rfc3339(unix_ms: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// One alert of the API's `postableAlerts`, as of `now_ms`.
pub fn alert_json(n: &Notification, now_ms: i64, hold: Duration) -> Value {
    // An empty label value means "no such label" in Prometheus' data model.
    let labels: Map<String, Value> = n
        .labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (label_name(k), Value::String(v.clone())))
        .collect();
    let mut annotations: Map<String, Value> = n
        .annotations
        .iter()
        .map(|(k, v)| (label_name(k), Value::String(v.clone())))
        .collect();
    let ends_at = match n.status {
        NotificationStatus::Resolved => n.ends_at_unix_ms.unwrap_or(now_ms),
        NotificationStatus::Firing => {
            now_ms.saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX))
        }
    };
    let mut alert = json!({
        "labels": labels,
        "startsAt": rfc3339(n.starts_at_unix_ms),
        "endsAt": rfc3339(ends_at),
    });
    // Alertmanager validates generatorURL as a URL; a vaktctl hint goes into
    // an annotation instead.
    if Target::parse(&n.generator_url).is_ok() {
        alert["generatorURL"] = Value::String(n.generator_url.clone());
    } else if !n.generator_url.is_empty() {
        annotations.insert("vaktctl".into(), Value::String(n.generator_url.clone()));
    }
    alert["annotations"] = Value::Object(annotations);
    alert
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firing() -> Notification {
        Notification {
            id: "n1".into(),
            fingerprint: "f".into(),
            status: NotificationStatus::Firing,
            labels: [
                ("alertname", "DeviceOffline"),
                ("device", "d1"),
                ("severity", "critical"),
                ("rule.team", "ops"),
                ("department", ""),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            annotations: [("summary".to_owned(), "d1 is offline".to_owned())].into(),
            starts_at_unix_ms: 1_700_000_000_000,
            ends_at_unix_ms: None,
            generator_url: "vaktctl alerts --device d1".into(),
        }
    }

    #[test]
    fn firing_alerts_are_held_open_a_few_intervals_ahead() {
        let now = 1_700_000_100_000;
        let a = alert_json(&firing(), now, Duration::from_secs(240));
        assert_eq!(a["labels"]["alertname"], "DeviceOffline");
        assert_eq!(a["labels"]["rule_team"], "ops");
        assert!(a["labels"].get("department").is_none());
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], rfc3339(now + 240_000));
        assert!(a.get("generatorURL").is_none());
        assert_eq!(a["annotations"]["vaktctl"], "vaktctl alerts --device d1");
    }

    #[test]
    fn resolved_alerts_end_when_they_ended() {
        let mut n = firing();
        n.status = NotificationStatus::Resolved;
        n.ends_at_unix_ms = Some(1_700_000_050_000);
        n.generator_url = "https://vakt.example/alerts/f".into();
        let a = alert_json(&n, 1_700_000_100_000, Duration::from_secs(240));
        assert_eq!(a["endsAt"], "2023-11-14T22:14:10.000Z");
        assert_eq!(a["generatorURL"], "https://vakt.example/alerts/f");
        assert_eq!(label_name("9x-y"), "_9x_y");
    }
}
