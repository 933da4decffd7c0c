//! A device is who the collector says it is: registrations bind hardware,
//! certificates are named by the collector (not by the CSR), and a payload
//! cannot write into another device.

use tonic::Code;
use vakt_proto::v1;
use vakt_proto::v1::enrollment_client::EnrollmentClient;
use vakt_tests::identity::{
    FixtureHardware, agent_enroll_with_config, audit, certificate_facts, csr, flags_of,
};
use vakt_tests::{
    Collector, Credentials, assert_code, connect, cpu_batch, enroll_direct, expect_status,
    metric_points_of, now_ms, report, str_field, test_hardware,
};

const MACHINE_ID_A: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
const MACHINE_ID_B: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

#[test]
fn a_registration_naming_a_serial_enrolls_only_that_hardware() {
    let collector = Collector::start();
    let registration = collector.register(&["--serial", "SN-TEST-1", "--class", "server"]);
    let device_id = registration.device_id.clone();

    // Hardware that says another serial is refused, with the reason on stderr.
    let wrong = FixtureHardware::new(
        &collector,
        &collector.tmp().join("hw-other"),
        Some("SN-OTHER"),
        MACHINE_ID_A,
    );
    let wrong_state = collector.agent_dir("wrong");
    let out = agent_enroll_with_config(
        &collector,
        &registration.token,
        &wrong_state,
        Some(&wrong.config),
    );
    assert_eq!(
        out.code,
        Some(1),
        "a serial mismatch must be refused: {out}"
    );
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("mismatch") && stderr.contains("serial"),
        "stderr says the serial does not match the registration: {out}"
    );
    assert!(
        !wrong_state.join("cert.pem").exists(),
        "no certificate for the wrong hardware"
    );

    // Audited as a mismatch, and the device carries the flag.
    let mismatches = audit(&collector, &["--action", "enroll.mismatch"]);
    let record = mismatches
        .iter()
        .find(|r| r["target"] == device_id.as_str())
        .unwrap_or_else(|| panic!("no enroll.mismatch record for {device_id}: {mismatches:?}"));
    assert_eq!(record["outcome"], "refused", "{record}");
    assert!(
        str_field(record, "detail").contains("SN-OTHER")
            || str_field(record, "detail").contains("serial"),
        "the record says what did not match: {record}"
    );
    let device = collector.device(&device_id);
    let flags = flags_of(&device, "enrollment-mismatch");
    assert_eq!(flags.len(), 1, "flagged enrollment-mismatch: {device}");
    assert!(!flags[0]["at"].is_null(), "{device}");
    assert!(device["enrolled_at"].is_null(), "{device}");
    assert_eq!(device["status"], "never-seen", "{device}");
    let flagged = collector.vaktctl_json(&["devices", "--flagged", "-o", "json"]);
    assert!(
        flagged
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["device_id"] == device_id.as_str())),
        "`devices --flagged` lists the device: {flagged}"
    );

    // The right hardware then enrolls with the very same token.
    let right = FixtureHardware::new(
        &collector,
        &collector.tmp().join("hw-right"),
        Some("SN-TEST-1"),
        MACHINE_ID_B,
    );
    let right_state = collector.agent_dir("right");
    let out = agent_enroll_with_config(
        &collector,
        &registration.token,
        &right_state,
        Some(&right.config),
    );
    assert!(
        out.success(),
        "the registered hardware enrolls with the token the refused attempt did not consume: {out}"
    );
    assert_eq!(
        Credentials::from_state_dir(&right_state).device_id,
        device_id,
        "enrolled as the registered device"
    );
    let device = collector.device(&device_id);
    assert!(!device["enrolled_at"].is_null(), "{device}");
    assert_eq!(device["serial"], "SN-TEST-1", "{device}");

    // A device whose serial is unknown never satisfies a serial registration.
    let second = collector.register(&["--serial", "SN-TEST-2"]);
    let unknown = FixtureHardware::new(
        &collector,
        &collector.tmp().join("hw-unknown"),
        None,
        MACHINE_ID_A,
    );
    let unknown_state = collector.agent_dir("unknown");
    let out = agent_enroll_with_config(
        &collector,
        &second.token,
        &unknown_state,
        Some(&unknown.config),
    );
    assert_eq!(
        out.code,
        Some(1),
        "a device without a readable serial must not satisfy a serial registration: {out}"
    );
    assert!(
        out.stderr.to_lowercase().contains("serial"),
        "stderr says the serial is the problem: {out}"
    );
    let device = collector.device(&second.device_id);
    assert!(device["enrolled_at"].is_null(), "{device}");
    let mismatches = audit(
        &collector,
        &["--action", "enroll.mismatch", "--device", &second.device_id],
    );
    assert_eq!(mismatches.len(), 1, "audited: {mismatches:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_uuid_and_unknown_serial_bindings_over_the_wire() {
    let collector = Collector::start();
    let ca = collector.ca_pem();
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e3132";
    let by_uuid = collector.register(&["--product-uuid", uuid]);
    let status = expect_status(
        enroll_direct(
            collector.grpc_port,
            &ca,
            &by_uuid.token,
            v1::HardwareFacts {
                product_uuid: "4c4c4544-0042-3510-8052-000000000000".into(),
                ..test_hardware("uuid-wrong")
            },
        )
        .await,
        "Enroll with another product UUID",
    );
    assert_code(
        &status,
        Code::PermissionDenied,
        "Enroll with another product UUID",
    );
    assert!(
        status.message().contains("enrollment mismatch"),
        "{status:?}"
    );
    let creds = enroll_direct(
        collector.grpc_port,
        &ca,
        &by_uuid.token,
        v1::HardwareFacts {
            product_uuid: uuid.into(),
            ..test_hardware("uuid-right")
        },
    )
    .await
    .unwrap_or_else(|s| panic!("the registered product UUID enrolls: {s:?}"));
    assert_eq!(creds.device_id, by_uuid.device_id);

    let by_serial = collector.register(&["--serial", "SN-WIRE-1"]);
    let status = expect_status(
        enroll_direct(
            collector.grpc_port,
            &ca,
            &by_serial.token,
            test_hardware("no-serial"),
        )
        .await,
        "Enroll without a serial against a serial registration",
    );
    assert_code(
        &status,
        Code::PermissionDenied,
        "Enroll without a serial against a serial registration",
    );
}

/// A batch carrying an inventory that names `hostname` and `serial`.
fn inventory_batch(sequence: u64, hostname: &str, serial: &str, cpu: f64) -> v1::ReportBatch {
    let inventory = v1::Inventory {
        hostname: hostname.to_owned(),
        serial: serial.to_owned(),
        os_name: "Debian GNU/Linux".into(),
        os_version: "13".into(),
        memory_total_bytes: 8 << 30,
        agent_version: "vakt-tests".into(),
        ..Default::default()
    };
    v1::ReportBatch {
        inventory_hash: vakt_proto::inventory_hash(&inventory),
        inventory: Some(inventory),
        // One point per batch: a distinct timestamp for each sequence.
        ..cpu_batch(
            sequence,
            now_ms() - 10_000 + i64::try_from(sequence).expect("small"),
            cpu,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_or_payload_claiming_another_device_stores_nothing_under_it() {
    let collector = Collector::start();
    let ca = collector.ca_pem();
    let victim = collector.enroll_test_device("victim-host").await;
    let channel = collector.device_channel(&victim).await.expect("channel");
    report(
        channel,
        vec![inventory_batch(1, "victim-host", "SN-VICTIM", 0.11)],
        1,
    )
    .await
    .expect("the victim reports");
    let victim_before = collector.device(&victim.device_id);
    assert_eq!(victim_before["last_sequence"], 1, "{victim_before}");
    assert_eq!(
        victim_before["inventory"]["serial"], "SN-VICTIM",
        "{victim_before}"
    );

    // A CSR asking for the victim's identity in a subject alternative name.
    let attacker = collector.register_unbound();
    let (_key, claiming_csr) = csr(
        "attacker",
        Some(&format!("vakt://device/{}", victim.device_id)),
    );
    let channel = connect(collector.grpc_port, &ca, None).await.expect("TLS");
    let status = expect_status(
        EnrollmentClient::new(channel.clone())
            .enroll(v1::EnrollRequest {
                token: attacker.token.clone(),
                csr_pem: claiming_csr,
                hardware: Some(test_hardware("attacker-host")),
            })
            .await,
        "Enroll with a CSR naming another device",
    );
    assert_code(
        &status,
        Code::InvalidArgument,
        "Enroll with a CSR naming another device",
    );

    // A subject naming the victim is ignored: the certificate names the
    // attacker's own registration.
    let (key, subject_only) = csr(&format!("vakt://device/{}", victim.device_id), None);
    let enrolled = EnrollmentClient::new(channel)
        .enroll(v1::EnrollRequest {
            token: attacker.token.clone(),
            csr_pem: subject_only,
            hardware: Some(test_hardware("attacker-host")),
        })
        .await
        .unwrap_or_else(|s| panic!("a CSR without SANs enrolls: {s:?}"))
        .into_inner();
    assert_eq!(enrolled.device_id, attacker.device_id);
    let identity = certificate_facts(&enrolled.certificate_pem)
        .identity
        .expect("the certificate names an identity");
    assert_eq!(
        identity.to_uri(),
        format!("vakt://device/{}", attacker.device_id),
        "the collector names the certificate after the registration"
    );

    // The attacker's report claims the victim's hostname and serial.
    let attacker_creds = Credentials {
        device_id: enrolled.device_id.clone(),
        cert_pem: enrolled.certificate_pem.clone(),
        key_pem: key.serialize_pem(),
        ca_pem: ca.clone(),
    };
    let channel = collector
        .device_channel(&attacker_creds)
        .await
        .expect("attacker channel");
    let acks = report(
        channel,
        vec![
            inventory_batch(1, "victim-host", "SN-VICTIM", 0.77),
            inventory_batch(2, "victim-host", "SN-VICTIM", 0.78),
        ],
        2,
    )
    .await
    .expect("the attacker's report is taken, as its own");
    assert_eq!(acks.last(), Some(&2), "{acks:?}");

    // Nothing changed for the victim.
    let victim_after = collector.device(&victim.device_id);
    for field in [
        "last_sequence",
        "inventory",
        "enrolled_at",
        "certificate_not_after",
        "hostname",
        "flags",
    ] {
        assert_eq!(
            victim_after[field], victim_before[field],
            "the victim's {field} changed: before {victim_before}, after {victim_after}"
        );
    }
    let victim_points = metric_points_of(&collector.vaktctl_json(&[
        "metrics",
        &victim.device_id,
        "system.cpu.utilization",
        "--since",
        "1h",
        "-o",
        "json",
    ]));
    assert_eq!(
        victim_points.len(),
        1,
        "only the victim's own point: {victim_points:?}"
    );
    assert_eq!(victim_points[0].1, 0.11);

    // Everything was stored under the sender.
    let attacker_after = collector.device(&attacker.device_id);
    assert_eq!(attacker_after["last_sequence"], 2, "{attacker_after}");
    assert_eq!(
        attacker_after["inventory"]["serial"], "SN-VICTIM",
        "{attacker_after}"
    );
    let attacker_points =
        collector.metric_points(&attacker.device_id, "system.cpu.utilization", "1h");
    assert_eq!(attacker_points.len(), 2, "{attacker_points:?}");

    // The audit log mentions the victim only for its own registration and enrollment.
    let about_victim = audit(&collector, &["--device", &victim.device_id]);
    for record in &about_victim {
        assert!(
            ["device.register", "enroll.accepted"].contains(&str_field(record, "action")),
            "unexpected audit record about the victim: {record}"
        );
    }
}
