//! Rule kinds driven by real reports through a real collector: threshold
//! with `for` and hysteresis, absence per class, inventory change and the
//! disk-full forecast; and `vaktctl rules check|reload`.

use std::time::Duration;
use vakt_proto::v1;
use vakt_tests::alerts::{
    alert, batch, device, notified, sample, send, start_with_rules, wait_state, with_event,
    with_inventory,
};
use vakt_tests::now_ms;

const WAIT: Duration = Duration::from_secs(20);

const CPU: &str = "system.cpu.utilization";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_waits_for_its_for_and_clears_only_below_the_hysteresis() {
    let collector = start_with_rules(
        r#"
evaluation_interval = "200ms"
[[rule]]
name = "cpu"
kind = "threshold"
severity = "critical"
metric = "system.cpu.utilization"
above = 0.9
clear = 0.85
for = "2s"
"#,
    );
    let laptop = device(&collector, "busy", "laptop").await;
    let id = laptop.device_id.as_str();

    // A short spike: pending, then gone, never notified.
    send(
        &collector,
        &laptop,
        vec![batch(1, vec![sample(CPU, &[], 0.95, 0)])],
    )
    .await;
    let pending = wait_state(&collector, "cpu", id, "pending", WAIT);
    assert!(notified(&pending).is_empty(), "{pending}");
    send(
        &collector,
        &laptop,
        vec![batch(2, vec![sample(CPU, &[], 0.5, 0)])],
    )
    .await;
    vakt_tests::wait_until(WAIT, "the spike to be forgotten", || {
        match alert(&collector, "cpu", id) {
            None => Ok(()),
            Some(a) => Err(format!("still {}", a["state"])),
        }
    });

    // Sustained: pending for 2 s, then firing (the tick promotes it).
    send(
        &collector,
        &laptop,
        vec![batch(3, vec![sample(CPU, &[], 0.95, 0)])],
    )
    .await;
    let firing = wait_state(&collector, "cpu", id, "firing", WAIT);
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["labels"]["alertname"], "cpu");
    assert_eq!(firing["labels"]["hostname"], "busy");
    assert_eq!(firing["labels"]["class"], "laptop");
    assert_eq!(notified(&firing), ["firing"]);
    let (_, metrics) = collector.http_get("/metrics").expect("/metrics");
    assert!(
        metrics.contains("vakt_collector_alerts_firing{severity=\"critical\"} 1"),
        "{metrics}"
    );

    // Between clear and trigger: still firing (hysteresis).
    send(
        &collector,
        &laptop,
        vec![batch(4, vec![sample(CPU, &[], 0.87, 0)])],
    )
    .await;
    std::thread::sleep(Duration::from_millis(600));
    let still = alert(&collector, "cpu", id).expect("alert");
    assert_eq!(still["state"], "firing", "{still}");

    // Below clear: resolved, and receivers hear it.
    send(
        &collector,
        &laptop,
        vec![batch(5, vec![sample(CPU, &[], 0.8, 0)])],
    )
    .await;
    let resolved = wait_state(&collector, "cpu", id, "resolved", WAIT);
    assert_eq!(notified(&resolved), ["firing", "resolved"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absence_a_laptop_that_shut_down_is_fine_a_server_that_vanished_is_not() {
    let collector = start_with_rules(
        r#"
evaluation_interval = "200ms"
[[rule]]
name = "offline"
kind = "offline"
severity = "critical"
missed_intervals = 2
scope = { class = ["server", "laptop"] }
"#,
    );
    let server = device(&collector, "db-1", "server").await;
    let laptop = device(&collector, "lap-1", "laptop").await;
    send(
        &collector,
        &server,
        vec![batch(1, vec![sample(CPU, &[], 0.1, 0)])],
    )
    .await;
    send(
        &collector,
        &laptop,
        vec![with_event(
            batch(1, vec![sample(CPU, &[], 0.1, 0)]),
            v1::EventKind::Shutdown,
        )],
    )
    .await;

    // Report interval 1 s, two missed: the server is offline within seconds.
    let offline = wait_state(&collector, "offline", &server.device_id, "firing", WAIT);
    assert_eq!(notified(&offline), ["firing"]);
    assert_eq!(offline["labels"]["class"], "server");
    // The laptop said goodbye: nothing, even well past the window.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        alert(&collector, "offline", &laptop.device_id).is_none(),
        "a laptop that shut down is not offline"
    );

    // The server comes back: resolved.
    send(
        &collector,
        &server,
        vec![batch(2, vec![sample(CPU, &[], 0.1, 0)])],
    )
    .await;
    let back = wait_state(&collector, "offline", &server.device_id, "resolved", WAIT);
    assert_eq!(notified(&back), ["firing", "resolved"]);
}

fn inventory(memory_gib: u64) -> v1::Inventory {
    v1::Inventory {
        hostname: "ram-1".into(),
        os_name: "Debian GNU/Linux".into(),
        os_version: "13".into(),
        memory_total_bytes: memory_gib << 30,
        agent_version: "0.1.0".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_memory_raises_the_default_hardware_changed_rule() {
    // An empty rules file: the built-in defaults apply as they are.
    let collector = start_with_rules("");
    let laptop = device(&collector, "ram-1", "laptop").await;
    send(
        &collector,
        &laptop,
        vec![with_inventory(batch(1, vec![]), inventory(16))],
    )
    .await;
    send(
        &collector,
        &laptop,
        vec![with_inventory(batch(2, vec![]), inventory(8))],
    )
    .await;
    let changed = wait_state(
        &collector,
        "hardware-changed",
        &laptop.device_id,
        "firing",
        WAIT,
    );
    assert_eq!(changed["labels"]["change"], "memory_decreased", "{changed}");
    let description = changed["description"].as_str().unwrap_or_default();
    assert!(description.contains("16.0 GiB to 8.0 GiB"), "{changed}");
    assert_eq!(notified(&changed), ["firing"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filesystem_filling_up_is_forecast_before_it_is_full() {
    let collector = start_with_rules(
        r#"
evaluation_interval = "200ms"
[[rule]]
name = "disk-full-soon"
kind = "filesystem_full"
within = "1h"
window = "10m"
min_points = 5
every = "200ms"
"#,
    );
    let server = device(&collector, "files-1", "laptop").await;
    let now = now_ms();
    // "/" grows 0.1 % a second from 50 % (full in about 8 minutes); "/home" is flat.
    let mut samples = Vec::new();
    for i in 0..30 {
        let at = now - (30 - i) * 10_000;
        samples.push(sample(
            "system.filesystem.utilization",
            &[("mountpoint", "/")],
            0.5 + 0.01 * i as f64,
            at,
        ));
        samples.push(sample(
            "system.filesystem.utilization",
            &[("mountpoint", "/home")],
            0.6,
            at,
        ));
    }
    send(&collector, &server, vec![batch(1, samples)]).await;
    let full = wait_state(
        &collector,
        "disk-full-soon",
        &server.device_id,
        "firing",
        WAIT,
    );
    assert_eq!(full["labels"]["mountpoint"], "/", "{full}");
    let all = vakt_tests::alerts::alerts(&collector, &["--rule", "disk-full-soon"]);
    assert_eq!(
        all.len(),
        1,
        "the flat filesystem is not forecast full: {all:?}"
    );
}

#[test]
fn rules_check_names_lines_and_reload_refuses_a_broken_file() {
    let collector = start_with_rules("evaluation_interval = \"200ms\"\n");
    let bad = collector.tmp().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"m\"\nabove = 0.9\nfor = \"soon\"\n",
    )
    .expect("write");
    let out = collector.vaktctl(&["rules", "check", bad.to_str().expect("utf-8")]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("bad.toml:6:7: for"), "{out}");
    let good = collector.dir.join("alerts.toml");
    let ok = collector.vaktctl(&["rules", "check", good.to_str().expect("utf-8")]);
    assert_eq!(ok.code, Some(0), "{ok}");

    // Reload with a new rule; a broken file is refused and the old rules stay.
    std::fs::write(
        &good,
        "evaluation_interval = \"200ms\"\n[[rule]]\nname = \"extra\"\nkind = \"stale\"\nafter = \"1d\"\n",
    )
    .expect("write");
    let reloaded = collector.vaktctl_json(&["rules", "reload", "-o", "json"]);
    let names: Vec<&str> = reloaded["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        names.contains(&"extra") && names.contains(&"server-offline"),
        "{reloaded}"
    );
    std::fs::write(&good, "[[rule]]\nname = 1\n").expect("write");
    let refused = collector.vaktctl(&["rules", "reload"]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stderr.contains("old ones stay"), "{refused}");
}
