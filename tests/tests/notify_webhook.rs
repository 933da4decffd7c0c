//! A signed webhook receiver that is down while a notification is queued,
//! with a collector restart (SIGKILL) in between: once the receiver is back,
//! each notification arrives exactly once, in order, correctly signed.

use std::time::Duration;
use vakt_collector::alerts::notification::NotificationStatus;
use vakt_tests::monitoring::{
    DeliveryLog, WebhookReceiver, append_config, enqueue, metric, notification,
};
use vakt_tests::{Collector, free_port, now_ms, wait_until, write_private};

const SECRET: &str = "a-webhook-secret-only-this-test-knows";

#[test]
fn a_receiver_that_was_down_gets_each_notification_once_after_a_restart() {
    let mut collector = Collector::init();
    write_private(
        &collector.dir.join("webhook.secret"),
        &format!("{SECRET}\n"),
    );
    let port = free_port();
    append_config(
        &collector,
        &format!(
            "[notify]\nretry_max_backoff = \"1s\"\n\
             [[notify.webhook]]\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             secret_file = \"webhook.secret\"\n"
        ),
    );
    let started = now_ms() - 60_000;
    enqueue(
        &collector,
        &[
            notification("n-1", "srv-1", NotificationStatus::Firing, started),
            notification("n-2", "srv-1", NotificationStatus::Resolved, started),
        ],
    );
    collector.serve();

    // Nobody listens: attempts fail and the notifications stay queued.
    let failed = r#"receiver="hook""#;
    wait_until(
        Duration::from_secs(30),
        "failed delivery attempts",
        || match metric(
            &collector,
            "vakt_collector_notifications_failed_total",
            failed,
        ) {
            Some(n) if n >= 2.0 => Ok(()),
            other => Err(format!("failed_total = {other:?}")),
        },
    );
    assert_eq!(
        metric(&collector, "vakt_collector_notifications_queued", failed),
        Some(2.0)
    );

    // The collector dies hard and comes back while the receiver is still down.
    collector.kill9();
    collector.serve();
    std::thread::sleep(Duration::from_secs(2));

    let log = DeliveryLog::default();
    let receiver = WebhookReceiver::start(port, SECRET.as_bytes(), log.clone());
    wait_until(Duration::from_secs(30), "both notifications", || {
        let n = log.lock().expect("log").len();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} delivered"))
        }
    });
    // Give a duplicate every chance to show up, including across a restart.
    std::thread::sleep(Duration::from_secs(2));
    collector.restart();
    std::thread::sleep(Duration::from_secs(3));
    drop(receiver);

    let deliveries = log.lock().expect("log").clone();
    let ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d.idempotency_key.as_str())
        .collect();
    assert_eq!(ids, ["n-1", "n-2"], "{deliveries:#?}");
    for d in &deliveries {
        assert!(d.signature_ok, "bad signature: {d:?}");
        assert_eq!(d.body["id"], d.idempotency_key.as_str());
        assert_eq!(d.body["labels"]["alertname"], "DeviceOffline");
        assert_eq!(d.body["labels"]["device"], "srv-1");
        assert_eq!(d.body["annotations"]["summary"], "srv-1 is offline");
    }
    assert_eq!(deliveries[0].body["status"], "firing");
    assert!(deliveries[0].body["endsAt"].is_null());
    assert_eq!(deliveries[1].body["status"], "resolved");
    assert!(deliveries[1].body["endsAt"].is_string());
    assert_eq!(
        metric(&collector, "vakt_collector_notifications_queued", failed),
        Some(0.0)
    );
}

#[test]
fn a_collector_with_a_missing_webhook_secret_refuses_to_start() {
    let mut collector = Collector::init();
    append_config(
        &collector,
        "[[notify.webhook]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"nope.secret\"\n",
    );
    collector.spawn_serve();
    let status = collector
        .process()
        .wait_timeout(Duration::from_secs(30))
        .expect("the collector should exit");
    assert!(!status.success());
    let logs = collector.process().logs();
    assert!(logs.contains("nope.secret"), "{logs}");
}
