//! `vaktctl audit`: who did what to which device, oldest first, as the
//! collector recorded it (registrations, enrollments accepted and refused,
//! revocations, credentials issued).

use super::connect::Admin;
use super::metrics::{When, parse_when};
use super::output::{self, Format};
use anyhow::Result;
use serde::Serialize;
use vakt_proto::v1;

#[derive(Clone, Debug, clap::Args)]
pub struct AuditArgs {
    /// Start: a duration ago (24h, 30d) or an RFC 3339 time
    #[arg(long, value_name = "WHEN", default_value = "7d", value_parser = parse_when)]
    pub since: When,
    /// Only actions starting with this, e.g. `enroll` or `device.revoke`
    #[arg(long, value_name = "PREFIX")]
    pub action: Option<String>,
    /// Only records about this device id
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// At most this many records, the newest ones
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = parse_limit)]
    pub limit: u32,
}

fn parse_limit(s: &str) -> Result<u32, String> {
    let max = vakt_proto::validate::MAX_AUDIT_RECORDS;
    match s.parse::<u32>() {
        Ok(n) if n >= 1 && n as usize <= max => Ok(n),
        _ => Err(format!("expected a number from 1 to {max}")),
    }
}

impl AuditArgs {
    pub fn request(&self, now_ms: i64) -> v1::ListAuditRequest {
        v1::ListAuditRequest {
            since_unix_ms: self.since.unix_ms(now_ms),
            action_prefix: self.action.clone().unwrap_or_default(),
            device_id: self.device.clone().unwrap_or_default(),
            limit: self.limit,
        }
    }
}

pub async fn run(admin: &mut Admin, args: &AuditArgs, format: Format) -> Result<String> {
    let response = admin
        .client
        .list_audit(args.request(vakt_proto::now_unix_ms()))
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    Ok(render_audit(&response.records, format))
}

/// The table shows this much of a detail; JSON and CSV always carry all of
/// it (the table is for reading, the others for keeping).
const TABLE_DETAIL_CHARS: usize = 120;

#[derive(Serialize)]
struct RecordJson<'a> {
    at: Option<String>,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    detail: &'a str,
    peer: &'a str,
}

pub fn render_audit(records: &[v1::AuditRecord], format: Format) -> String {
    match format {
        Format::Json => output::json(
            &records
                .iter()
                .map(|r| RecordJson {
                    at: output::rfc3339(r.at_unix_ms),
                    actor: &r.actor,
                    action: &r.action,
                    target: &r.target,
                    outcome: &r.outcome,
                    detail: &r.detail,
                    peer: &r.peer,
                })
                .collect::<Vec<_>>(),
        ),
        // Detail last here too: it is the field most likely to need quoting.
        Format::Csv => {
            let mut out = output::csv_row(&[
                "at", "actor", "action", "target", "outcome", "peer", "detail",
            ]);
            for r in records {
                out.push_str(&output::csv_row(&[
                    output::rfc3339_or_empty(r.at_unix_ms),
                    r.actor.clone(),
                    r.action.clone(),
                    r.target.clone(),
                    r.outcome.clone(),
                    r.peer.clone(),
                    r.detail.clone(),
                ]));
            }
            out
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        output::rfc3339_or_empty(r.at_unix_ms),
                        r.actor.clone(),
                        r.action.clone(),
                        r.target.clone(),
                        r.outcome.clone(),
                        shorten(&r.detail, TABLE_DETAIL_CHARS),
                    ]
                })
                .collect();
            output::table(
                &["TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"],
                &rows,
            )
        }
    }
}

/// At most `max` characters, the cut marked with `…`.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn records() -> Vec<v1::AuditRecord> {
        vec![
            v1::AuditRecord {
                at_unix_ms: NOW - 3_600_000,
                actor: "admin:ana (admin)".into(),
                action: "device.register".into(),
                target: "dev-01".into(),
                outcome: "ok".into(),
                detail: "serial SN1".into(),
                peer: "10.0.0.9:50122".into(),
            },
            v1::AuditRecord {
                at_unix_ms: NOW,
                actor: "anonymous".into(),
                action: "enroll.refused".into(),
                target: "dev-01".into(),
                outcome: "refused".into(),
                detail: format!("hardware mismatch, \"serial\" {}", "x".repeat(200)),
                peer: "203.0.113.7:40000".into(),
            },
        ]
    }

    #[test]
    fn table_keeps_detail_last_and_shortened() {
        let out = render_audit(&records(), Format::Table);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "TIME                   ACTOR               ACTION            TARGET   OUTCOME   DETAIL"
        );
        assert_eq!(
            lines[1],
            "2023-11-14T21:13:20Z   admin:ana (admin)   device.register   dev-01   ok        serial SN1"
        );
        let (_, detail) = lines[2].rsplit_once("refused   ").expect("detail column");
        assert_eq!(detail.chars().count(), TABLE_DETAIL_CHARS);
        assert!(detail.starts_with("hardware mismatch, \"serial\" xxx"));
        assert!(detail.ends_with("x…"));
        assert_eq!(
            render_audit(&[], Format::Table),
            "TIME   ACTOR   ACTION   TARGET   OUTCOME   DETAIL\n"
        );
    }

    #[test]
    fn json_and_csv_carry_everything() {
        let full = records()[1].detail.clone();
        let out = render_audit(&records(), Format::Json);
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
        assert_eq!(
            v[0],
            serde_json::json!({"at": "2023-11-14T21:13:20Z", "actor": "admin:ana (admin)",
                "action": "device.register", "target": "dev-01", "outcome": "ok",
                "detail": "serial SN1", "peer": "10.0.0.9:50122"})
        );
        assert_eq!(v[1]["detail"], full.as_str());
        assert!(out.starts_with("[\n  {\n    \"at\": \"2023-11-14T21:13:20Z\",\n    \"actor\""));
        assert_eq!(render_audit(&[], Format::Json), "[]\n");

        let csv = render_audit(&records(), Format::Csv);
        assert_eq!(
            csv,
            format!(
                "at,actor,action,target,outcome,peer,detail\n\
                 2023-11-14T21:13:20Z,admin:ana (admin),device.register,dev-01,ok,10.0.0.9:50122,serial SN1\n\
                 2023-11-14T22:13:20Z,anonymous,enroll.refused,dev-01,refused,203.0.113.7:40000,\"{}\"\n",
                full.replace('"', "\"\"")
            )
        );
    }

    #[test]
    fn request_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            audit: AuditArgs,
        }
        let t = T::try_parse_from(["t"]).expect("defaults");
        let req = t.audit.request(NOW);
        assert_eq!(req.since_unix_ms, NOW - 7 * 86_400_000);
        assert_eq!(req.limit, 1000);
        assert_eq!(
            (req.action_prefix.as_str(), req.device_id.as_str()),
            ("", "")
        );
        let t = T::try_parse_from([
            "t", "--since", "24h", "--action", "enroll", "--device", "dev-01",
        ])
        .expect("flags");
        let req = t.audit.request(NOW);
        assert_eq!(req.since_unix_ms, NOW - 86_400_000);
        assert_eq!(req.action_prefix, "enroll");
        assert_eq!(req.device_id, "dev-01");
        assert!(T::try_parse_from(["t", "--limit", "0"]).is_err());
    }
}
