//! A notification reaches a real Alertmanager through the outbox and is read
//! back from Alertmanager's own API, then resolved there.

use std::time::Duration;
use vakt_collector::alerts::notification::NotificationStatus;
use vakt_tests::monitoring::{
    ALERTMANAGER, Alertmanager, append_config, enqueue, metric, notification,
};
use vakt_tests::{Collector, now_ms, require_program, wait_until};

#[test]
fn a_firing_notification_shows_in_alertmanager_and_resolves_there() {
    if !require_program(ALERTMANAGER, "the Alertmanager notification test") {
        return;
    }
    let am = Alertmanager::start();
    let mut collector = Collector::init();
    // A long resend interval: endsAt is 4 of them ahead, so only the resolve
    // below can end the alert within this test.
    append_config(
        &collector,
        &format!(
            "[notify]\nresend_interval = \"1m\"\nretry_max_backoff = \"1s\"\n\
             [[notify.alertmanager]]\nname = \"am\"\nurl = \"{}\"\n",
            am.url()
        ),
    );
    let started = now_ms() - 90_000;
    enqueue(
        &collector,
        &[notification(
            "n-1",
            "srv-am",
            NotificationStatus::Firing,
            started,
        )],
    );
    collector.serve();

    let alert = wait_until(Duration::from_secs(30), "the alert in Alertmanager", || {
        am.alerts_with("device", "srv-am")
            .into_iter()
            .next()
            .ok_or_else(|| format!("alerts: {:?}", am.alerts()))
    });
    for (name, value) in [
        ("alertname", "DeviceOffline"),
        ("hostname", "srv-am"),
        ("department", "it"),
        ("class", "server"),
        ("severity", "critical"),
    ] {
        assert_eq!(alert["labels"][name], value, "{alert}");
    }
    assert_eq!(alert["annotations"]["summary"], "srv-am is offline");
    assert_eq!(
        alert["annotations"]["description"],
        "missed 3 report intervals"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    let starts_at =
        humantime::parse_rfc3339(alert["startsAt"].as_str().expect("startsAt")).expect("RFC 3339");
    let starts_ms = starts_at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    assert_eq!(starts_ms, started, "{alert}");
    assert_eq!(
        metric(
            &collector,
            "vakt_collector_notifications_sent_total",
            r#"receiver="am""#
        ),
        Some(1.0)
    );

    // The engine writes the resolve while running; without it, the test
    // writes it into the outbox of the stopped collector.
    collector.kill9();
    enqueue(
        &collector,
        &[notification(
            "n-2",
            "srv-am",
            NotificationStatus::Resolved,
            started,
        )],
    );
    collector.serve();
    wait_until(Duration::from_secs(30), "the alert resolved", || {
        let active = am.alerts_with("device", "srv-am");
        if active.is_empty() {
            Ok(())
        } else {
            Err(format!("still listed: {active:?}"))
        }
    });
}
