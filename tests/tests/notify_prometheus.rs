//! A real Prometheus scrapes the collector's /metrics and the fleet gauge
//! (devices by status, department and class) is read back via its query API.

use std::time::Duration;
use vakt_tests::monitoring::{PROMETHEUS, Prometheus};
use vakt_tests::{Collector, require_program, wait_until};

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
