//! The device certificate's life: short-lived, renewed by the agent over mTLS
//! without losing a report, its key never leaving the device, and a way back
//! (`vaktctl device reenroll`) for a device that lost its state.

use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};
use vakt_proto::v1;
use vakt_proto::v1::admin_client::AdminClient;
use vakt_tests::identity::{
    agent_status, audit, files_containing, flags_of, list_files, private_key_needles, token_parts,
};
use vakt_tests::{Agent, Collector, block_on, str_field, wait_for_device};

/// The shortest certificate lifetime the collector accepts.
const LIFETIME: &str = "\"60s\"";

fn short_lived_collector() -> Collector {
    Collector::start_with(&[
        ("report_interval", "\"1s\""),
        ("device_cert_lifetime", LIFETIME),
    ])
}

#[test]
fn the_device_private_key_and_token_secret_never_reach_the_collector() {
    let collector = short_lived_collector();
    let registration = collector.register_unbound();
    let device_id = registration.device_id.clone();
    let mut agent = Agent::enroll(&collector, &registration.token, "agent");
    let enrolled_key = std::fs::read_to_string(agent.state_dir.join("key.pem")).expect("key.pem");
    let first = collector.device(&device_id);
    let first_not_after = first["certificate_not_after"].clone();
    assert!(first_not_after.is_string(), "{first}");

    // Reports, then a renewal (at 70–90 % of 60 s), then more reports.
    agent.run();
    let renewed = wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(75),
        "a certificate renewal",
        |d| {
            if d["certificate_not_after"] == first_not_after {
                Err("not renewed yet".into())
            } else {
                Ok(())
            }
        },
    );
    let seq = renewed["last_sequence"].as_u64().unwrap_or(0);
    wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(15),
        "reports after the renewal",
        |d| match d["last_sequence"].as_u64() {
            Some(n) if n >= seq + 2 => Ok(()),
            _ => Err("no new reports".into()),
        },
    );
    agent.assert_running();
    let current_key = std::fs::read_to_string(agent.state_dir.join("key.pem")).expect("key.pem");
    agent.stop();

    // Everything the collector keeps: sled files, certificates, configs, logs.
    let files = list_files(&collector.dir);
    let positive = files_containing(&collector.dir, &[device_id.as_bytes()]);
    assert!(
        !positive.is_empty(),
        "the scan must see the store (the device id is in it); files: {files:?}"
    );
    let (_, secret) = token_parts(&registration.token);
    let mut needles = private_key_needles(&enrolled_key);
    needles.extend(private_key_needles(&current_key));
    let key_leaks = files_containing(
        &collector.dir,
        &needles.iter().map(Vec::as_slice).collect::<Vec<_>>(),
    );
    assert!(
        key_leaks.is_empty(),
        "the collector's data dir holds the device's private key in {key_leaks:?}"
    );
    let token_leaks = files_containing(
        &collector.dir,
        &[secret.as_bytes(), registration.token.as_bytes()],
    );
    assert!(
        token_leaks.is_empty(),
        "the collector's data dir holds the token's secret (not just its hash) in {token_leaks:?}"
    );
}

/// Points of the `system.cpu.utilization` series without attributes (the
/// whole-machine utilization, one per batch).
fn machine_cpu_points(collector: &Collector, device_id: &str) -> Vec<i64> {
    let json = collector.vaktctl_json(&[
        "metrics",
        device_id,
        "system.cpu.utilization",
        "--since",
        "1h",
        "-o",
        "json",
    ]);
    let series = json["series"].as_array().expect("series array");
    let mut points: Vec<i64> = series
        .iter()
        .filter(|s| match &s["attributes"] {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        })
        .flat_map(|s| s["points"].as_array().expect("points").clone())
        .map(|p| p["timestamp_unix_ms"].as_i64().expect("timestamp"))
        .collect();
    points.sort_unstable();
    points
}

/// `certificate_not_after` of a device in ms, from `Admin.GetDevice`.
fn certificate_not_after_ms(collector: &Collector, device_id: &str) -> i64 {
    block_on(async {
        let channel = collector.admin_channel().await.expect("admin channel");
        AdminClient::new(channel)
            .get_device(v1::GetDeviceRequest {
                device: device_id.to_owned(),
            })
            .await
            .expect("GetDevice")
            .into_inner()
            .certificate_not_after_unix_ms
    })
}

#[test]
fn with_a_60_second_certificate_the_agent_renews_repeatedly_and_loses_no_report() {
    const RUN_FOR: Duration = Duration::from_secs(170);
    const LIFETIME_MS: i64 = 60_000;
    let mut collector = short_lived_collector();
    let registration = collector.register_unbound();
    let device_id = registration.device_id.clone();
    let mut agent = Agent::enroll(&collector, &registration.token, "agent");
    let mut not_afters = vec![certificate_not_after_ms(&collector, &device_id)];
    assert!(not_afters[0] > 0, "enrolled with a certificate");
    agent.run();

    let started = Instant::now();
    while started.elapsed() < RUN_FOR {
        std::thread::sleep(Duration::from_secs(1));
        agent.assert_running();
        let not_after = certificate_not_after_ms(&collector, &device_id);
        if not_after != *not_afters.last().expect("one") {
            eprintln!(
                "{:>5.1}s: certificate renewed, not_after {not_after}",
                started.elapsed().as_secs_f64()
            );
            not_afters.push(not_after);
        }
    }
    let renewals = not_afters.len() - 1;
    assert!(
        renewals >= 2,
        "with a 60 s certificate the agent should have renewed at least twice in {:?}; \
         certificate_not_after (ms) went {not_afters:?}",
        started.elapsed()
    );

    // Stop gracefully: the agent delivers its last report and waits for the ack.
    agent.process().signal(Signal::SIGTERM);
    let status = agent.process().wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the agent exits cleanly on SIGTERM: {status:?}\n{}",
        agent.process().logs()
    );
    let agent_logs = agent.process().logs();
    let state = agent_status(&agent.state_dir).unwrap_or_else(|e| panic!("{e}"));
    let device = collector.device(&device_id);
    let last_sequence = device["last_sequence"].as_u64().expect("last_sequence");
    assert_eq!(
        state["acked_sequence"], last_sequence,
        "the agent's acknowledged sequence equals what the collector stored; agent {state}, device {device}"
    );
    assert_eq!(
        state["last_sequence"], last_sequence,
        "every report the agent made was delivered; agent {state}, device {device}"
    );
    assert_eq!(
        state["spool_reports"], 0,
        "nothing left in the spool: {state}"
    );
    assert!(
        flags_of(&device, "clone-suspected").is_empty(),
        "renewals and reconnects are not clones: {device}"
    );

    // One machine-wide CPU point per report, no holes in time.
    let points = machine_cpu_points(&collector, &device_id);
    let count = points.len() as u64;
    assert!(
        count <= last_sequence && count + 2 >= last_sequence,
        "{count} system.cpu.utilization points for {last_sequence} reports"
    );
    let largest_gap = points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        largest_gap <= 5_000,
        "a {largest_gap} ms hole in 1 s reporting across {renewals} renewals"
    );

    // Nothing was refused along the way.
    let collector_logs = collector.process().logs();
    let refusals: Vec<&str> = collector_logs
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("permissiondenied")
                || l.contains("permission_denied")
                || l.contains("unauthenticated")
        })
        .filter(|l| !l.contains("action=enroll"))
        .collect();
    assert!(
        refusals.is_empty(),
        "the collector refused the renewing device: {refusals:#?}"
    );
    let renewed_in_log = collector_logs.matches("certificate renewed").count();
    assert!(
        renewed_in_log >= renewals,
        "the collector logged {renewed_in_log} renewals, the device shows {renewals}"
    );
    for bad in ["renewal failed", "PermissionDenied", "Unauthenticated"] {
        assert!(
            !agent_logs.contains(bad),
            "the agent log mentions {bad:?}:\n{agent_logs}"
        );
    }

    // Each certificate was renewed at 70–90 % of its lifetime (each not_after
    // is its issue time + 60 s, so consecutive not_afters are the renewal times).
    let intervals: Vec<i64> = not_afters.windows(2).map(|w| w[1] - w[0]).collect();
    let (earliest, latest) = (
        LIFETIME_MS * 70 / 100 - 1_500,
        LIFETIME_MS * 90 / 100 + 4_000,
    );
    assert!(
        intervals.iter().all(|i| (earliest..=latest).contains(i)),
        "renewals must come at 70–90 % of the 60 s lifetime (every {earliest}–{latest} ms); \
         they came after {intervals:?} ms"
    );
    collector.kill9();
}

#[test]
fn device_reenroll_brings_back_a_device_that_lost_its_state() {
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let registration = collector.register_unbound();
    let device_id = registration.device_id.clone();
    let mut agent = Agent::enroll(&collector, &registration.token, "agent");
    let old_cert = agent.credentials().cert_pem;
    agent.run();
    wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(30),
        "the device to report",
        |d| match d["last_sequence"].as_u64() {
            Some(n) if n >= 3 => Ok(()),
            _ => Err("fewer than three reports".into()),
        },
    );
    agent.stop();
    let before = collector.device(&device_id);
    let stored_before = before["last_sequence"].as_u64().expect("last_sequence");

    // The disk is wiped (or the certificate expired while it was off).
    std::fs::remove_dir_all(&agent.state_dir).expect("wipe the state dir");
    let reenrolled = collector.vaktctl_json(&["device", "reenroll", &device_id, "-o", "json"]);
    assert_eq!(reenrolled["device_id"], device_id.as_str(), "{reenrolled}");
    let token = str_field(&reenrolled, "token").to_owned();
    assert_ne!(token, registration.token, "a fresh token");
    let records = audit(
        &collector,
        &["--action", "device.reenroll", "--device", &device_id],
    );
    assert_eq!(
        records.len(),
        1,
        "the re-enrollment is audited: {records:?}"
    );

    let mut back = Agent::enroll(&collector, &token, "agent");
    let creds = back.credentials();
    assert_eq!(creds.device_id, device_id, "the same device comes back");
    assert_ne!(creds.cert_pem, old_cert, "with a new certificate");
    let devices = collector.devices();
    assert_eq!(devices.len(), 1, "no second device: {devices:?}");

    // And it reports again: new data is stored, not taken for a clone.
    let cpu_before = machine_cpu_points(&collector, &device_id).len();
    back.run();
    let after = wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(30),
        "the re-enrolled device's reports to be stored",
        |d| match d["last_sequence"].as_u64() {
            Some(n) if n >= stored_before + 3 => Ok(()),
            _ => Err(format!("nothing stored beyond {stored_before}")),
        },
    );
    back.assert_running();
    let cpu_after = machine_cpu_points(&collector, &device_id).len();
    assert!(
        cpu_after >= cpu_before + 2,
        "new CPU points after the re-enrollment: {cpu_before} -> {cpu_after}"
    );
    assert!(
        flags_of(&after, "clone-suspected").is_empty(),
        "a device re-enrolled through `vaktctl device reenroll` must not be flagged as a clone: {after}"
    );
}
