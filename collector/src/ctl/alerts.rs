//! `vaktctl alerts [ack|watch]`, `vaktctl silence add|list|expire` and
//! `vaktctl rules check|reload`.

use super::connect::Admin;
use super::output::{self, Format};
use anyhow::{Result, anyhow};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use vakt_proto::v1;

#[derive(Clone, Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,
    #[command(flatten)]
    pub filter: AlertFilter,
}

#[derive(Clone, Debug, Default, clap::Args)]
pub struct AlertFilter {
    /// Only alerts in this state (acknowledged: firing with a live acknowledgement)
    #[arg(long, value_parser = ["firing", "pending", "resolved", "acknowledged"])]
    pub state: Option<String>,
    #[arg(long, value_parser = ["info", "warning", "critical"])]
    pub severity: Option<String>,
    /// Device id or hostname
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub department: Option<String>,
    #[arg(long, value_parser = ["laptop", "server", "tablet", "gateway", "desktop"])]
    pub class: Option<String>,
    /// Rule name
    #[arg(long)]
    pub rule: Option<String>,
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Acknowledge an alert: it stays firing but is not re-notified until the
    /// acknowledgement expires (then it is, if still firing)
    Ack {
        /// Alert id (or a unique prefix of at least 4 characters)
        id: String,
        #[arg(long)]
        comment: String,
        /// How long the acknowledgement lasts (default: until resolved)
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        until: Option<Duration>,
    },
    /// Print alert changes as they happen (one line, or one JSON object, each)
    Watch,
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum SilenceCommand {
    /// Silence alerts whose labels match every matcher, for a while
    #[command(
        after_long_help = "Matchers: NAME=VALUE, NAME!=VALUE, NAME=~REGEX, NAME!~REGEX on the alert's \
        labels (alertname, device, hostname, department, class, severity, the rule's labels).\n\n\
        Examples:\n  vaktctl silence add --match device=d-1a2b --duration 2h --comment \"disk swap\"\n  \
        vaktctl silence add --match department=IT --match alertname=~cpu-.* --duration 30m --comment patching"
    )]
    Add {
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long)]
        comment: String,
    },
    /// Silences that have not ended (--all: also the ended ones)
    List {
        #[arg(long)]
        all: bool,
    },
    /// End a silence now
    Expire { id: String },
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file (no collector needed); errors as FILE:LINE:COL
    Check { file: PathBuf },
    /// Make the collector re-read its rules file (alert state is kept)
    Reload,
}

impl AlertFilter {
    pub fn request(&self) -> v1::ListAlertsRequest {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        v1::ListAlertsRequest {
            state: s(&self.state),
            severity: s(&self.severity),
            device: s(&self.device),
            department: s(&self.department),
            class: s(&self.class),
            rule: s(&self.rule),
        }
    }
}

pub async fn alerts(admin: &mut Admin, args: &AlertsArgs, format: Format) -> Result<String> {
    match &args.command {
        None => {
            let response = admin
                .client
                .list_alerts(args.filter.request())
                .await
                .map_err(|s| admin.error(s))?
                .into_inner();
            Ok(render_alerts(
                &response.alerts,
                format,
                vakt_proto::now_unix_ms(),
            ))
        }
        Some(AlertsCommand::Ack { id, comment, until }) => {
            let response = admin
                .client
                .ack_alert(v1::AckAlertRequest {
                    id: id.clone(),
                    comment: comment.clone(),
                    duration_seconds: until.map_or(0, |d| d.as_secs().max(1)),
                })
                .await
                .map_err(|s| admin.error(s))?
                .into_inner();
            let alert = response.alert.unwrap_or_default();
            Ok(render_alerts(&[alert], format, vakt_proto::now_unix_ms()))
        }
        Some(AlertsCommand::Watch) => {
            let mut stream = admin
                .client
                .watch_alerts(v1::WatchAlertsRequest {})
                .await
                .map_err(|s| admin.error(s))?
                .into_inner();
            while let Some(alert) = stream.message().await.map_err(|s| admin.error(s))? {
                let line = match format {
                    Format::Json => serde_json::to_string(&AlertJson::of(&alert))?,
                    _ => watch_line(&alert),
                };
                super::emit(&format!("{line}\n"))?;
            }
            Ok(String::new())
        }
    }
}

pub async fn silence(
    admin: &mut Admin,
    command: &SilenceCommand,
    format: Format,
) -> Result<String> {
    let now = vakt_proto::now_unix_ms();
    match command {
        SilenceCommand::Add {
            matchers,
            duration,
            comment,
        } => {
            let mut wire = Vec::new();
            for m in matchers {
                let parsed = crate::alerts::silence::Matcher::parse(m).map_err(|e| anyhow!(e))?;
                wire.push(v1::SilenceMatcher {
                    name: parsed.name,
                    op: parsed.op.symbol().to_owned(),
                    value: parsed.value,
                });
            }
            let response = admin
                .client
                .add_silence(v1::AddSilenceRequest {
                    matchers: wire,
                    duration_seconds: duration.as_secs().max(1),
                    comment: comment.clone(),
                    starts_at_unix_ms: 0,
                })
                .await
                .map_err(|s| admin.error(s))?
                .into_inner();
            Ok(render_silences(
                &response.silence.into_iter().collect::<Vec<_>>(),
                format,
                now,
            ))
        }
        SilenceCommand::List { all } => {
            let response = admin
                .client
                .list_silences(v1::ListSilencesRequest {
                    include_expired: *all,
                })
                .await
                .map_err(|s| admin.error(s))?
                .into_inner();
            Ok(render_silences(&response.silences, format, now))
        }
        SilenceCommand::Expire { id } => {
            let response = admin
                .client
                .expire_silence(v1::ExpireSilenceRequest { id: id.clone() })
                .await
                .map_err(|s| admin.error(s))?
                .into_inner();
            Ok(render_silences(
                &response.silence.into_iter().collect::<Vec<_>>(),
                format,
                now,
            ))
        }
    }
}

/// `rules check FILE`: every error on its own line on stderr, exit 1.
pub fn check_rules(file: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        anyhow!(
            "cannot read {}: {}",
            file.display(),
            super::connect::io_reason(&e)
        )
    })?;
    match crate::alerts::rules::check_text(&text, &file.display().to_string()) {
        Ok(n) => Ok(format!("{}: ok, {n} rules\n", file.display())),
        Err(errors) => {
            eprintln!("{errors}");
            Err(anyhow!(
                "{} has {} error(s)",
                file.display(),
                errors.errors.len()
            ))
        }
    }
}

pub async fn reload_rules(admin: &mut Admin, format: Format) -> Result<String> {
    let response = admin
        .client
        .reload_rules(v1::ReloadRulesRequest {})
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    Ok(match format {
        Format::Json => output::json(&serde_json::json!({ "rules": response.rules })),
        Format::Csv => {
            let mut out = output::csv_row(&["rule"]);
            for r in &response.rules {
                out.push_str(&output::csv_row(&[r]));
            }
            out
        }
        Format::Table => format!(
            "reloaded {} rules: {}\n",
            response.rules.len(),
            response.rules.join(", ")
        ),
    })
}

fn state_name(a: &v1::Alert, now: i64) -> &'static str {
    let acked = a
        .ack
        .as_ref()
        .is_some_and(|k| k.until_unix_ms == 0 || k.until_unix_ms > now);
    match v1::AlertState::try_from(a.state) {
        Ok(v1::AlertState::Firing) if acked => "acknowledged",
        Ok(v1::AlertState::Firing) => "firing",
        Ok(v1::AlertState::Pending) => "pending",
        Ok(v1::AlertState::Resolved) => "resolved",
        _ => "unknown",
    }
}

#[derive(Serialize)]
struct AckJson<'a> {
    author: &'a str,
    comment: &'a str,
    at: Option<String>,
    until: Option<String>,
}

#[derive(Serialize)]
struct NotificationJson<'a> {
    id: &'a str,
    status: &'a str,
    reason: &'a str,
    at: Option<String>,
}

#[derive(Serialize)]
struct AlertJson<'a> {
    id: &'a str,
    state: &'static str,
    severity: &'a str,
    rule: &'a str,
    device_id: &'a str,
    hostname: &'a str,
    department: &'a str,
    class: &'a str,
    summary: &'a str,
    description: &'a str,
    value: f64,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    active_since: Option<String>,
    fired_at: Option<String>,
    resolved_at: Option<String>,
    silenced: bool,
    flapping: bool,
    ack: Option<AckJson<'a>>,
    notifications: Vec<NotificationJson<'a>>,
}

impl<'a> AlertJson<'a> {
    fn of(a: &'a v1::Alert) -> Self {
        let at = |ms: i64| if ms == 0 { None } else { output::rfc3339(ms) };
        AlertJson {
            id: &a.id,
            state: state_name(a, vakt_proto::now_unix_ms()),
            severity: &a.severity,
            rule: &a.rule,
            device_id: &a.device_id,
            hostname: &a.hostname,
            department: &a.department,
            class: &a.class,
            summary: &a.summary,
            description: &a.description,
            value: a.value,
            labels: a
                .labels
                .iter()
                .map(|l| (l.key.as_str(), l.value.as_str()))
                .collect(),
            active_since: at(a.active_since_unix_ms),
            fired_at: at(a.fired_at_unix_ms),
            resolved_at: at(a.resolved_at_unix_ms),
            silenced: a.silenced,
            flapping: a.flapping,
            ack: a.ack.as_ref().map(|k| AckJson {
                author: &k.author,
                comment: &k.comment,
                at: at(k.at_unix_ms),
                until: at(k.until_unix_ms),
            }),
            notifications: a
                .notifications
                .iter()
                .map(|n| NotificationJson {
                    id: &n.id,
                    status: &n.status,
                    reason: &n.reason,
                    at: at(n.at_unix_ms),
                })
                .collect(),
        }
    }
}

fn watch_line(a: &v1::Alert) -> String {
    let now = vakt_proto::now_unix_ms();
    output::terminal_safe(&format!(
        "{} {} {} {} {} {}",
        output::rfc3339_or_empty(a.updated_at_unix_ms),
        state_name(a, now),
        a.severity,
        a.id,
        a.rule,
        a.summary
    ))
}

pub fn render_alerts(alerts: &[v1::Alert], format: Format, now: i64) -> String {
    match format {
        Format::Json => output::json(&alerts.iter().map(AlertJson::of).collect::<Vec<_>>()),
        Format::Csv => {
            let mut out = output::csv_row(&[
                "id",
                "state",
                "severity",
                "rule",
                "device_id",
                "hostname",
                "department",
                "class",
                "since",
                "silenced",
                "flapping",
                "summary",
            ]);
            for a in alerts {
                out.push_str(&output::csv_row(&[
                    a.id.clone(),
                    state_name(a, now).to_owned(),
                    a.severity.clone(),
                    a.rule.clone(),
                    a.device_id.clone(),
                    a.hostname.clone(),
                    a.department.clone(),
                    a.class.clone(),
                    output::rfc3339_or_empty(since(a)),
                    a.silenced.to_string(),
                    a.flapping.to_string(),
                    a.summary.clone(),
                ]));
            }
            out
        }
        Format::Table => {
            if alerts.is_empty() {
                return "no alerts\n".to_owned();
            }
            let rows: Vec<Vec<String>> = alerts
                .iter()
                .map(|a| {
                    let mut state = state_name(a, now).to_owned();
                    if a.silenced {
                        state.push_str(" (silenced)");
                    }
                    if a.flapping {
                        state.push_str(" (flapping)");
                    }
                    vec![
                        a.id.clone(),
                        state,
                        a.severity.clone(),
                        a.rule.clone(),
                        if a.hostname.is_empty() {
                            a.device_id.clone()
                        } else {
                            a.hostname.clone()
                        },
                        output::relative(since(a), now),
                        a.summary.clone(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID", "STATE", "SEVERITY", "RULE", "DEVICE", "SINCE", "SUMMARY",
                ],
                &rows,
            )
        }
    }
}

fn since(a: &v1::Alert) -> i64 {
    match v1::AlertState::try_from(a.state) {
        Ok(v1::AlertState::Firing) => a.fired_at_unix_ms,
        Ok(v1::AlertState::Resolved) => a.resolved_at_unix_ms,
        _ => a.active_since_unix_ms,
    }
}

pub fn render_silences(silences: &[v1::Silence], format: Format, now: i64) -> String {
    let matchers = |s: &v1::Silence| {
        s.matchers
            .iter()
            .map(|m| format!("{}{}{}", m.name, m.op, m.value))
            .collect::<Vec<_>>()
            .join(",")
    };
    match format {
        Format::Json => output::json(
            &silences
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id,
                        "matchers": s.matchers.iter().map(|m| format!("{}{}{}", m.name, m.op, m.value)).collect::<Vec<_>>(),
                        "starts_at": output::rfc3339(s.starts_at_unix_ms),
                        "ends_at": output::rfc3339(s.ends_at_unix_ms),
                        "active": s.active,
                        "author": s.author,
                        "comment": s.comment,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Format::Csv => {
            let mut out = output::csv_row(&["id", "matchers", "starts_at", "ends_at", "active", "author", "comment"]);
            for s in silences {
                out.push_str(&output::csv_row(&[
                    s.id.clone(),
                    matchers(s),
                    output::rfc3339_or_empty(s.starts_at_unix_ms),
                    output::rfc3339_or_empty(s.ends_at_unix_ms),
                    s.active.to_string(),
                    s.author.clone(),
                    s.comment.clone(),
                ]));
            }
            out
        }
        Format::Table => {
            if silences.is_empty() {
                return "no silences\n".to_owned();
            }
            let rows: Vec<Vec<String>> = silences
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        matchers(s),
                        if s.active { "active".into() } else if s.ends_at_unix_ms <= now { "ended".into() } else { "pending".into() },
                        output::relative(s.ends_at_unix_ms, now),
                        s.author.clone(),
                        s.comment.clone(),
                    ]
                })
                .collect();
            output::table(&["ID", "MATCHERS", "STATE", "ENDS", "AUTHOR", "COMMENT"], &rows)
        }
    }
}
