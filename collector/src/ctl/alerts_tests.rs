use super::*;
use crate::ctl::{Cli, Command};
use clap::Parser;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("vaktctl").chain(args.iter().copied()))
}

#[test]
fn alerts_filters_and_subcommands() {
    let cli = parse(&[
        "alerts",
        "--state",
        "acknowledged",
        "--class",
        "server",
        "--rule",
        "cpu",
    ])
    .expect("valid");
    let Command::Alerts(args) = cli.command else {
        panic!("alerts")
    };
    let req = args.filter.request();
    assert_eq!(
        (req.state.as_str(), req.class.as_str(), req.rule.as_str()),
        ("acknowledged", "server", "cpu")
    );
    assert!(vakt_proto::validate::list_alerts_request(&req).is_ok());
    assert!(parse(&["alerts", "--state", "burning"]).is_err());

    let cli = parse(&[
        "alerts",
        "ack",
        "3f9c",
        "--comment",
        "mine",
        "--until",
        "2h",
    ])
    .expect("valid");
    let Command::Alerts(AlertsArgs {
        command: Some(AlertsCommand::Ack { id, until, .. }),
        ..
    }) = cli.command
    else {
        panic!("ack")
    };
    assert_eq!(
        (id.as_str(), until),
        ("3f9c", Some(Duration::from_secs(7200)))
    );
    assert_eq!(
        parse(&["alerts", "ack", "3f9c"])
            .expect_err("no comment")
            .exit_code(),
        2
    );
    assert!(
        parse(&["silence", "add", "--duration", "1h", "--comment", "c"]).is_err(),
        "--match is required"
    );
    assert!(parse(&["rules", "check", "alerts.toml"]).is_ok());
}

#[test]
fn alert_rendering() {
    let alert = v1::Alert {
        id: "3f9c1a2b3c4d5e6f".into(),
        rule: "cpu".into(),
        device_id: "d-1".into(),
        hostname: "web-1".into(),
        severity: "critical".into(),
        state: v1::AlertState::Firing as i32,
        summary: "web-1: cpu above 0.9".into(),
        fired_at_unix_ms: 1_000,
        ack: Some(v1::AlertAck {
            author: "ana".into(),
            comment: "mine".into(),
            at_unix_ms: 1_500,
            until_unix_ms: 0,
        }),
        ..Default::default()
    };
    let table = render_alerts(std::slice::from_ref(&alert), Format::Table, 61_000);
    assert!(
        table.contains("acknowledged") && table.contains("web-1"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&render_alerts(
        std::slice::from_ref(&alert),
        Format::Json,
        61_000,
    ))
    .expect("json");
    assert_eq!(json[0]["state"], "acknowledged");
    assert_eq!(json[0]["ack"]["author"], "ana");
    let csv = render_alerts(&[alert], Format::Csv, 61_000);
    assert!(csv.starts_with("id,state,severity"), "{csv}");
    assert_eq!(render_alerts(&[], Format::Table, 0), "no alerts\n");
}
