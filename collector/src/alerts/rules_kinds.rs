//! What each rule kind requires, with defaults, checked on the raw form so
//! every error points at the value it is about.

use super::{Change, Checker, Kind, RawRule, Rule, Scope, parse_version};
use crate::alerts::lifecycle::Severity;
use std::time::Duration;
use toml::Spanned;
use vakt_proto::v1::EventKind;

pub(super) fn check_rule(c: &mut Checker<'_>, r: &RawRule, name: String) -> Option<Rule> {
    let before = c.errors.len();
    let severity = match &r.severity {
        None => Severity::Warning,
        Some(s) => Severity::parse(s.get_ref()).unwrap_or_else(|| {
            c.error(
                s.span(),
                format!(
                    "severity {:?}: expected info, warning or critical",
                    s.get_ref()
                ),
            );
            Severity::Warning
        }),
    };
    let scope = match &r.scope {
        None => Scope::default(),
        Some(s) => {
            for class in &s.class {
                if vakt_proto::v1::DeviceClass::from_short_name(class.get_ref()).is_none() {
                    c.error(
                        class.span(),
                        format!(
                            "class {:?}: expected laptop, server, tablet, gateway or desktop",
                            class.get_ref()
                        ),
                    );
                }
            }
            Scope {
                departments: s.department.clone(),
                classes: s.class.iter().map(|c| c.get_ref().clone()).collect(),
                labels: s.labels.clone(),
            }
        }
    };
    let kind_name = r.kind.get_ref().as_str();
    let need = |c: &mut Checker<'_>, field: &str, present: bool| {
        if !present {
            c.error(
                r.kind.span(),
                format!("rule {name:?}: kind {kind_name:?} needs `{field}`"),
            );
        }
    };
    let kind = match kind_name {
        "threshold" => {
            need(c, "metric", r.metric.is_some());
            let above = r.above.as_ref().map(|v| *v.get_ref());
            let below = r.below.as_ref().map(|v| *v.get_ref());
            if above.is_some() == below.is_some() {
                c.error(
                    r.kind.span(),
                    format!("rule {name:?}: a threshold needs exactly one of `above` and `below`"),
                );
            }
            let trigger = above.or(below).unwrap_or(0.0);
            let clear = r.clear.as_ref().map_or(trigger, |v| *v.get_ref());
            if let Some(span) = r.clear.as_ref().map(Spanned::span) {
                if above.is_some() && clear > trigger {
                    c.error(span.clone(), format!("clear ({clear}) must not be above `above` ({trigger}): it is where the alert ends"));
                }
                if below.is_some() && clear < trigger {
                    c.error(span, format!("clear ({clear}) must not be below `below` ({trigger}): it is where the alert ends"));
                }
            }
            Kind::Threshold {
                metric: r
                    .metric
                    .as_ref()
                    .map(|m| m.get_ref().clone())
                    .unwrap_or_default(),
                attributes: r.attributes.clone().unwrap_or_default(),
                above,
                below,
                clear,
                for_: c.opt_duration(&r.for_, "for", Duration::ZERO),
            }
        }
        "offline" => {
            let mut excuse_events = Vec::new();
            match &r.excuse_events {
                None => excuse_events = vec![EventKind::Shutdown, EventKind::Sleep],
                Some(list) => {
                    for e in list {
                        match e.get_ref().as_str() {
                            "shutdown" => excuse_events.push(EventKind::Shutdown),
                            "sleep" => excuse_events.push(EventKind::Sleep),
                            other => c.error(
                                e.span(),
                                format!("excuse_events: {other:?} is not shutdown or sleep"),
                            ),
                        }
                    }
                }
            }
            let missed_intervals = r.missed_intervals.as_ref().map_or(3, |v| *v.get_ref());
            if missed_intervals == 0
                && let Some(v) = &r.missed_intervals
            {
                c.error(v.span(), "missed_intervals must be at least 1");
            }
            Kind::Offline {
                missed_intervals,
                excuse_events,
            }
        }
        "stale" => Kind::Stale {
            after: c.opt_duration(&r.after, "after", Duration::from_secs(30 * 86_400)),
        },
        "never_seen" => Kind::NeverSeen {
            after: c.opt_duration(&r.after, "after", Duration::from_secs(7 * 86_400)),
        },
        "inventory_change" => {
            let mut changes = Vec::new();
            match &r.changes {
                None => changes = Change::ALL.to_vec(),
                Some(list) => {
                    for ch in list {
                        match Change::ALL.iter().find(|k| k.name() == ch.get_ref()) {
                            Some(k) => changes.push(*k),
                            None => c.error(
                                ch.span(),
                                format!(
                                    "changes: {:?} is not one of {}",
                                    ch.get_ref(),
                                    Change::ALL.map(Change::name).join(", ")
                                ),
                            ),
                        }
                    }
                }
            }
            Kind::InventoryChange {
                changes,
                hold: c.opt_duration(&r.hold, "hold", Duration::from_secs(86_400)),
            }
        }
        "filesystem_full" => {
            let min_points = r.min_points.as_ref().map_or(3, |v| *v.get_ref() as usize);
            if min_points < 2
                && let Some(v) = &r.min_points
            {
                c.error(
                    v.span(),
                    "min_points must be at least 2 (a line needs two points)",
                );
            }
            Kind::FilesystemFull {
                metric: r.metric.as_ref().map_or_else(
                    || "system.filesystem.utilization".to_owned(),
                    |m| m.get_ref().clone(),
                ),
                within: c.opt_duration(&r.within, "within", Duration::from_secs(7 * 86_400)),
                window: c.opt_duration(&r.window, "window", Duration::from_secs(86_400)),
                min_points,
                every: c.opt_duration(&r.every, "every", Duration::from_secs(300)),
            }
        }
        "clock_skew" => Kind::ClockSkew {
            max: c.opt_duration(&r.max, "max", Duration::from_secs(120)),
        },
        "spool_drops" => Kind::SpoolDrops {
            hold: c.opt_duration(&r.hold, "hold", Duration::from_secs(86_400)),
        },
        "agent_version" => {
            need(c, "minimum", r.minimum.is_some());
            if let Some(m) = &r.minimum
                && parse_version(m.get_ref()).is_none()
            {
                c.error(
                    m.span(),
                    format!(
                        "minimum {:?}: expected a dotted version like \"0.3.1\"",
                        m.get_ref()
                    ),
                );
            }
            Kind::AgentVersion {
                minimum: r
                    .minimum
                    .as_ref()
                    .map(|m| m.get_ref().clone())
                    .unwrap_or_default(),
            }
        }
        "device_flag" => Kind::DeviceFlag {
            flags: r.flags.as_ref().map_or_else(
                || {
                    vec![
                        "clone-suspected".to_owned(),
                        "enrollment-mismatch".to_owned(),
                    ]
                },
                |l| l.iter().map(|f| f.get_ref().clone()).collect(),
            ),
            hold: c.opt_duration(&r.hold, "hold", Duration::from_secs(7 * 86_400)),
        },
        other => {
            c.error(
                r.kind.span(),
                format!(
                    "kind {other:?}: expected threshold, offline, stale, never_seen, inventory_change, \
                     filesystem_full, clock_skew, spool_drops, agent_version or device_flag"
                ),
            );
            return None;
        }
    };
    if c.errors.len() > before {
        return None;
    }
    let summary = r.summary.clone().unwrap_or_else(|| default_summary(&kind));
    Some(Rule {
        name,
        severity,
        scope,
        labels: r.labels.clone(),
        summary,
        description: r.description.clone().unwrap_or_default(),
        kind,
    })
}

fn default_summary(kind: &Kind) -> String {
    match kind {
        Kind::Threshold {
            metric,
            above: Some(a),
            ..
        } => format!("{metric} above {a}"),
        Kind::Threshold { metric, below, .. } => {
            format!("{metric} below {}", below.unwrap_or_default())
        }
        Kind::Offline { .. } => "device offline".into(),
        Kind::Stale { .. } => "device not seen for a long time".into(),
        Kind::NeverSeen { .. } => "registered device never reported".into(),
        Kind::InventoryChange { .. } => "hardware or OS changed".into(),
        Kind::FilesystemFull { .. } => "filesystem predicted to fill up".into(),
        Kind::ClockSkew { .. } => "agent clock skewed".into(),
        Kind::SpoolDrops { .. } => "agent dropped reports".into(),
        Kind::AgentVersion { .. } => "agent version too old".into(),
        Kind::DeviceFlag { .. } => "device flagged by identity checks".into(),
    }
}
