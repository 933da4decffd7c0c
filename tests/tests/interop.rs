//! Standard clients work against the collector: a stock gRPC health client
//! over TLS with only the CA, server reflection, and the plain-HTTP probes.

use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use vakt_tests::{Collector, SERVING, connect, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_health_client_sees_serving_over_tls_with_only_the_ca() {
    let collector = Collector::start();
    let channel = connect(collector.grpc_port, &collector.ca_pem(), None)
        .await
        .expect("TLS connect with only the CA (no client certificate)");
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("grpc.health.v1.Health/Check without a client certificate")
        .into_inner()
        .status;
    assert_eq!(status, SERVING, "overall health status");
}

/// Service names from server reflection: `grpc.reflection.v1`, falling back
/// to `v1alpha` (which older grpcurl versions use) only if v1 is unimplemented.
async fn reflected_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::{v1, v1alpha};
    let v1_request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let v1_result = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![v1_request]))
        .await;
    match v1_result {
        Ok(responses) => {
            let response = responses
                .into_inner()
                .message()
                .await
                .expect("reflection v1 response")
                .expect("one reflection v1 response");
            match response.message_response {
                Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(
                    list,
                )) => list.service.into_iter().map(|s| s.name).collect(),
                other => panic!("unexpected reflection v1 response: {other:?}"),
            }
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            let request = v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
                ),
            };
            let response = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::iter(vec![request]))
                .await
                .expect("grpc.reflection (v1 and v1alpha) without a client certificate")
                .into_inner()
                .message()
                .await
                .expect("reflection v1alpha response")
                .expect("one reflection v1alpha response");
            match response.message_response {
                Some(
                    v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(
                        list,
                    ),
                ) => list.service.into_iter().map(|s| s.name).collect(),
                other => panic!("unexpected reflection v1alpha response: {other:?}"),
            }
        }
        Err(status) => panic!("grpc.reflection.v1 without a client certificate: {status:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reflection_lists_the_vakt_services() {
    let collector = Collector::start();
    let channel = connect(collector.grpc_port, &collector.ca_pem(), None)
        .await
        .expect("TLS connect with only the CA");
    let names = reflected_services(channel).await;
    for wanted in [
        "vakt.v1.Enrollment",
        "vakt.v1.Telemetry",
        "vakt.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from reflection: {names:?}"
        );
    }
}

#[test]
fn http_healthz_and_readyz_answer_200() {
    let collector = Collector::start();
    let (code, body) = wait_until(Duration::from_secs(10), "GET /healthz", || {
        collector.http_get("/healthz").map_err(|e| format!("{e:#}"))
    });
    assert_eq!(code, 200, "GET /healthz: body {body:?}");
    // The collector answered gRPC health SERVING, so it is ready.
    let (code, body) = collector.http_get("/readyz").expect("GET /readyz");
    assert_eq!(code, 200, "GET /readyz: body {body:?}");
    let (code, body) = collector.http_get("/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "GET /metrics");
    assert!(
        body.contains("# TYPE"),
        "/metrics is not Prometheus text: {body:.400}"
    );
}

/// An implementation independent of tonic (python grpcio, C-core) checks
/// health and reflection: `tests/interop/grpc_check.py`.
#[test]
fn grpcio_client_checks_health_and_reflection() {
    use std::process::Command;
    if !vakt_tests::require_program("python3", "the grpcio interop check runs on it") {
        return;
    }
    let mut probe = Command::new("python3");
    probe.args(["-c", "import grpc, grpc_health.v1, grpc_reflection.v1alpha"]);
    let modules = vakt_tests::run_command(probe, Duration::from_secs(30));
    if !vakt_tests::require(
        modules.success(),
        "python modules grpcio, grpcio-health-checking, grpcio-reflection are not installed",
    ) {
        return;
    }

    let collector = Collector::start();
    let script = vakt_tests::workspace_root().join("tests/interop/grpc_check.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(format!("127.0.0.1:{}", collector.grpc_port))
        .arg(collector.dir.join("ca.pem"));
    let out = vakt_tests::run_command(cmd, Duration::from_secs(30));
    out.assert_success();
    let json = out.json();
    assert_eq!(json["health"], "SERVING", "{out}");
    let services: Vec<&str> = json["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services array: {out}"))
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for wanted in ["vakt.v1.Enrollment", "vakt.v1.Telemetry", "vakt.v1.Admin"] {
        assert!(services.contains(&wanted), "{wanted} missing: {services:?}");
    }
}
