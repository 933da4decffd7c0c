//! Fleet-wide questions against a real collector: several enrolled devices in
//! two departments report filesystem and battery samples with an inventory;
//! `vaktctl query`, `top`, `inventory query` and `summary` (-o json) must
//! agree with what was reported.

use serde_json::Value;
use std::time::Instant;
use vakt_tests::fleet_queries::{FleetDeviceSpec, enroll_and_report, register_in};
use vakt_tests::{Collector, now_ms};

const FS: &str = "system.filesystem.utilization";

fn fleet() -> Vec<FleetDeviceSpec> {
    vec![
        FleetDeviceSpec {
            hostname: "it-laptop-1",
            department: "IT",
            class: "laptop",
            labels: vec!["site=hq"],
            os_version: "12",
            model: "ThinkPad T14",
            filesystems: vec![("/", vec![0.5, 0.6, 0.92])],
            battery_health: Some(vec![0.73, 0.73, 0.72]),
            sleeps: false,
            packages: vec![("openssl", "3.0.15-1"), ("bash", "5.2.15-2")],
        },
        FleetDeviceSpec {
            hostname: "it-server-1",
            department: "IT",
            class: "server",
            labels: vec!["site=dc"],
            os_version: "13",
            model: "PowerEdge R650",
            filesystems: vec![("/", vec![0.3, 0.35, 0.4]), ("/srv", vec![0.7, 0.8, 0.85])],
            battery_health: None,
            sleeps: false,
            packages: vec![("openssl", "3.5.1-1")],
        },
        FleetDeviceSpec {
            hostname: "hr-laptop-1",
            department: "HR",
            class: "laptop",
            labels: vec!["site=hq"],
            os_version: "13",
            model: "ThinkPad T14",
            filesystems: vec![("/", vec![0.2, 0.25, 0.3])],
            battery_health: Some(vec![0.95, 0.95, 0.95]),
            sleeps: false,
            packages: vec![("openssl", "3.0.15-1")],
        },
        FleetDeviceSpec {
            hostname: "hr-laptop-3",
            department: "HR",
            class: "laptop",
            labels: vec!["site=branch"],
            os_version: "12",
            model: "Latitude 5440",
            filesystems: vec![("/", vec![0.1, 0.1, 0.1])],
            battery_health: Some(vec![0.9, 0.9, 0.9]),
            sleeps: true,
            packages: vec![("bash", "5.2.15-2")],
        },
    ]
}

/// `vaktctl ARGS… -o json`, timed (process start included).
fn timed_json(collector: &Collector, args: &[&str], timings: &mut Vec<(String, u128)>) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    let start = Instant::now();
    let json = collector.vaktctl_json(&all);
    timings.push((args.join(" "), start.elapsed().as_millis()));
    json
}

fn groups(json: &Value) -> Vec<(String, f64, u64)> {
    json["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups: {json}"))
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap_or_default().to_owned(),
                g["value"].as_f64().unwrap_or(f64::NAN),
                g["devices"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_queries_top_inventory_and_summary_answer_from_reported_data() {
    let collector = Collector::start();
    let now = now_ms();
    let times = [now - 30 * 60_000, now - 20 * 60_000, now - 60_000];
    for spec in fleet() {
        enroll_and_report(&collector, &spec, &times).await;
    }
    // Registered in HR, never enrolled.
    register_in(
        &collector,
        &FleetDeviceSpec {
            department: "HR",
            class: "laptop",
            ..Default::default()
        },
    );
    let mut timings = Vec::new();

    // --- query ---
    let max = timed_json(
        &collector,
        &[
            "query",
            &format!("max({FS}) by department"),
            "--since",
            "1h",
        ],
        &mut timings,
    );
    assert_eq!(max["aggregation"], "max", "{max}");
    assert_eq!(max["by"], "department", "{max}");
    assert_eq!(max["devices_scanned"], 5, "{max}");
    assert_eq!(
        groups(&max),
        vec![("HR".to_owned(), 0.3, 2), ("IT".to_owned(), 0.92, 2)],
        "{max}"
    );
    // Only the newest reports, only "/", averaged per class.
    let avg = timed_json(
        &collector,
        &[
            "query",
            &format!("avg({FS}{{mountpoint=\"/\"}}) by class"),
            "--since",
            "5m",
        ],
        &mut timings,
    );
    let got = groups(&avg);
    assert_eq!(got.len(), 2, "{avg}");
    assert_eq!((got[0].0.as_str(), got[0].2), ("laptop", 3), "{avg}");
    assert!((got[0].1 - (0.92 + 0.3 + 0.1) / 3.0).abs() < 1e-9, "{avg}");
    assert_eq!((got[1].0.as_str(), got[1].1), ("server", 0.4), "{avg}");
    // The flag form, grouped by a label, counting devices.
    let count = timed_json(
        &collector,
        &[
            "query", "--agg", "count", "--metric", FS, "--by", "site", "--since", "1h",
        ],
        &mut timings,
    );
    assert_eq!(
        groups(&count),
        vec![
            ("branch".to_owned(), 1.0, 1),
            ("dc".to_owned(), 1.0, 1),
            ("hq".to_owned(), 2.0, 2)
        ],
        "{count}"
    );
    let p95 = timed_json(
        &collector,
        &[
            "query",
            &format!("p95({FS})"),
            "--since",
            "1h",
            "--department",
            "IT",
        ],
        &mut timings,
    );
    // IT's 9 samples: 0.3 0.35 0.4 0.5 0.6 0.7 0.8 0.85 0.92 → rank ceil(8.55) = 9.
    assert_eq!(groups(&p95), vec![(String::new(), 0.92, 2)], "{p95}");
    // A malformed expression is a usage error that points at the column.
    let bad = collector.vaktctl(&["query", "max(system.filesystem.utilization by department"]);
    assert_eq!(bad.code, Some(2), "{bad}");
    assert!(bad.stderr.contains("column 35: expected ')'"), "{bad}");

    // --- top ---
    let top = timed_json(&collector, &["top", FS, "-k", "2"], &mut timings);
    let rows: Vec<(String, String, f64)> = top["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{top}"))
        .iter()
        .map(|v| {
            (
                v["hostname"].as_str().unwrap_or_default().to_owned(),
                v["attributes"]["mountpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                v["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("it-laptop-1".to_owned(), "/".to_owned(), 0.92),
            ("it-server-1".to_owned(), "/srv".to_owned(), 0.85)
        ],
        "{top}"
    );
    assert_eq!(top["values"][0]["timestamp_unix_ms"], times[2], "{top}");
    let per_dept = timed_json(
        &collector,
        &["top", FS, "-k", "1", "--by", "department", "--bottom"],
        &mut timings,
    );
    let lowest: Vec<(&str, &str)> = per_dept["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{per_dept}"))
        .iter()
        .map(|v| {
            (
                v["group"].as_str().unwrap_or_default(),
                v["hostname"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        lowest,
        vec![("HR", "hr-laptop-3"), ("IT", "it-server-1")],
        "{per_dept}"
    );

    // --- inventory query ---
    let os = timed_json(&collector, &["inventory", "query", "--os"], &mut timings);
    let os_groups: Vec<(&str, u64)> = os["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{os}"))
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap_or("?"),
                g["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        os_groups,
        vec![
            ("Debian GNU/Linux 12", 2),
            ("Debian GNU/Linux 13", 2),
            ("", 1)
        ],
        "{os}"
    );
    let models = timed_json(
        &collector,
        &["inventory", "query", "--model", "--class", "laptop"],
        &mut timings,
    );
    let model_groups: Vec<(&str, u64)> = models["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{models}"))
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap_or("?"),
                g["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        model_groups,
        vec![("Latitude 5440", 1), ("ThinkPad T14", 2), ("", 1)],
        "{models}"
    );
    let batteries = timed_json(
        &collector,
        &["inventory", "query", "--battery-below", "80"],
        &mut timings,
    );
    let degraded = batteries["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("{batteries}"));
    assert_eq!(degraded.len(), 1, "{batteries}");
    assert_eq!(degraded[0]["hostname"], "it-laptop-1", "{batteries}");
    assert_eq!(degraded[0]["battery"], "BAT0", "{batteries}");
    assert_eq!(degraded[0]["health_percent"], 72.0, "{batteries}");
    // Which devices have openssl, per version (natural order); then one version.
    let openssl = timed_json(
        &collector,
        &["inventory", "query", "--package", "openssl"],
        &mut timings,
    );
    let versions: Vec<(&str, Vec<&str>)> = openssl["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{openssl}"))
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap_or("?"),
                g["devices"]
                    .as_array()
                    .map(|d| d.iter().filter_map(|d| d["hostname"].as_str()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            ("3.0.15-1 (amd64)", vec!["hr-laptop-1", "it-laptop-1"]),
            ("3.5.1-1 (amd64)", vec!["it-server-1"])
        ],
        "{openssl}"
    );
    let exact = timed_json(
        &collector,
        &["inventory", "query", "--package", "openssl=3.5.1-1"],
        &mut timings,
    );
    assert_eq!(exact["groups"].as_array().map(Vec::len), Some(1), "{exact}");
    assert_eq!(exact["groups"][0]["count"], 1, "{exact}");
    // A device's own inventory (issue 4) still answers under the same command.
    let own = collector.vaktctl(&["inventory", "it-laptop-1", "-o", "json"]);
    assert!(own.success(), "{own}");

    // --- summary ---
    let summary = timed_json(&collector, &["summary"], &mut timings);
    let row = |dept: &str, class: &str| -> Value {
        summary["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{summary}"))
            .iter()
            .find(|r| r["department"] == dept && r["class"] == class)
            .cloned()
            .unwrap_or_else(|| panic!("no {dept}/{class} row: {summary}"))
    };
    let counts = |r: &Value, keys: &[&str]| -> Vec<u64> {
        keys.iter()
            .map(|k| r[*k].as_u64().unwrap_or(u64::MAX))
            .collect()
    };
    let keys = [
        "devices",
        "online",
        "asleep",
        "off",
        "offline",
        "stale",
        "never_seen",
        "revoked",
        "low_disk",
        "degraded_battery",
        "outdated_os",
    ];
    assert_eq!(
        counts(&row("HR", "laptop"), &keys),
        vec![3, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        "{summary}"
    );
    assert_eq!(
        counts(&row("IT", "laptop"), &keys),
        vec![1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1],
        "{summary}"
    );
    assert_eq!(
        counts(&row("IT", "server"), &keys),
        vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "{summary}"
    );
    assert_eq!(
        summary["rows"].as_array().map(Vec::len),
        Some(3),
        "{summary}"
    );
    assert_eq!(
        counts(&summary["total"], &keys),
        vec![5, 3, 1, 0, 0, 0, 1, 0, 1, 1, 2],
        "{summary}"
    );
    assert_eq!(
        summary["newest_os_versions"]["Debian GNU/Linux"], "13",
        "{summary}"
    );
    assert_eq!(summary["alerts_available"], true, "{summary}");
    // A lower disk threshold catches the server's /srv at 85 %.
    let strict = timed_json(
        &collector,
        &["summary", "--disk-threshold", "80", "--department", "IT"],
        &mut timings,
    );
    assert_eq!(strict["total"]["low_disk"], 2, "{strict}");
    assert_eq!(strict["total"]["devices"], 2, "{strict}");

    // The table form renders too (what ops see).
    let table = collector.vaktctl(&["summary"]);
    assert!(table.success(), "{table}");
    assert!(table.stdout.starts_with("DEPARTMENT   CLASS"), "{table}");

    for (command, ms) in &timings {
        eprintln!("vaktctl {command}: {ms} ms (process start included)");
    }
}
