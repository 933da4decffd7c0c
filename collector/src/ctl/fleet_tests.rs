//! Snapshot tests of the fleet-wide renderings (`query`, `top`,
//! `inventory query`, `summary`) against fixed answers and a fixed clock,
//! and of how their arguments become requests.

use super::super::fleet_args::{Agg, Group};
use super::super::inventory_query::render_inventory_query;
use super::super::output::Format;
use super::super::query_expr::{Expr, parse};
use super::super::summary::render_summary;
use super::super::top::render_top;
use super::super::{Cli, Command, InventoryCommand};
use super::render_query;
use clap::Parser;
use vakt_proto::v1::{self, inventory_query_request::Question};

const NOW: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
const DAY: i64 = 86_400_000;

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("vaktctl").chain(args.iter().copied()))
}

fn attr(k: &str, v: &str) -> v1::Attribute {
    v1::Attribute {
        key: k.into(),
        value: v.into(),
    }
}

fn aggregate() -> v1::FleetAggregateResponse {
    let group = |g: &str, value, devices, samples| v1::FleetGroup {
        group: g.into(),
        value,
        devices,
        samples,
    };
    v1::FleetAggregateResponse {
        groups: vec![
            group("HR", 0.4, 1, 2880),
            group("IT", 0.953_125, 2, 5760),
            group("", 0.125, 1, 2880),
        ],
        devices_scanned: 5,
    }
}

fn max_by_department() -> Expr {
    parse("max(system.filesystem.utilization) by department").expect("valid")
}

#[test]
fn query_table() {
    assert_eq!(
        render_query(
            &max_by_department(),
            &aggregate(),
            NOW - DAY,
            NOW,
            Format::Table
        ),
        "DEPARTMENT   max(system.filesystem.utilization)   DEVICES   SAMPLES\n\
         HR           0.4                                  1         2880\n\
         IT           0.9531                               2         5760\n\
         (none)       0.125                                1         2880\n"
    );
    let fleet = parse("count(system.cpu.utilization)").expect("valid");
    let one = v1::FleetAggregateResponse {
        groups: vec![v1::FleetGroup {
            group: String::new(),
            value: 4.0,
            devices: 4,
            samples: 480,
        }],
        devices_scanned: 6,
    };
    assert_eq!(
        render_query(&fleet, &one, NOW - DAY, NOW, Format::Table),
        "FLEET   count(system.cpu.utilization)   DEVICES   SAMPLES\n\
         (all)   4                               4         480\n"
    );
    assert_eq!(
        render_query(
            &fleet,
            &v1::FleetAggregateResponse::default(),
            0,
            NOW,
            Format::Table
        ),
        ""
    );
}

#[test]
fn query_csv_and_json() {
    assert_eq!(
        render_query(
            &max_by_department(),
            &aggregate(),
            NOW - DAY,
            NOW,
            Format::Csv
        ),
        "department,max,devices,samples\n\
         HR,0.4,1,2880\n\
         IT,0.953125,2,5760\n\
         ,0.125,1,2880\n"
    );
    let out = render_query(
        &max_by_department(),
        &aggregate(),
        NOW - DAY,
        NOW,
        Format::Json,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["metric"], "system.filesystem.utilization");
    assert_eq!(v["aggregation"], "max");
    assert_eq!(v["by"], "department");
    assert_eq!(v["since"], "2023-11-13T22:13:20Z");
    assert_eq!(v["until"], "2023-11-14T22:13:20Z");
    assert_eq!(v["devices_scanned"], 5);
    assert_eq!(v["groups"][1]["group"], "IT");
    assert_eq!(v["groups"][1]["value"], 0.953_125);
    assert_eq!(v["groups"][1]["devices"], 2);
    assert_eq!(v["groups"][1]["samples"], 5760);
}

#[test]
fn query_expression_or_flags_become_the_same_request() {
    let Command::Query(expr) = cli(&[
        "query",
        "p95(system.filesystem.utilization{mountpoint=\"/\"}) by site",
        "--since",
        "24h",
        "--class",
        "laptop",
    ])
    .expect("valid")
    .command
    else {
        panic!("query")
    };
    let Command::Query(flags) = cli(&[
        "query",
        "--agg",
        "p95",
        "--metric",
        "system.filesystem.utilization",
        "--attr",
        "mountpoint=/",
        "--by",
        "site",
        "--since",
        "24h",
        "--class",
        "laptop",
    ])
    .expect("valid")
    .command
    else {
        panic!("query")
    };
    let a = expr.request(NOW).expect("request");
    assert_eq!(a, flags.request(NOW).expect("request"));
    assert_eq!(a.aggregation, v1::Aggregation::P95 as i32);
    assert_eq!(
        (a.group_by, a.group_label.as_str()),
        (v1::GroupBy::Label as i32, "site")
    );
    assert_eq!(a.attributes, vec![attr("mountpoint", "/")]);
    assert_eq!((a.since_unix_ms, a.until_unix_ms), (NOW - DAY, 0));
    assert_eq!(
        a.selector.map(|s| s.class),
        Some(v1::DeviceClass::Laptop as i32)
    );

    use clap::error::ErrorKind;
    let kind = |args: &[&str]| cli(args).expect_err("usage error").kind();
    assert_eq!(kind(&["query"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(
        kind(&["query", "max(m)", "--metric", "m"]),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(kind(&["query", "max(m"]), ErrorKind::ValueValidation);
    let text = cli(&["query", "max(m) by"]).expect_err("bad").to_string();
    assert!(
        text.contains("column 10: expected department, class or a label key"),
        "{text}"
    );
    let Command::Query(last) = cli(&["query", "--metric", "m", "--agg", "last"])
        .expect("parses")
        .command
    else {
        panic!("query")
    };
    assert!(last.request(NOW).is_err(), "last is refused with a hint");
}

fn top_values() -> v1::FleetTopResponse {
    let value =
        |group: &str, host: &str, dept: &str, mount: &str, v: f64, ago: i64| v1::FleetValue {
            device_id: format!("d-{host}"),
            hostname: host.into(),
            department: dept.into(),
            class: v1::DeviceClass::Laptop as i32,
            attributes: vec![attr("mountpoint", mount)],
            value: v,
            timestamp_unix_ms: NOW - ago,
            group: group.into(),
        };
    v1::FleetTopResponse {
        values: vec![
            value("HR", "hr-1", "HR", "/", 0.97, 30_000),
            value("HR", "hr-2", "HR", "/home", 0.5, 3_600_000),
            value("IT", "it-1", "IT", "/", 0.91, 2 * DAY),
        ],
    }
}

#[test]
fn top_table_ranks_within_groups() {
    let metric = "system.filesystem.utilization";
    assert_eq!(
        render_top(
            metric,
            &Group::Department,
            &top_values(),
            NOW,
            Format::Table
        ),
        "DEPARTMENT   #   HOSTNAME   DEVICE   CLASS    ATTRIBUTES         system.filesystem.utilization   SAMPLED\n\
         HR           1   hr-1       d-hr-1   laptop   mountpoint=/       0.97                            30s ago\n\
         HR           2   hr-2       d-hr-2   laptop   mountpoint=/home   0.5                             1h ago\n\
         IT           1   it-1       d-it-1   laptop   mountpoint=/       0.91                            2d ago\n"
    );
    let mut flat = top_values();
    for v in &mut flat.values {
        v.group.clear();
    }
    assert_eq!(
        render_top(metric, &Group::Fleet, &flat, NOW, Format::Csv),
        "rank,device_id,hostname,department,class,attributes,value,timestamp\n\
         1,d-hr-1,hr-1,HR,laptop,mountpoint=/,0.97,2023-11-14T22:12:50.000Z\n\
         2,d-hr-2,hr-2,HR,laptop,mountpoint=/home,0.5,2023-11-14T21:13:20.000Z\n\
         3,d-it-1,it-1,IT,laptop,mountpoint=/,0.91,2023-11-12T22:13:20.000Z\n"
    );
    let out = render_top(metric, &Group::Department, &top_values(), NOW, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["by"], "department");
    assert_eq!(v["values"][1]["rank"], 2);
    assert_eq!(v["values"][2]["rank"], 1);
    assert_eq!(v["values"][2]["group"], "IT");
    assert_eq!(v["values"][1]["attributes"]["mountpoint"], "/home");
    assert_eq!(v["values"][0]["class"], "laptop");
    assert_eq!(v["values"][0]["timestamp"], "2023-11-14T22:12:50.000Z");
    let flat_json = render_top(metric, &Group::Fleet, &flat, NOW, Format::Json);
    assert!(!flat_json.contains("\"group\""), "{flat_json}");

    let Command::Top(args) = cli(&[
        "top",
        metric,
        "-k",
        "3",
        "--bottom",
        "--by",
        "department",
        "--max-age",
        "1h",
    ])
    .expect("valid")
    .command
    else {
        panic!("top")
    };
    let req = args.request(NOW);
    assert_eq!((req.k, req.ascending), (3, true));
    assert_eq!(req.group_by, v1::GroupBy::Department as i32);
    assert_eq!(req.newer_than_unix_ms, NOW - 3_600_000);
    assert!(cli(&["top", metric, "-k", "0"]).is_err());
}

fn inventory_matches() -> v1::InventoryQueryResponse {
    let m = |host: &str, dept: &str, group: &str, value: Option<f64>| v1::InventoryMatch {
        device_id: format!("d-{host}"),
        hostname: host.into(),
        department: dept.into(),
        class: v1::DeviceClass::Laptop as i32,
        group: group.into(),
        value,
    };
    v1::InventoryQueryResponse {
        matches: vec![
            m("hr-1", "HR", "Debian GNU/Linux 12", None),
            m("it-1", "IT", "Debian GNU/Linux 12", None),
            m("it-2", "IT", "Debian GNU/Linux 13", None),
            m("new-1", "", "", None),
        ],
    }
}

#[test]
fn inventory_os_counts_and_lists() {
    let q = Question::ByOs(true);
    assert_eq!(
        render_inventory_query(&q, false, &inventory_matches(), Format::Table),
        "OS                    DEVICES\n\
         Debian GNU/Linux 12   2\n\
         Debian GNU/Linux 13   1\n\
         (none)                1\n"
    );
    assert_eq!(
        render_inventory_query(&q, false, &inventory_matches(), Format::Csv),
        "os,devices\nDebian GNU/Linux 12,2\nDebian GNU/Linux 13,1\n,1\n"
    );
    assert_eq!(
        render_inventory_query(&q, true, &inventory_matches(), Format::Table),
        "HOSTNAME   DEVICE    DEPARTMENT   CLASS    OS\n\
         hr-1       d-hr-1    HR           laptop   Debian GNU/Linux 12\n\
         it-1       d-it-1    IT           laptop   Debian GNU/Linux 12\n\
         it-2       d-it-2    IT           laptop   Debian GNU/Linux 13\n\
         new-1      d-new-1   -            laptop   -\n"
    );
    let out = render_inventory_query(&q, false, &inventory_matches(), Format::Json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["question"], "os");
    assert_eq!(v["groups"][0]["value"], "Debian GNU/Linux 12");
    assert_eq!(v["groups"][0]["count"], 2);
    assert_eq!(v["groups"][0]["devices"][1]["hostname"], "it-1");
    assert!(v["groups"][0]["devices"][0].get("health_percent").is_none());
}

#[test]
fn inventory_batteries_worst_first() {
    let mut batteries = inventory_matches();
    batteries.matches.truncate(2);
    batteries.matches[0].group = "BAT0".into();
    batteries.matches[0].value = Some(0.5123);
    batteries.matches[1].group = "BAT1".into();
    batteries.matches[1].value = Some(0.79);
    let q = Question::BatteryHealthBelowPercent(80.0);
    assert_eq!(
        render_inventory_query(&q, false, &batteries, Format::Table),
        "HOSTNAME   DEVICE   DEPARTMENT   CLASS    BATTERY   HEALTH\n\
         hr-1       d-hr-1   HR           laptop   BAT0      51.2%\n\
         it-1       d-it-1   IT           laptop   BAT1      79%\n"
    );
    assert_eq!(
        render_inventory_query(&q, false, &batteries, Format::Csv),
        "hostname,device_id,department,class,battery,health\n\
         hr-1,d-hr-1,HR,laptop,BAT0,51.2%\n\
         it-1,d-it-1,IT,laptop,BAT1,79%\n"
    );
    let out = render_inventory_query(&q, false, &batteries, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["question"], "battery-below");
    assert_eq!(v["below_percent"], 80.0);
    assert_eq!(v["devices"][0]["battery"], "BAT0");
    assert_eq!(v["devices"][0]["health_percent"], 51.2);

    let parse_inventory = |args: &[&str]| {
        let mut all = vec!["inventory", "query"];
        all.extend_from_slice(args);
        match cli(&all).map(|c| c.command) {
            Ok(Command::Inventory(super::super::inventory::InventoryArgs {
                command: Some(InventoryCommand::Query(a)),
                ..
            })) => Ok(a.question()),
            Ok(_) => panic!("inventory query"),
            Err(e) => Err(e.kind()),
        }
    };
    assert_eq!(
        parse_inventory(&["--battery-below", "80%"]),
        Ok(Question::BatteryHealthBelowPercent(80.0))
    );
    assert_eq!(
        parse_inventory(&["--package", "openssl=3.0.15-1"]),
        Ok(Question::Package(v1::PackageMatch {
            name: "openssl".into(),
            version: "3.0.15-1".into()
        }))
    );
    assert_eq!(parse_inventory(&["--model"]), Ok(Question::ByModel(true)));
    use clap::error::ErrorKind;
    assert_eq!(
        parse_inventory(&[]),
        Err(ErrorKind::MissingRequiredArgument)
    );
    assert_eq!(
        parse_inventory(&["--os", "--model"]),
        Err(ErrorKind::ArgumentConflict)
    );
    assert_eq!(
        parse_inventory(&["--battery-below", "0"]),
        Err(ErrorKind::ValueValidation)
    );
}

fn summary() -> v1::FleetSummaryResponse {
    let row = |dept: &str, class: v1::DeviceClass, counts: [u32; 11]| v1::FleetSummaryRow {
        department: dept.into(),
        class: class as i32,
        devices: counts[0],
        online: counts[1],
        asleep: counts[2],
        off: counts[3],
        offline: counts[4],
        stale: counts[5],
        never_seen: counts[6],
        revoked: counts[7],
        low_disk: counts[8],
        degraded_battery: counts[9],
        outdated_os: counts[10],
        alerts_firing: 0,
    };
    use v1::DeviceClass::*;
    v1::FleetSummaryResponse {
        rows: vec![
            row("HR", Laptop, [3, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0]),
            row("IT", Server, [2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            row("", Unspecified, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]),
        ],
        total: Some(row("", Unspecified, [6, 3, 1, 0, 0, 1, 1, 0, 1, 1, 1])),
        newest_os_versions: vec![attr("Debian GNU/Linux", "13")],
        alerts_available: false,
    }
}

#[test]
fn summary_renderings() {
    assert_eq!(
        render_summary(&summary(), Format::Table),
        "DEPARTMENT   CLASS     DEVICES   ONLINE   ASLEEP   OFF   OFFLINE   STALE   NEVER-SEEN   REVOKED   LOW-DISK   DEGRADED-BATTERY   OUTDATED-OS   ALERTS\n\
         HR           laptop    3         1        1        0     0         0       1            0         1          1                  0             n/a\n\
         IT           server    2         2        0        0     0         0       0            0         0          0                  1             n/a\n\
         (none)       unknown   1         0        0        0     0         1       0            0         0          0                  0             n/a\n\
         TOTAL        -         6         3        1        0     0         1       1            0         1          1                  1             n/a\n\
         \n\
         Newest OS versions: Debian GNU/Linux 13\n"
    );
    assert_eq!(
        render_summary(&summary(), Format::Csv),
        "department,class,devices,online,asleep,off,offline,stale,never_seen,revoked,low_disk,degraded_battery,outdated_os,alerts\n\
         HR,laptop,3,1,1,0,0,0,1,0,1,1,0,n/a\n\
         IT,server,2,2,0,0,0,0,0,0,0,0,1,n/a\n\
         ,unknown,1,0,0,0,0,1,0,0,0,0,0,n/a\n\
         TOTAL,,6,3,1,0,0,1,1,0,1,1,1,n/a\n"
    );
    let out = render_summary(&summary(), Format::Json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["rows"][0]["department"], "HR");
    assert_eq!(v["rows"][0]["class"], "laptop");
    assert_eq!(v["rows"][0]["degraded_battery"], 1);
    assert_eq!(v["rows"][0]["alerts_firing"], serde_json::Value::Null);
    assert_eq!(v["total"]["devices"], 6);
    assert_eq!(v["newest_os_versions"]["Debian GNU/Linux"], "13");
    assert_eq!(v["alerts_available"], false);

    let Command::Summary(args) = cli(&[
        "summary",
        "--disk-threshold",
        "80",
        "--battery-below",
        "70",
        "--stale-after",
        "30d",
        "--department",
        "IT",
    ])
    .expect("valid")
    .command
    else {
        panic!("summary")
    };
    let req = args.request();
    assert_eq!(req.disk_utilization_threshold, 0.8);
    assert_eq!(req.battery_health_threshold, 0.7);
    assert_eq!(req.stale_after_seconds, 30 * 86_400);
    assert_eq!(req.selector.map(|s| s.department), Some("IT".to_owned()));
    assert!(vakt_proto::validate::fleet_summary_request(&args.request()).is_ok());
}

#[test]
fn fleet_commands_teach_with_examples() {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    for path in [
        &["query"][..],
        &["top"],
        &["inventory", "query"],
        &["summary"],
        &["metrics"],
    ] {
        let mut cmd = &mut cli;
        for name in path {
            cmd = cmd.find_subcommand_mut(name).expect("subcommand exists");
        }
        let help = cmd.render_long_help().to_string();
        assert!(help.contains("Examples:\n  vaktctl "), "{path:?}:\n{help}");
    }
    let mut metrics = Cli::command();
    let help = metrics
        .find_subcommand_mut("metrics")
        .expect("metrics")
        .render_long_help()
        .to_string();
    assert!(help.contains("rollups"), "{help}");
    assert!(help.contains("--agg"), "{help}");
    let _ = Agg::P95;
}
