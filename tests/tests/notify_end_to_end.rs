//! Issue 5 end to end: a real Alertmanager, a server that stops reporting
//! (a short-interval absence rule), the alert read back from Alertmanager's
//! own API, kept active there by re-sends, and resolved there when the
//! server reports again.

use std::time::Duration;
use vakt_tests::alerts::{batch, device, sample, send};
use vakt_tests::monitoring::{ALERTMANAGER, Alertmanager, append_config, metric};
use vakt_tests::{Collector, require_program, wait_until};

/// This rule's alert for `device` (the built-in `server-offline` fires too).
fn ours(am: &Alertmanager, device: &str) -> Vec<serde_json::Value> {
    am.alerts_with("device", device)
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "server-gone")
        .collect()
}

const CPU: &str = "system.cpu.utilization";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_going_offline_shows_in_alertmanager_and_resolves_there() {
    if !require_program(ALERTMANAGER, "the end-to-end alerting test") {
        return;
    }
    let am = Alertmanager::start();
    let mut collector = Collector::init();
    std::fs::write(
        collector.dir.join("alerts.toml"),
        r#"
evaluation_interval = "200ms"
[[rule]]
name = "server-gone"
kind = "offline"
severity = "critical"
missed_intervals = 2
scope = { class = ["server"] }
"#,
    )
    .expect("write alerts.toml");
    collector.set_config("alert_rules", "\"alerts.toml\"");
    collector.set_config("report_interval", "\"1s\"");
    // Re-sends every 2 s hold each firing alert 8 s ahead in Alertmanager.
    append_config(
        &collector,
        &format!(
            "[notify]\nresend_interval = \"2s\"\nretry_max_backoff = \"1s\"\n\
             [[notify.alertmanager]]\nname = \"am\"\nurl = \"{}\"\n",
            am.url()
        ),
    );
    collector.serve();

    let server = device(&collector, "db-e2e", "server").await;
    send(
        &collector,
        &server,
        vec![batch(1, vec![sample(CPU, &[], 0.1, 0)])],
    )
    .await;

    // It stops reporting: two missed 1 s intervals later it is offline.
    let alert = wait_until(Duration::from_secs(40), "the alert in Alertmanager", || {
        ours(&am, &server.device_id)
            .into_iter()
            .next()
            .ok_or_else(|| format!("alerts: {:?}", am.alerts()))
    });
    assert_eq!(alert["labels"]["alertname"], "server-gone", "{alert}");
    assert_eq!(alert["labels"]["hostname"], "db-e2e");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["class"], "server");
    assert_eq!(alert["labels"]["department"], "IT");
    assert_eq!(alert["status"]["state"], "active");

    // Longer than one endsAt hold (8 s): only the re-sends keep it active.
    std::thread::sleep(Duration::from_secs(10));
    let still = ours(&am, &server.device_id);
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(still[0]["status"]["state"], "active");
    assert!(
        metric(
            &collector,
            "vakt_collector_notifications_resent_total",
            r#"receiver="am""#
        )
        .is_some_and(|n| n >= 2.0)
    );

    // It reports again: resolved in Alertmanager too.
    send(
        &collector,
        &server,
        vec![batch(2, vec![sample(CPU, &[], 0.1, 0)])],
    )
    .await;
    wait_until(Duration::from_secs(30), "the alert resolved", || {
        let active = ours(&am, &server.device_id);
        if active.is_empty() {
            Ok(())
        } else {
            Err(format!("still listed: {active:?}"))
        }
    });
}
