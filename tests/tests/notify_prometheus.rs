//! A real Prometheus scrapes the collector's /metrics and the fleet gauge
//! (devices by status, department and class) is read back via its query API.

use std::time::Duration;
use vakt_tests::monitoring::{PROMETHEUS, Prometheus, append_config};
use vakt_tests::{
    Collector, block_on, cpu_batch, now_ms, report, require_program, wait_until, write_private,
};

#[test]
fn prometheus_reads_the_fleet_gauge_from_the_collector() {
    if !require_program(PROMETHEUS, "the Prometheus scrape test") {
        return;
    }
    let collector = Collector::start();
    for _ in 0..2 {
        collector.register(&["--unbound", "--department", "it", "--class", "server"]);
    }
    collector.register(&["--unbound", "--department", "hr", "--class", "laptop"]);
    let prometheus = Prometheus::start(collector.http_port);

    let value = |promql: &str| -> Result<String, String> {
        let result = prometheus.query(promql).map_err(|e| format!("{e:#}"))?;
        result
            .first()
            .and_then(|r| r["value"][1].as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{promql}: no sample yet ({result:?})"))
    };
    let it_servers = wait_until(
        Duration::from_secs(60),
        "the fleet gauge in Prometheus",
        || {
            value(
                r#"vakt_collector_fleet_devices{department="it",class="server",status="never-seen"}"#,
            )
        },
    );
    assert_eq!(it_servers, "2", "{}", prometheus.logs());
    assert_eq!(
        value(r#"sum(vakt_collector_fleet_devices{department="hr"})"#).as_deref(),
        Ok("1")
    );
    assert_eq!(value(r#"up{job="vakt-collector"}"#).as_deref(), Ok("1"));
    // The other families the dashboard uses are there too.
    for name in [
        "vakt_collector_storage_bytes",
        "vakt_collector_connected_agents",
        "vakt_collector_report_ack_seconds_count",
    ] {
        value(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn monitoring_file(name: &str) -> String {
    let path = vakt_tests::workspace_root()
        .join("deploy/monitoring")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `vakt_collector_*` name a file uses, without sample suffixes.
fn metric_families(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("vakt_collector_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let mut name = &tail[..end];
        for suffix in ["_total", "_bucket", "_count", "_sum"] {
            name = name.strip_suffix(suffix).unwrap_or(name);
        }
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_rules_use_metrics_the_collector_exports() {
    let dashboard = monitoring_file("grafana-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() > 10));
    let used = metric_families(&(dashboard + &monitoring_file("vakt-rules.yml")));
    assert!(used.len() >= 10, "{used:?}");
    // Label families show up once they have a sample: give each one (a
    // receiver, an enrollment, a report, a device).
    let mut collector = Collector::init();
    write_private(
        &collector.dir.join("hook.secret"),
        "0123456789abcdef0123456789abcdef",
    );
    append_config(
        &collector,
        "[[notify.alertmanager]]\nurl = \"http://127.0.0.1:9\"\n\
         [[notify.webhook]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"hook.secret\"\n",
    );
    collector.serve();
    block_on(async {
        let creds = collector.enroll_test_device("dash-1").await;
        let channel = collector.device_channel(&creds).await.expect("connect");
        report(channel, vec![cpu_batch(1, now_ms(), 0.5)], 1)
            .await
            .expect("report");
    });
    let (status, exported) = collector.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    for name in used {
        assert!(
            exported
                .lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} is used in deploy/monitoring but not exported:\n{exported}"
        );
    }
}

#[test]
fn the_prometheus_and_alertmanager_configs_are_valid() {
    let dir = vakt_tests::workspace_root().join("deploy/monitoring");
    for (program, args) in [
        ("promtool", ["check", "config", "prometheus.yml"]),
        ("amtool", ["check-config", "alertmanager.yml", ""]),
    ] {
        if !require_program(program, "checking deploy/monitoring") {
            continue;
        }
        let mut cmd = std::process::Command::new(program);
        cmd.current_dir(&dir)
            .args(args.iter().filter(|a| !a.is_empty()));
        let out = vakt_tests::run_command(cmd, Duration::from_secs(30));
        assert!(out.success(), "{program}: {out}");
    }
}
