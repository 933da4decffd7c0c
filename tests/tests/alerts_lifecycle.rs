//! The alert lifecycle through a real collector: acknowledgement with
//! expiry (re-notified), silences, flap damping, and state, acks and
//! silences surviving a restart (and a rules reload) with the outbox intact.

use nix::sys::signal::Signal;
use std::time::Duration;
use vakt_collector::alerts::notification::NotificationStatus;
use vakt_tests::alerts::{
    alert, batch, device, notified, outbox, sample, send, start_with_rules, wait_state,
};
use vakt_tests::wait_until;

const WAIT: Duration = Duration::from_secs(20);
const CPU: &str = "system.cpu.utilization";

/// Fires at once above 90 %, clears below 85 %; flapping after 3 changes in 30 s.
const RULES: &str = r#"
evaluation_interval = "200ms"
[flap]
window = "30s"
max_changes = 3

[[rule]]
name = "cpu"
kind = "threshold"
severity = "warning"
metric = "system.cpu.utilization"
above = 0.9
clear = 0.85
"#;

fn cpu(sequence: u64, value: f64) -> vakt_proto::v1::ReportBatch {
    batch(sequence, vec![sample(CPU, &[], value, 0)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_that_expires_while_firing_notifies_again() {
    let collector = start_with_rules(RULES);
    let laptop = device(&collector, "hot-1", "laptop").await;
    let id = laptop.device_id.as_str();
    send(&collector, &laptop, vec![cpu(1, 0.97)]).await;
    let firing = wait_state(&collector, "cpu", id, "firing", WAIT);
    let alert_id = firing["id"].as_str().expect("id").to_owned();

    let acked = collector.vaktctl_json(&[
        "alerts",
        "ack",
        &alert_id[..6],
        "--comment",
        "looking at it",
        "--until",
        "2s",
        "-o",
        "json",
    ]);
    assert_eq!(acked[0]["state"], "acknowledged", "{acked}");
    assert_eq!(acked[0]["ack"]["comment"], "looking at it");
    assert_eq!(
        acked[0]["ack"]["author"], "admin",
        "author from the admin certificate"
    );
    let listed = vakt_tests::alerts::alerts(&collector, &["--state", "acknowledged"]);
    assert_eq!(listed.len(), 1);

    // Still firing when the acknowledgement ends: a new notification.
    let renotified = wait_until(WAIT, "a re-notification", || {
        let a = alert(&collector, "cpu", id).expect("alert");
        match notified(&a).as_slice() {
            [_, second] if second == "acknowledgement expired" => Ok(a),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(renotified["state"], "firing");
    assert!(renotified["ack"].is_null(), "{renotified}");

    // An unknown id is one clear error, exit 1.
    let refused = collector.vaktctl(&["alerts", "ack", "nope", "--comment", "x"]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stderr.contains("no alert nope"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_alert_writes_no_notification_until_the_silence_ends() {
    let collector = start_with_rules(RULES);
    let laptop = device(&collector, "quiet-1", "laptop").await;
    let id = laptop.device_id.as_str();
    let matcher = format!("device={id}");
    let silence = collector.vaktctl_json(&[
        "silence",
        "add",
        "--match",
        &matcher,
        "--match",
        "alertname=~cp.*",
        "--duration",
        "1h",
        "--comment",
        "maintenance",
        "-o",
        "json",
    ]);
    let silence_id = silence[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(silence[0]["active"], true);

    send(&collector, &laptop, vec![cpu(1, 0.99)]).await;
    let firing = wait_state(&collector, "cpu", id, "firing", WAIT);
    assert_eq!(firing["silenced"], true);
    std::thread::sleep(Duration::from_millis(600));
    let still = alert(&collector, "cpu", id).expect("alert");
    assert!(notified(&still).is_empty(), "silenced: {still}");

    let listed = collector.vaktctl_json(&["silence", "list", "-o", "json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    collector
        .vaktctl(&["silence", "expire", &silence_id])
        .assert_success();
    let told = wait_until(WAIT, "the firing notification after the silence", || {
        let a = alert(&collector, "cpu", id).expect("alert");
        if notified(&a) == ["firing"] {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    });
    assert_eq!(told["silenced"], false);
    let listed = collector.vaktctl_json(&["silence", "list", "-o", "json"]);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(0),
        "expired silences are not listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_alert_notifies_once_then_stays_quiet() {
    let collector = start_with_rules(RULES);
    let laptop = device(&collector, "flappy", "laptop").await;
    let id = laptop.device_id.as_str();
    // `vaktctl alerts watch` streams the changes as they happen.
    let mut watch_cmd = std::process::Command::new(vakt_tests::bin("vaktctl"));
    watch_cmd
        .arg("--config")
        .arg(collector.vaktctl_config())
        .args(["alerts", "watch", "-o", "json"]);
    let watch = vakt_tests::ChildGuard::spawn(watch_cmd, "vaktctl-watch", collector.tmp());
    std::thread::sleep(Duration::from_secs(2));
    // Ten reports alternating above and below the hysteresis band.
    let batches = (1..=10)
        .map(|seq| cpu(seq, if seq % 2 == 1 { 0.99 } else { 0.5 }))
        .collect();
    send(&collector, &laptop, batches).await;
    let flapping = wait_until(WAIT, "flapping", || {
        let a = alert(&collector, "cpu", id).ok_or("no alert")?;
        if a["flapping"] == true {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    });
    std::thread::sleep(Duration::from_millis(600));
    let after = alert(&collector, "cpu", id).expect("alert");
    assert_eq!(
        notified(&after),
        ["firing", "resolved", "firing", "flapping"],
        "three real changes, then one flapping notice, then quiet: {flapping}"
    );
    let lines = wait_until(WAIT, "watch output", || {
        let out = watch.stdout();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.iter().any(|l| l["flapping"] == true) {
            Ok(lines)
        } else {
            Err(format!("{out}\n{}", watch.stderr()))
        }
    });
    assert!(
        lines
            .iter()
            .all(|l| l["rule"] == "cpu" && l["device_id"] == id)
    );
    assert!(lines.iter().any(|l| l["state"] == "resolved"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_acks_and_silences_survive_a_restart_and_a_reload() {
    let mut collector = start_with_rules(RULES);
    let laptop = device(&collector, "keep-1", "laptop").await;
    let other = device(&collector, "keep-2", "laptop").await;
    let id = laptop.device_id.as_str();
    send(&collector, &laptop, vec![cpu(1, 0.99)]).await;
    let firing = wait_state(&collector, "cpu", id, "firing", WAIT);
    let alert_id = firing["id"].as_str().expect("id").to_owned();
    collector
        .vaktctl(&["alerts", "ack", &alert_id, "--comment", "mine"])
        .assert_success();
    let matcher = format!("device={}", other.device_id);
    collector
        .vaktctl(&[
            "silence",
            "add",
            "--match",
            &matcher,
            "--duration",
            "1h",
            "--comment",
            "m",
        ])
        .assert_success();

    collector.restart(); // SIGKILL, then serve again on the same data
    let after = alert(&collector, "cpu", id).expect("alert after restart");
    assert_eq!(after["state"], "acknowledged", "{after}");
    assert_eq!(after["ack"]["comment"], "mine");
    assert_eq!(notified(&after), ["firing"], "no duplicate after restart");
    let silences = collector.vaktctl_json(&["silence", "list", "-o", "json"]);
    assert_eq!(silences[0]["matchers"][0], matcher, "{silences}");

    // SIGHUP reloads the rules without touching alert state.
    collector.process().signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(600));
    let reloaded = alert(&collector, "cpu", id).expect("alert after reload");
    assert_eq!(reloaded["state"], "acknowledged");
    assert_eq!(notified(&reloaded), ["firing"]);

    // The outbox holds that one notification, exactly once.
    collector.process().signal(Signal::SIGTERM);
    let mut process = collector.take_process().expect("running");
    assert!(
        process.wait_timeout(WAIT).is_some(),
        "collector stops on SIGTERM"
    );
    let notes = outbox(&collector);
    let mine: Vec<_> = notes.iter().filter(|n| n.fingerprint == alert_id).collect();
    assert_eq!(mine.len(), 1, "{notes:?}");
    assert_eq!(mine[0].status, NotificationStatus::Firing);
    assert_eq!(mine[0].labels["alertname"], "cpu");
    assert_eq!(mine[0].labels["hostname"], "keep-1");
    assert_eq!(
        mine[0].id,
        after["notifications"][0]["id"].as_str().expect("id")
    );
}
