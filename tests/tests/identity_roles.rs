//! Roles: for each role, every Admin RPC is allowed or refused exactly as the
//! collector's one authorization table says — over real mTLS, with credentials
//! made by `vaktctl credentials issue`.

use prost::Message;
use std::collections::BTreeSet;
use tonic::Code;
use tonic::transport::Channel;
use vakt_collector::authz::{AdminRpc, allowed};
use vakt_proto::identity::Role;
use vakt_proto::v1;
use vakt_proto::v1::admin_client::AdminClient;
use vakt_tests::identity::{RoleCredential, audit, csr};
use vakt_tests::{Collector, now_ms, str_field};

/// The methods the `Admin` service declares on the wire.
fn admin_methods_on_the_wire() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(vakt_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    set.file
        .iter()
        .filter(|f| f.package() == "vakt.v1")
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "Admin")
        .flat_map(|s| &s.method)
        .map(|m| m.name().to_owned())
        .collect()
}

/// Calls `rpc` with a harmless request about `device` (an existing device).
/// The match is exhaustive: a new `AdminRpc` without a call here does not compile.
async fn call(channel: Channel, rpc: AdminRpc, device: &str) -> Result<(), tonic::Status> {
    let mut admin = AdminClient::new(channel);
    let device = device.to_owned();
    match rpc {
        AdminRpc::RegisterDevice => admin
            .register_device(v1::RegisterDeviceRequest {
                unbound: true,
                department: "authz-probe".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        AdminRpc::ListDevices => admin
            .list_devices(v1::ListDevicesRequest::default())
            .await
            .map(drop),
        AdminRpc::GetDevice => admin
            .get_device(v1::GetDeviceRequest { device })
            .await
            .map(drop),
        AdminRpc::QueryMetrics => admin
            .query_metrics(v1::QueryMetricsRequest {
                device,
                metric: "system.cpu.utilization".into(),
                since_unix_ms: now_ms() - 3_600_000,
                ..Default::default()
            })
            .await
            .map(drop),
        AdminRpc::ReenrollDevice => admin
            .reenroll_device(v1::ReenrollDeviceRequest {
                device,
                token_ttl_seconds: 0,
            })
            .await
            .map(drop),
        // A device that does not exist: allowed roles get NOT_FOUND, and no
        // real device is revoked.
        AdminRpc::RevokeDevice => admin
            .revoke_device(v1::RevokeDeviceRequest {
                device: "d-0000000000000000".into(),
                reason: "authorization probe".into(),
            })
            .await
            .map(drop),
        AdminRpc::IssueCredential => {
            let (_key, csr_pem) = csr("authz-probe", None);
            admin
                .issue_credential(v1::IssueCredentialRequest {
                    name: "authz-probe".into(),
                    role: "viewer".into(),
                    csr_pem,
                    lifetime_seconds: 3600,
                })
                .await
                .map(drop)
        }
        AdminRpc::ListAudit => admin
            .list_audit(v1::ListAuditRequest::default())
            .await
            .map(drop),
        AdminRpc::ListAlerts => admin
            .list_alerts(v1::ListAlertsRequest::default())
            .await
            .map(drop),
        // An alert that does not exist: allowed roles get NOT_FOUND.
        AdminRpc::AckAlert => admin
            .ack_alert(v1::AckAlertRequest {
                id: "0000000000000000".into(),
                comment: "authorization probe".into(),
                duration_seconds: 0,
            })
            .await
            .map(drop),
        AdminRpc::AddSilence => admin
            .add_silence(v1::AddSilenceRequest {
                matchers: vec![v1::SilenceMatcher {
                    name: "device".into(),
                    op: "=".into(),
                    value: "d-0000000000000000".into(),
                }],
                duration_seconds: 60,
                comment: "authorization probe".into(),
                starts_at_unix_ms: 0,
            })
            .await
            .map(drop),
        AdminRpc::ListSilences => admin
            .list_silences(v1::ListSilencesRequest::default())
            .await
            .map(drop),
        AdminRpc::ExpireSilence => admin
            .expire_silence(v1::ExpireSilenceRequest {
                id: "s-000000000000".into(),
            })
            .await
            .map(drop),
        AdminRpc::WatchAlerts => admin
            .watch_alerts(v1::WatchAlertsRequest {})
            .await
            .map(drop),
        AdminRpc::ReloadRules => admin
            .reload_rules(v1::ReloadRulesRequest {})
            .await
            .map(drop),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_gets_every_admin_rpc_exactly_as_the_table_says() {
    // The table covers every method on the wire, and nothing else.
    let on_the_wire = admin_methods_on_the_wire();
    let in_the_table: BTreeSet<String> = AdminRpc::ALL
        .iter()
        .map(|rpc| rpc.method_name().to_owned())
        .collect();
    assert!(
        !on_the_wire.is_empty(),
        "no Admin service in the descriptor set"
    );
    assert_eq!(
        on_the_wire, in_the_table,
        "Admin methods on the wire vs AdminRpc::ALL: a method without a rule (or a rule without a method)"
    );

    let collector = Collector::start();
    let target = tokio::task::block_in_place(|| collector.register_unbound());
    let mut mismatches = Vec::new();
    let mut outcomes = Vec::new();
    for role in Role::ALL {
        let credential = tokio::task::block_in_place(|| {
            RoleCredential::issue(&collector, role.as_str(), &format!("authz-{role}"))
        });
        let channel = credential
            .channel(&collector)
            .await
            .unwrap_or_else(|e| panic!("connect as {role}: {e:#}"));
        for &rpc in AdminRpc::ALL {
            let result = call(channel.clone(), rpc, &target.device_id).await;
            let denied = matches!(&result, Err(s) if s.code() == Code::PermissionDenied);
            let expected_denied = !allowed(role, rpc);
            let outcome = match &result {
                Ok(()) => "OK".to_owned(),
                Err(s) => format!("{:?}: {}", s.code(), s.message()),
            };
            outcomes.push(format!(
                "{:<11} {:<16} {outcome}",
                role.as_str(),
                rpc.method_name()
            ));
            if denied != expected_denied {
                mismatches.push(format!(
                    "{role} {}: the table says {}, the collector answered {outcome}",
                    rpc.method_name(),
                    if expected_denied {
                        "PERMISSION_DENIED"
                    } else {
                        "allowed"
                    },
                ));
            }
        }
    }
    eprintln!("{}", outcomes.join("\n"));
    assert!(
        mismatches.is_empty(),
        "authorization differs from authz::allowed:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn a_provisioner_script_can_register_but_not_list_devices() {
    let collector = Collector::start();
    let script = RoleCredential::issue(&collector, "provisioner", "provisioning-script");

    let out = script.vaktctl(&["register", "--serial", "SN-PROV-1", "-o", "json"]);
    let registered = out.assert_success().json();
    let device_id = str_field(&registered, "device_id").to_owned();
    assert!(!str_field(&registered, "token").is_empty(), "{out}");

    let out = script.vaktctl(&["devices", "-o", "json"]);
    assert_eq!(
        out.code,
        Some(1),
        "a provisioner may not list devices: {out}"
    );
    assert_eq!(
        out.stderr_lines().len(),
        1,
        "one clear line on stderr: {out}"
    );
    assert!(
        out.stderr.to_lowercase().contains("permission"),
        "stderr says it is a permission problem: {out}"
    );
    assert!(out.stdout.trim().is_empty(), "no listing leaks out: {out}");

    for args in [
        &["revoke", device_id.as_str()][..],
        &["audit", "-o", "json"][..],
        &[
            "credentials",
            "issue",
            "--role",
            "admin",
            "--name",
            "escalation",
            "--out",
            collector
                .tmp()
                .join("escalation")
                .to_str()
                .expect("utf-8 path"),
        ][..],
    ] {
        let out = script.vaktctl(args);
        assert_eq!(out.code, Some(1), "a provisioner may not {args:?}: {out}");
        assert!(
            out.stderr.to_lowercase().contains("permission"),
            "stderr says it is a permission problem: {out}"
        );
    }
    assert!(
        !collector
            .tmp()
            .join("escalation")
            .join("escalation.pem")
            .exists(),
        "no admin certificate was issued to the provisioner"
    );
    let device = collector.device(&device_id);
    assert!(device["revoked_at"].is_null(), "not revoked: {device}");

    // The audit log says who registered the device.
    let records = audit(
        &collector,
        &["--action", "device.register", "--device", &device_id],
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let actor = str_field(&records[0], "actor");
    assert!(
        actor.contains("provisioning-script") && actor.contains("provisioner"),
        "the audit names the script and its role: {actor}"
    );
}
