//! The alert RPCs of `Admin`: authorize, validate, call the engine, convert.

use super::admin::actor;
use super::{SharedRef, authorize, peer_of};
use crate::alerts::lifecycle::{Ack, Alert, State};
use crate::alerts::silence::{MatchOp, Matcher, Silence};
use crate::authz::AdminRpc;
use crate::error::Error;
use crate::store::AuditEntry;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use vakt_proto::v1;
use vakt_proto::{now_unix_ms, validate};

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::Alert, Status>> + Send>>;

fn attrs(map: &std::collections::BTreeMap<String, String>) -> Vec<v1::Attribute> {
    map.iter()
        .map(|(k, v)| v1::Attribute {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

pub fn alert_to_wire(a: &Alert, silenced: bool) -> v1::Alert {
    let label = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
    v1::Alert {
        id: a.id.clone(),
        rule: a.rule.clone(),
        device_id: a.device_id.clone(),
        hostname: label("hostname"),
        department: label("department"),
        class: label("class"),
        severity: a.severity.name().to_owned(),
        state: match a.state {
            State::Pending => v1::AlertState::Pending,
            State::Firing => v1::AlertState::Firing,
            State::Resolved => v1::AlertState::Resolved,
        } as i32,
        labels: attrs(&a.labels),
        summary: a.summary.clone(),
        description: a.description.clone(),
        active_since_unix_ms: a.active_since_ms,
        fired_at_unix_ms: a.fired_at_ms,
        resolved_at_unix_ms: a.resolved_at_ms,
        updated_at_unix_ms: a.updated_at_ms,
        value: if a.value.is_finite() { a.value } else { 0.0 },
        ack: a.ack.as_ref().map(|k| v1::AlertAck {
            author: k.author.clone(),
            comment: k.comment.clone(),
            at_unix_ms: k.at_ms,
            until_unix_ms: k.until_ms,
        }),
        silenced,
        flapping: a.flapping,
        notifications: a
            .sent
            .iter()
            .map(|s| v1::AlertNotification {
                id: s.id.clone(),
                status: match s.status {
                    crate::alerts::notification::NotificationStatus::Firing => "firing",
                    crate::alerts::notification::NotificationStatus::Resolved => "resolved",
                }
                .to_owned(),
                at_unix_ms: s.at_ms,
                reason: s.reason.clone(),
            })
            .collect(),
    }
}

fn silence_to_wire(s: &Silence, now: i64) -> v1::Silence {
    v1::Silence {
        id: s.id.clone(),
        matchers: s
            .matchers
            .iter()
            .map(|m| v1::SilenceMatcher {
                name: m.name.clone(),
                op: m.op.symbol().to_owned(),
                value: m.value.clone(),
            })
            .collect(),
        starts_at_unix_ms: s.starts_at_ms,
        ends_at_unix_ms: s.ends_at_ms,
        comment: s.comment.clone(),
        author: s.author.clone(),
        created_at_unix_ms: s.created_at_ms,
        active: s.active(now),
    }
}

pub fn list_alerts(
    shared: &SharedRef,
    request: Request<v1::ListAlertsRequest>,
) -> Result<Response<v1::ListAlertsResponse>, Status> {
    authorize(&request, AdminRpc::ListAlerts)?;
    let req = request.into_inner();
    validate::list_alerts_request(&req).map_err(Error::from)?;
    let now = now_unix_ms();
    let mut alerts: Vec<(Alert, bool)> = shared
        .alerts
        .alerts()
        .into_iter()
        .filter(|(a, _)| {
            let label = |k: &str| a.labels.get(k).map_or("", String::as_str);
            (req.state.is_empty()
                || a.shown_state(now) == req.state
                || req.state == "firing" && a.state == State::Firing)
                && (req.severity.is_empty() || a.severity.name() == req.severity)
                && (req.device.is_empty()
                    || a.device_id == req.device
                    || label("hostname") == req.device)
                && (req.department.is_empty() || label("department") == req.department)
                && (req.class.is_empty() || label("class") == req.class)
                && (req.rule.is_empty() || a.rule == req.rule)
        })
        .collect();
    // Firing first, then by severity (critical first), then newest.
    let rank = |a: &Alert| match a.state {
        State::Firing => 0,
        State::Pending => 1,
        State::Resolved => 2,
    };
    alerts.sort_by(|(a, _), (b, _)| {
        rank(a)
            .cmp(&rank(b))
            .then(b.severity.cmp(&a.severity))
            .then(b.updated_at_ms.cmp(&a.updated_at_ms))
            .then(a.id.cmp(&b.id))
    });
    Ok(Response::new(v1::ListAlertsResponse {
        alerts: alerts.iter().map(|(a, s)| alert_to_wire(a, *s)).collect(),
    }))
}

pub async fn ack_alert(
    shared: &SharedRef,
    request: Request<v1::AckAlertRequest>,
) -> Result<Response<v1::AckAlertResponse>, Status> {
    let (who, role) = authorize(&request, AdminRpc::AckAlert)?;
    let peer = peer_of(&request);
    let req = request.into_inner();
    validate::ack_alert_request(&req).map_err(Error::from)?;
    let now = now_unix_ms();
    let until_ms = if req.duration_seconds == 0 {
        0
    } else {
        now + i64::try_from(req.duration_seconds).unwrap_or(0) * 1000
    };
    let ack = Ack {
        author: who.clone(),
        comment: req.comment.clone(),
        at_ms: now,
        until_ms,
    };
    let alert = shared.alerts.ack(&shared.store, &req.id, ack).await?;
    shared.audit(AuditEntry {
        at_ms: now,
        actor: actor(&who, role),
        action: "alert.ack".into(),
        target: alert.device_id.clone(),
        outcome: "ok".into(),
        detail: format!("{} ({}): {}", alert.id, alert.rule, req.comment),
        peer,
    })?;
    shared.store.durable().await.map_err(Error::from)?;
    Ok(Response::new(v1::AckAlertResponse {
        alert: Some(alert_to_wire(&alert, false)),
    }))
}

pub async fn add_silence(
    shared: &SharedRef,
    request: Request<v1::AddSilenceRequest>,
) -> Result<Response<v1::AddSilenceResponse>, Status> {
    let (who, role) = authorize(&request, AdminRpc::AddSilence)?;
    let peer = peer_of(&request);
    let req = request.into_inner();
    validate::add_silence_request(&req).map_err(Error::from)?;
    let mut matchers = Vec::new();
    for (i, m) in req.matchers.iter().enumerate() {
        let op = MatchOp::parse(&m.op).unwrap_or(MatchOp::Eq);
        let matcher = Matcher::new(&m.name, op, &m.value).map_err(|e| {
            Error::from(vakt_proto::ValidationError {
                field: format!("matchers[{i}]"),
                reason: e,
            })
        })?;
        matchers.push(matcher);
    }
    let now = now_unix_ms();
    let starts = if req.starts_at_unix_ms == 0 {
        now
    } else {
        req.starts_at_unix_ms
    };
    let silence = Silence {
        id: String::new(),
        matchers,
        starts_at_ms: starts,
        ends_at_ms: starts + i64::try_from(req.duration_seconds).unwrap_or(0) * 1000,
        comment: req.comment,
        author: who.clone(),
        created_at_ms: now,
    };
    let silence = shared.alerts.add_silence(&shared.store, silence).await?;
    shared.audit(AuditEntry {
        at_ms: now,
        actor: actor(&who, role),
        action: "alert.silence.add".into(),
        target: silence.id.clone(),
        outcome: "ok".into(),
        detail: format!(
            "{} until {}: {}",
            silence
                .matchers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            silence.ends_at_ms,
            silence.comment
        ),
        peer,
    })?;
    shared.store.durable().await.map_err(Error::from)?;
    Ok(Response::new(v1::AddSilenceResponse {
        silence: Some(silence_to_wire(&silence, now)),
    }))
}

pub fn list_silences(
    shared: &SharedRef,
    request: Request<v1::ListSilencesRequest>,
) -> Result<Response<v1::ListSilencesResponse>, Status> {
    authorize(&request, AdminRpc::ListSilences)?;
    let req = request.into_inner();
    let now = now_unix_ms();
    let mut silences: Vec<Silence> = shared
        .alerts
        .silences()
        .into_iter()
        .filter(|s| req.include_expired || s.ends_at_ms > now)
        .collect();
    silences.sort_by(|a, b| a.starts_at_ms.cmp(&b.starts_at_ms).then(a.id.cmp(&b.id)));
    Ok(Response::new(v1::ListSilencesResponse {
        silences: silences.iter().map(|s| silence_to_wire(s, now)).collect(),
    }))
}

pub async fn expire_silence(
    shared: &SharedRef,
    request: Request<v1::ExpireSilenceRequest>,
) -> Result<Response<v1::ExpireSilenceResponse>, Status> {
    let (who, role) = authorize(&request, AdminRpc::ExpireSilence)?;
    let peer = peer_of(&request);
    let req = request.into_inner();
    validate::expire_silence_request(&req).map_err(Error::from)?;
    let silence = shared.alerts.expire_silence(&shared.store, &req.id).await?;
    let now = now_unix_ms();
    shared.audit(AuditEntry {
        at_ms: now,
        actor: actor(&who, role),
        action: "alert.silence.expire".into(),
        target: silence.id.clone(),
        outcome: "ok".into(),
        detail: String::new(),
        peer,
    })?;
    shared.store.durable().await.map_err(Error::from)?;
    Ok(Response::new(v1::ExpireSilenceResponse {
        silence: Some(silence_to_wire(&silence, now)),
    }))
}

pub fn watch_alerts(
    shared: &SharedRef,
    request: Request<v1::WatchAlertsRequest>,
) -> Result<Response<WatchStream>, Status> {
    authorize(&request, AdminRpc::WatchAlerts)?;
    let changes = shared.alerts.watch();
    let stream = futures::stream::unfold(changes, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(alert) => return Some((Ok(alert_to_wire(&alert, false)), rx)),
                // A watcher too slow to keep up misses changes, not the stream.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Response::new(Box::pin(stream)))
}

pub async fn reload_rules(
    shared: &SharedRef,
    request: Request<v1::ReloadRulesRequest>,
) -> Result<Response<v1::ReloadRulesResponse>, Status> {
    let (who, role) = authorize(&request, AdminRpc::ReloadRules)?;
    let peer = peer_of(&request);
    let now = now_unix_ms();
    let outcome = shared.alerts.reload();
    shared.audit(AuditEntry {
        at_ms: now,
        actor: actor(&who, role),
        action: "alert.rules.reload".into(),
        target: String::new(),
        outcome: if outcome.is_ok() { "ok" } else { "refused" }.into(),
        detail: outcome.as_ref().map_or_else(
            |e| format!("{e:#}"),
            |names| format!("{} rules", names.len()),
        ),
        peer,
    })?;
    shared.store.durable().await.map_err(Error::from)?;
    let rules = outcome.map_err(|e| {
        Status::failed_precondition(format!("rules not reloaded, the old ones stay: {e:#}"))
    })?;
    Ok(Response::new(v1::ReloadRulesResponse { rules }))
}
