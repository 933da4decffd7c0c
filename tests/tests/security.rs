//! Who may call what: client certificates are required and checked against
//! this collector's CA, tokens are single-use, and bad input is refused with a
//! clear status without hurting the collector or what it stored.

use std::time::Duration;
use tonic::Code;
use vakt_proto::v1;
use vakt_proto::v1::admin_client::AdminClient;
use vakt_tests::{
    Agent, Collector, SERVING, agent_enroll, assert_code, connect, cpu_batch, enroll_direct,
    expect_status, forge_client_cert, health_status, now_ms, report, test_hardware,
    wait_for_device,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_and_admin_without_client_certificate_are_unauthenticated() {
    let collector = Collector::start();
    let channel = connect(collector.grpc_port, &collector.ca_pem(), None)
        .await
        .expect("TLS without a client certificate is accepted at the TLS layer");

    let status = expect_status(
        report(channel.clone(), vec![cpu_batch(1, now_ms(), 0.5)], 1).await,
        "Telemetry.Report without a client certificate",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "Telemetry.Report without a client certificate",
    );

    let status = expect_status(
        AdminClient::new(channel)
            .list_devices(v1::ListDevicesRequest::default())
            .await,
        "Admin.ListDevices without a client certificate",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "Admin.ListDevices without a client certificate",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_and_admin_certificates_stay_in_their_lanes() {
    let collector = Collector::start();
    let device = collector.enroll_test_device("lanes-device").await;

    // A device certificate calling Admin.
    let device_channel = collector
        .device_channel(&device)
        .await
        .expect("device channel");
    let status = expect_status(
        AdminClient::new(device_channel)
            .list_devices(v1::ListDevicesRequest::default())
            .await,
        "Admin.ListDevices with a device certificate",
    );
    assert_code(
        &status,
        Code::PermissionDenied,
        "Admin.ListDevices with a device certificate",
    );

    // An admin certificate calling Telemetry.
    let admin_channel = collector.admin_channel().await.expect("admin channel");
    let status = expect_status(
        report(admin_channel.clone(), vec![cpu_batch(1, now_ms(), 0.5)], 1).await,
        "Telemetry.Report with an admin certificate",
    );
    assert_code(
        &status,
        Code::PermissionDenied,
        "Telemetry.Report with an admin certificate",
    );

    // Unknown device in Admin.
    let status = expect_status(
        AdminClient::new(admin_channel)
            .get_device(v1::GetDeviceRequest {
                device: "nosuch".into(),
            })
            .await,
        "Admin.GetDevice of an unknown device",
    );
    assert_code(
        &status,
        Code::NotFound,
        "Admin.GetDevice of an unknown device",
    );

    // None of that stored anything for the device.
    let shown = collector.device(&device.device_id);
    assert_eq!(shown["last_sequence"], 0, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_are_refused_and_store_nothing() {
    let collector = Collector::start();
    let device = collector.enroll_test_device("real-device").await;
    let ca = collector.ca_pem();

    // The admin credential of another collector (its own CA).
    let other = Collector::init();
    let (other_cert, other_key) = other.admin_identity();
    let register = async {
        let channel = connect(collector.grpc_port, &ca, Some((&other_cert, &other_key)))
            .await
            .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
        AdminClient::new(channel)
            .register_device(v1::RegisterDeviceRequest {
                unbound: true,
                department: "intruders".into(),
                ..Default::default()
            })
            .await
    };
    let status = expect_status(
        register.await,
        "RegisterDevice with another CA's admin cert",
    );
    eprintln!("another CA's admin certificate: {status:?}");

    // A certificate naming our real device, signed by a rogue CA.
    let (forged_cert, forged_key) =
        forge_client_cert(&format!("vakt://device/{}", device.device_id));
    let forged_report = async {
        let channel = connect(collector.grpc_port, &ca, Some((&forged_cert, &forged_key)))
            .await
            .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
        report(channel, vec![cpu_batch(1, now_ms(), 0.25)], 1).await
    };
    let status = expect_status(forged_report.await, "Report with a forged device cert");
    eprintln!("forged device certificate: {status:?}");

    // Nothing was stored: still one device, never seen, no samples.
    let devices = collector.devices();
    assert_eq!(devices.len(), 1, "only the real device exists: {devices:?}");
    let shown = collector.device(&device.device_id);
    assert_eq!(shown["last_sequence"], 0, "{shown}");
    assert_eq!(shown["status"], "never-seen", "{shown}");
    let points = collector.metric_points(&device.device_id, "system.cpu.utilization", "1h");
    assert!(points.is_empty(), "no samples stored: {points:?}");
    assert_eq!(
        health_status(collector.grpc_port, &ca)
            .await
            .expect("health"),
        SERVING
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_enrolls_once_and_the_first_device_is_untouched() {
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);
    let registration = collector.register_unbound();
    let mut first = Agent::enroll(&collector, &registration.token, "first");
    let first_creds = first.credentials();
    assert_eq!(first_creds.device_id, registration.device_id);

    // The same token again, through the agent.
    let second_dir = collector.agent_dir("second");
    let out = agent_enroll(&collector, &registration.token, &second_dir);
    assert_eq!(
        out.code,
        Some(1),
        "second enrollment with a used token: {out}"
    );
    let lines = out.stderr_lines();
    assert!(!lines.is_empty(), "the agent explains the refusal: {out}");
    let stderr = out.stderr.to_lowercase();
    assert!(
        ["token", "unauthenticated"]
            .iter()
            .any(|w| stderr.contains(w)),
        "stderr should say the token was refused: {out}"
    );
    for file in ["cert.pem", "enrollment.json"] {
        assert!(
            !second_dir.join(file).exists(),
            "a refused enrollment must not leave {file}"
        );
    }

    // The same token again, directly.
    let status = expect_status(
        enroll_direct(
            collector.grpc_port,
            &collector.ca_pem(),
            &registration.token,
            test_hardware("second-direct"),
        )
        .await,
        "direct Enroll with a used token",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "direct Enroll with a used token",
    );

    // A token that never existed.
    let status = expect_status(
        enroll_direct(
            collector.grpc_port,
            &collector.ca_pem(),
            "vakt-this-token-was-never-issued-0000000000",
            test_hardware("made-up"),
        )
        .await,
        "direct Enroll with an unknown token",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "direct Enroll with an unknown token",
    );

    // The first device is untouched: still one device, and its agent reports.
    let devices = collector.devices();
    assert_eq!(devices.len(), 1, "no second device: {devices:?}");
    first.run();
    let device = wait_for_device(
        &collector,
        &first_creds.device_id,
        Duration::from_secs(30),
        "the first device to report",
        |d| {
            if d["status"] == "online" && d["last_sequence"].as_u64().unwrap_or(0) >= 2 {
                Ok(())
            } else {
                Err("not online with two reports yet".into())
            }
        },
    );
    assert_eq!(device["device_id"], first_creds.device_id.as_str());
    first.assert_running();
    assert_eq!(
        std::fs::read_to_string(first.state_dir.join("key.pem")).expect("key.pem"),
        first_creds.key_pem,
        "the first device's key is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_nan_batches_are_refused_and_the_collector_carries_on() {
    use prost::Message;

    let collector = Collector::start();
    let device = collector.enroll_test_device("bad-input").await;
    let channel = collector
        .device_channel(&device)
        .await
        .expect("device channel");
    let now = now_ms();

    // 5 MiB of samples, past MAX_MESSAGE_BYTES.
    let mut huge = cpu_batch(1, now, 0.5);
    let template = huge.samples[0].clone();
    let target = 5 * 1024 * 1024;
    assert!(target > vakt_proto::validate::MAX_MESSAGE_BYTES);
    // Grow in chunks (encoded_len walks every sample, so not once per push).
    while huge.encoded_len() < target {
        let have = huge.samples.len();
        for i in 0..10_000 {
            let mut sample = template.clone();
            sample.timestamp_unix_ms = now - i64::try_from(have + i).expect("fits");
            huge.samples.push(sample);
        }
    }
    let status = expect_status(
        report(channel.clone(), vec![huge], 1).await,
        "a 5 MiB ReportBatch",
    );
    assert!(
        matches!(
            status.code(),
            Code::ResourceExhausted | Code::InvalidArgument
        ),
        "a 5 MiB batch: expected RESOURCE_EXHAUSTED or INVALID_ARGUMENT, got {:?}: {}",
        status.code(),
        status.message()
    );

    // A NaN value.
    let status = expect_status(
        report(channel.clone(), vec![cpu_batch(1, now, f64::NAN)], 1).await,
        "a batch with a NaN value",
    );
    assert_code(&status, Code::InvalidArgument, "a batch with a NaN value");
    assert!(
        !status.message().is_empty(),
        "INVALID_ARGUMENT says what is wrong"
    );

    // A unary call over the limit gets the same code as a streamed one.
    let admin = collector.admin_channel().await.expect("admin channel");
    let status = AdminClient::new(admin)
        .register_device(v1::RegisterDeviceRequest {
            unbound: true,
            owner: "x".repeat(5 * 1024 * 1024),
            ..Default::default()
        })
        .await
        .expect_err("a 5 MiB RegisterDevice is refused");
    assert_code(&status, Code::ResourceExhausted, "a 5 MiB unary request");

    // Still healthy, nothing stored, and a valid batch is stored.
    assert_eq!(
        health_status(collector.grpc_port, &collector.ca_pem())
            .await
            .expect("health after bad input"),
        SERVING
    );
    let shown = collector.device(&device.device_id);
    assert_eq!(
        shown["last_sequence"], 0,
        "refused batches store nothing: {shown}"
    );

    let channel = collector
        .device_channel(&device)
        .await
        .expect("device channel");
    let acks = report(channel, vec![cpu_batch(1, now, 0.42)], 1)
        .await
        .expect("a valid batch after the bad ones");
    assert_eq!(acks.last(), Some(&1), "acks: {acks:?}");
    let shown = collector.device(&device.device_id);
    assert_eq!(shown["last_sequence"], 1, "{shown}");
    let points = collector.metric_points(&device.device_id, "system.cpu.utilization", "1h");
    assert_eq!(
        points,
        vec![(now, 0.42)],
        "exactly the valid sample is stored"
    );
}
