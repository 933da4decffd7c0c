//! Harness for the alert tests: a collector with a rules file written by the
//! test (second-scale durations), devices of a given class, report batches
//! with chosen samples, events and inventories, and the alert listing.

use crate::{Collector, Credentials, enroll_direct, now_ms, report, test_hardware, wait_until};
use serde_json::Value;
use std::time::Duration;
use vakt_collector::alerts::notification::Notification;
use vakt_proto::v1;

/// `init`, the rules file as `alerts.toml` next to `collector.toml`, a 1 s
/// report interval, then `serve`.
pub fn start_with_rules(rules: &str) -> Collector {
    let mut collector = Collector::init();
    std::fs::write(collector.dir.join("alerts.toml"), rules).expect("write alerts.toml");
    collector.set_config("alert_rules", "\"alerts.toml\"");
    collector.set_config("report_interval", "\"1s\"");
    collector.serve();
    collector
}

/// A device of `class` (laptop, server, ...), registered unbound and enrolled.
pub async fn device(collector: &Collector, hostname: &str, class: &str) -> Credentials {
    let registration = collector.register(&["--unbound", "--class", class, "--department", "IT"]);
    enroll_direct(
        collector.grpc_port,
        &collector.ca_pem(),
        &registration.token,
        test_hardware(hostname),
    )
    .await
    .unwrap_or_else(|status| panic!("enrollment failed: {status:?}"))
}

/// One sample: metric, attributes, value, timestamp (0 = the batch's time).
pub fn sample(metric: &str, attrs: &[(&str, &str)], value: f64, at_ms: i64) -> v1::Sample {
    v1::Sample {
        metric: metric.to_owned(),
        attributes: attrs
            .iter()
            .map(|(k, v)| v1::Attribute {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        value,
        timestamp_unix_ms: at_ms,
    }
}

pub fn batch(sequence: u64, samples: Vec<v1::Sample>) -> v1::ReportBatch {
    v1::ReportBatch {
        sequence,
        collected_at_unix_ms: now_ms(),
        samples,
        ..Default::default()
    }
}

pub fn with_inventory(mut batch: v1::ReportBatch, inventory: v1::Inventory) -> v1::ReportBatch {
    batch.inventory_hash = vakt_proto::inventory_hash(&inventory);
    batch.inventory = Some(inventory);
    batch
}

pub fn with_event(mut batch: v1::ReportBatch, kind: v1::EventKind) -> v1::ReportBatch {
    batch.events.push(v1::Event {
        kind: kind as i32,
        at_unix_ms: now_ms(),
        detail: String::new(),
    });
    batch
}

/// Sends the batches on one stream and waits for the last one's ack.
pub async fn send(collector: &Collector, creds: &Credentials, batches: Vec<v1::ReportBatch>) {
    let last = batches.iter().map(|b| b.sequence).max().unwrap_or(0);
    let channel = collector
        .device_channel(creds)
        .await
        .expect("device channel");
    report(channel, batches, last)
        .await
        .unwrap_or_else(|status| panic!("report failed: {status:?}"));
}

/// `vaktctl alerts ARGS… -o json`.
pub fn alerts(collector: &Collector, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["alerts"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    match collector.vaktctl_json(&all) {
        Value::Array(a) => a,
        other => panic!("vaktctl alerts -o json printed no array: {other}"),
    }
}

/// The alert of `rule` on `device`, if listed.
pub fn alert(collector: &Collector, rule: &str, device: &str) -> Option<Value> {
    alerts(collector, &["--rule", rule, "--device", device])
        .into_iter()
        .next()
}

/// Waits until the alert of `rule` on `device` is in `state`.
pub fn wait_state(
    collector: &Collector,
    rule: &str,
    device: &str,
    state: &str,
    timeout: Duration,
) -> Value {
    wait_until(
        timeout,
        &format!("alert {rule} on {device} {state}"),
        || match alert(collector, rule, device) {
            Some(a) if a["state"] == state => Ok(a),
            Some(a) => Err(format!("state {}", a["state"])),
            None => Err("no such alert".into()),
        },
    )
}

/// The reasons of the notifications written for an alert, oldest first.
pub fn notified(alert: &Value) -> Vec<String> {
    alert["notifications"]
        .as_array()
        .map(|n| {
            n.iter()
                .map(|x| x["reason"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every notification in the outbox (the collector must be stopped).
pub fn outbox(collector: &Collector) -> Vec<Notification> {
    vakt_collector::alerts::store::read_outbox(&collector.dir.join("data"))
        .expect("read the outbox")
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}
