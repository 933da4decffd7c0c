//! A compromised device: revoked, it is refused at once (open streams
//! included) and cannot come back; cloned, it is flagged instead of merged.

use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use vakt_proto::v1;
use vakt_proto::v1::admin_client::AdminClient;
use vakt_proto::v1::telemetry_client::TelemetryClient;
use vakt_tests::identity::{
    audit, certificate_facts, copy_dir, csr, flags_of, run_agent, write_agent_config,
};
use vakt_tests::{
    Agent, Collector, assert_code, cpu_batch, enroll_direct, expect_status, find_device, now_ms,
    report, str_field, test_hardware, wait_for_device,
};

/// How soon an open stream must be ended after `vaktctl revoke` returns.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_refused_within_a_second_and_cannot_come_back() {
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let registration = tokio::task::block_in_place(|| collector.register_unbound());
    let device_id = registration.device_id.clone();
    let mut agent =
        tokio::task::block_in_place(|| Agent::enroll(&collector, &registration.token, "agent"));
    let creds = agent.credentials();
    let serial = certificate_facts(&creds.cert_pem).serial_hex;
    agent.run();
    tokio::task::block_in_place(|| {
        wait_for_device(
            &collector,
            &device_id,
            Duration::from_secs(30),
            "the agent to report",
            |d| match d["last_sequence"].as_u64() {
                Some(n) if n >= 2 => Ok(()),
                _ => Err("fewer than two reports".into()),
            },
        )
    });
    // A token issued for the device and not used yet (as if stolen).
    let pending = tokio::task::block_in_place(|| {
        collector.vaktctl_json(&["device", "reenroll", &device_id, "-o", "json"])
    });
    let pending_token = str_field(&pending, "token").to_owned();

    // A second Report stream with the device's certificate, open and idle.
    let channel = collector
        .device_channel(&creds)
        .await
        .expect("device channel");
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::ReportBatch>(4);
    let mut acks = TelemetryClient::new(channel)
        .report(ReceiverStream::new(rx))
        .await
        .expect("open a Report stream")
        .into_inner();
    let waiter = tokio::spawn(async move {
        let result = acks.message().await;
        (Instant::now(), result)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "the idle stream stays open before the revocation"
    );

    let revoke_started = Instant::now();
    let out = tokio::task::block_in_place(|| {
        collector.vaktctl(&[
            "revoke",
            &device_id,
            "--reason",
            "laptop stolen",
            "-o",
            "json",
        ])
    });
    let revoke_returned = Instant::now();
    let revoked = out.assert_success().json();
    assert_eq!(revoked["device_id"], device_id.as_str(), "{out}");
    assert!(revoked["revoked_at"].is_string(), "{out}");
    let denylisted: Vec<String> = revoked["denylisted_certificate_serials"]
        .as_array()
        .unwrap_or_else(|| panic!("no denylisted_certificate_serials: {out}"))
        .iter()
        .map(|s| s.as_str().unwrap_or("").to_ascii_lowercase())
        .collect();
    assert!(
        denylisted.contains(&serial.to_ascii_lowercase()),
        "the device's certificate serial {serial} is denylisted: {denylisted:?}"
    );

    let (ended_at, result) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the open stream was not ended within 10 s of the revocation")
        .expect("stream waiter");
    drop(tx);
    let status = match result {
        Ok(Some(ack)) => panic!("the revoked stream got an acknowledgement: {ack:?}"),
        Ok(None) => panic!("the revoked stream ended with OK, not PERMISSION_DENIED"),
        Err(status) => status,
    };
    assert_code(
        &status,
        Code::PermissionDenied,
        "the open stream after revoke",
    );
    eprintln!(
        "vaktctl revoke took {:?}; the open stream ended {:?} after it started, {:?} after it returned",
        revoke_returned - revoke_started,
        ended_at.saturating_duration_since(revoke_started),
        ended_at.saturating_duration_since(revoke_returned),
    );
    assert!(
        ended_at <= revoke_returned + REVOCATION_DEADLINE,
        "the open stream ended {:?} after `vaktctl revoke` returned (deadline {REVOCATION_DEADLINE:?})",
        ended_at.saturating_duration_since(revoke_returned)
    );

    // The next RPCs of the device are refused: a new stream and a renewal.
    let last_sequence =
        tokio::task::block_in_place(|| collector.device(&device_id))["last_sequence"]
            .as_u64()
            .expect("last_sequence");
    let channel = collector
        .device_channel(&creds)
        .await
        .expect("device channel");
    let status = expect_status(
        report(
            channel.clone(),
            vec![cpu_batch(last_sequence + 100, now_ms(), 0.5)],
            last_sequence + 100,
        )
        .await,
        "a new Report stream after revoke",
    );
    assert_code(
        &status,
        Code::PermissionDenied,
        "a new Report stream after revoke",
    );
    let (_key, csr_pem) = csr("revoked", None);
    let status = expect_status(
        TelemetryClient::new(channel)
            .renew_certificate(v1::RenewCertificateRequest { csr_pem })
            .await,
        "RenewCertificate after revoke",
    );
    assert_code(
        &status,
        Code::PermissionDenied,
        "RenewCertificate after revoke",
    );

    // The running agent stores nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| {
        let device = collector.device(&device_id);
        assert_eq!(
            device["last_sequence"], last_sequence,
            "nothing stored after the revocation: {device}"
        );
        assert_eq!(device["status"], "revoked", "{device}");
        assert!(device["revoked_at"].is_string(), "{device}");
        let listed = match collector.vaktctl_json(&["devices", "--status", "revoked", "-o", "json"])
        {
            serde_json::Value::Array(devices) => devices,
            other => panic!("devices printed no array: {other}"),
        };
        assert!(
            find_device(&listed, &device_id).is_some(),
            "`devices --status revoked` lists it: {listed:?}"
        );
        let records = audit(
            &collector,
            &["--action", "device.revoke", "--device", &device_id],
        );
        assert_eq!(records.len(), 1, "the revocation is audited: {records:?}");
        assert_eq!(records[0]["outcome"], "ok", "{}", records[0]);
        assert!(
            str_field(&records[0], "actor").contains("admin"),
            "{}",
            records[0]
        );
    });

    // No way back: neither the pending token, nor the original, nor a re-enrollment.
    for (what, token) in [
        ("the pending re-enrollment token", pending_token.as_str()),
        ("the original token", registration.token.as_str()),
    ] {
        let status = expect_status(
            enroll_direct(
                collector.grpc_port,
                &collector.ca_pem(),
                token,
                test_hardware("back-again"),
            )
            .await,
            &format!("Enroll with {what} after revoke"),
        );
        assert_code(
            &status,
            Code::Unauthenticated,
            &format!("Enroll with {what} after revoke"),
        );
    }
    let out = tokio::task::block_in_place(|| {
        collector.vaktctl(&["device", "reenroll", &device_id, "-o", "json"])
    });
    assert_eq!(
        out.code,
        Some(1),
        "reenroll of a revoked device fails: {out}"
    );
    let admin = collector.admin_channel().await.expect("admin channel");
    let status = expect_status(
        AdminClient::new(admin)
            .reenroll_device(v1::ReenrollDeviceRequest {
                device: device_id.clone(),
                token_ttl_seconds: 0,
            })
            .await,
        "ReenrollDevice of a revoked device",
    );
    assert_code(
        &status,
        Code::FailedPrecondition,
        "ReenrollDevice of a revoked device",
    );
    tokio::task::block_in_place(|| {
        let devices = collector.devices();
        assert_eq!(devices.len(), 1, "nothing new was enrolled: {devices:?}");
    });
}

#[test]
fn a_copied_identity_used_by_two_agents_at_once_is_flagged() {
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let registration = collector.register_unbound();
    let device_id = registration.device_id.clone();
    let original = Agent::enroll(&collector, &registration.token, "original");
    let clone_dir = collector.agent_dir("clone");
    copy_dir(&original.state_dir, &clone_dir);
    let clone_config = collector.tmp().join("clone.toml");
    write_agent_config(&collector, &clone_config);

    let _first = run_agent(
        &collector,
        &original.config,
        &original.state_dir,
        "agent-original",
    );
    let _second = run_agent(&collector, &clone_config, &clone_dir, "agent-clone");
    let started = Instant::now();
    let device = wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(20),
        "the device to be flagged clone-suspected",
        |d| {
            if flags_of(d, "clone-suspected").is_empty() {
                Err("not flagged".into())
            } else {
                Ok(())
            }
        },
    );
    eprintln!("flagged after {:?}", started.elapsed());
    let flag = flags_of(&device, "clone-suspected")[0];
    assert!(flag["at"].is_string(), "{device}");
    assert!(
        !str_field(flag, "detail").is_empty(),
        "the flag says why: {device}"
    );

    let records = audit(
        &collector,
        &[
            "--action",
            "device.flag.clone-suspected",
            "--device",
            &device_id,
        ],
    );
    assert!(!records.is_empty(), "the clone is audited");
    let flagged = collector.vaktctl_json(&["devices", "--flagged", "-o", "json"]);
    assert!(
        flagged
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["device_id"] == device_id.as_str())),
        "`devices --flagged` lists the device: {flagged}"
    );
    assert_eq!(
        collector.devices().len(),
        1,
        "the clone is flagged, not made into a second device"
    );
}
