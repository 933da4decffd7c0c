//! Validation of the alert RPCs' requests.

use super::{MAX_KEY_BYTES, MAX_TEXT_BYTES, MAX_VALUE_BYTES, Result, fail, identifier, text};
use crate::v1;

/// Most matchers in one silence.
pub const MAX_SILENCE_MATCHERS: usize = 16;
/// Longest acknowledgement or silence comment.
pub const MAX_COMMENT_BYTES: usize = 1024;
/// Longest silence or acknowledgement (a year: maintenance, not forever).
pub const MAX_SILENCE_SECONDS: u64 = 366 * 24 * 3600;
/// Longest alert id (a 16-hex fingerprint; prefixes are shorter).
pub const MAX_ALERT_ID_BYTES: usize = 64;

const STATES: [&str; 5] = ["", "firing", "pending", "resolved", "acknowledged"];
const SEVERITIES: [&str; 4] = ["", "info", "warning", "critical"];
const OPS: [&str; 4] = ["=", "!=", "=~", "!~"];

pub fn list_alerts_request(req: &v1::ListAlertsRequest) -> Result {
    if !STATES.contains(&req.state.as_str()) {
        return Err(fail(
            "state",
            "expected firing, pending, resolved or acknowledged",
        ));
    }
    if !SEVERITIES.contains(&req.severity.as_str()) {
        return Err(fail("severity", "expected info, warning or critical"));
    }
    text("device", &req.device, MAX_TEXT_BYTES)?;
    text("department", &req.department, MAX_TEXT_BYTES)?;
    text("class", &req.class, MAX_KEY_BYTES)?;
    text("rule", &req.rule, MAX_TEXT_BYTES)
}

pub fn ack_alert_request(req: &v1::AckAlertRequest) -> Result {
    if req.id.is_empty() {
        return Err(fail("id", "must not be empty"));
    }
    text("id", &req.id, MAX_ALERT_ID_BYTES)?;
    if req.comment.trim().is_empty() {
        return Err(fail(
            "comment",
            "say why (who is on it, what is being done)",
        ));
    }
    text("comment", &req.comment, MAX_COMMENT_BYTES)?;
    if req.duration_seconds > MAX_SILENCE_SECONDS {
        return Err(fail("duration_seconds", "at most a year allowed"));
    }
    Ok(())
}

pub fn add_silence_request(req: &v1::AddSilenceRequest) -> Result {
    if req.matchers.is_empty() {
        return Err(fail("matchers", "at least one matcher is required"));
    }
    if req.matchers.len() > MAX_SILENCE_MATCHERS {
        return Err(fail(
            "matchers",
            format!(
                "{} entries, at most {MAX_SILENCE_MATCHERS} allowed",
                req.matchers.len()
            ),
        ));
    }
    for (i, m) in req.matchers.iter().enumerate() {
        identifier(&format!("matchers[{i}].name"), &m.name, MAX_KEY_BYTES)?;
        if !OPS.contains(&m.op.as_str()) {
            return Err(fail(
                format!("matchers[{i}].op"),
                "expected =, !=, =~ or !~",
            ));
        }
        text(&format!("matchers[{i}].value"), &m.value, MAX_VALUE_BYTES)?;
    }
    if req.duration_seconds == 0 || req.duration_seconds > MAX_SILENCE_SECONDS {
        return Err(fail("duration_seconds", "must be between 1 s and a year"));
    }
    if req.comment.trim().is_empty() {
        return Err(fail("comment", "say why (maintenance window, ticket)"));
    }
    text("comment", &req.comment, MAX_COMMENT_BYTES)?;
    if req.starts_at_unix_ms < 0 {
        return Err(fail("starts_at_unix_ms", "must not be negative"));
    }
    Ok(())
}

pub fn expire_silence_request(req: &v1::ExpireSilenceRequest) -> Result {
    if req.id.is_empty() {
        return Err(fail("id", "must not be empty"));
    }
    text("id", &req.id, MAX_ALERT_ID_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_need_matchers_a_duration_and_a_reason() {
        let good = v1::AddSilenceRequest {
            matchers: vec![v1::SilenceMatcher {
                name: "device".into(),
                op: "=".into(),
                value: "d-1".into(),
            }],
            duration_seconds: 3600,
            comment: "patching".into(),
            starts_at_unix_ms: 0,
        };
        assert!(add_silence_request(&good).is_ok());
        let mut bad = good.clone();
        bad.matchers.clear();
        assert!(add_silence_request(&bad).is_err());
        let mut bad = good.clone();
        bad.matchers[0].op = "~".into();
        assert!(add_silence_request(&bad).is_err());
        let mut bad = good.clone();
        bad.duration_seconds = 0;
        assert!(add_silence_request(&bad).is_err());
        let mut bad = good;
        bad.comment = " ".into();
        assert!(add_silence_request(&bad).is_err());
    }

    #[test]
    fn list_and_ack() {
        let mut req = v1::ListAlertsRequest::default();
        assert!(list_alerts_request(&req).is_ok());
        req.state = "burning".into();
        assert!(list_alerts_request(&req).is_err());
        let ack = v1::AckAlertRequest {
            id: "abcd".into(),
            comment: "on it".into(),
            duration_seconds: 60,
        };
        assert!(ack_alert_request(&ack).is_ok());
        assert!(
            ack_alert_request(&v1::AckAlertRequest {
                comment: String::new(),
                ..ack
            })
            .is_err()
        );
    }
}
