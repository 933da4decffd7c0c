//! Harness for the fleet-wide query tests: devices registered into
//! departments and classes, enrolled over gRPC, reporting filesystem and
//! battery samples with an inventory, as real agents would.

use crate::{Collector, Credentials, enroll_direct, report, test_hardware};
use vakt_proto::v1;

/// What one simulated device is and reports.
#[derive(Clone, Debug, Default)]
pub struct FleetDeviceSpec {
    pub hostname: &'static str,
    pub department: &'static str,
    pub class: &'static str,
    /// `KEY=VALUE` registration labels.
    pub labels: Vec<&'static str>,
    pub os_version: &'static str,
    pub model: &'static str,
    /// Per mountpoint, the utilization at each report (oldest first).
    pub filesystems: Vec<(&'static str, Vec<f64>)>,
    /// Battery health at each report, if the device has a battery.
    pub battery_health: Option<Vec<f64>>,
    /// Ends with a sleep event (the device is then `asleep`).
    pub sleeps: bool,
    /// Installed packages `(name, version)`, sent in full with the first report.
    pub packages: Vec<(&'static str, &'static str)>,
}

pub const OS_NAME: &str = "Debian GNU/Linux";

/// `vaktctl register --unbound --department … --class … --label …`; returns
/// the device id and token.
pub fn register_in(collector: &Collector, spec: &FleetDeviceSpec) -> (String, String) {
    let mut args = vec![
        "--unbound",
        "--department",
        spec.department,
        "--class",
        spec.class,
    ];
    for label in &spec.labels {
        args.extend_from_slice(&["--label", label]);
    }
    let registration = collector.register(&args);
    (registration.device_id, registration.token)
}

/// Registers, enrolls and reports `spec`'s samples as one batch per report,
/// `timestamps_ms[i]` being report i's time; waits for the last ack.
pub async fn enroll_and_report(
    collector: &Collector,
    spec: &FleetDeviceSpec,
    timestamps_ms: &[i64],
) -> Credentials {
    let (device_id, token) = register_in(collector, spec);
    let creds = enroll_direct(
        collector.grpc_port,
        &collector.ca_pem(),
        &token,
        test_hardware(spec.hostname),
    )
    .await
    .unwrap_or_else(|status| panic!("enroll {}: {status:?}", spec.hostname));
    assert_eq!(creds.device_id, device_id);
    let inventory = v1::Inventory {
        hostname: spec.hostname.to_owned(),
        os_name: OS_NAME.to_owned(),
        os_version: spec.os_version.to_owned(),
        model: spec.model.to_owned(),
        agent_version: "vakt-tests".to_owned(),
        ..Default::default()
    };
    let batches: Vec<v1::ReportBatch> = timestamps_ms
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let mut samples: Vec<v1::Sample> = spec
                .filesystems
                .iter()
                .map(|(mount, values)| v1::Sample {
                    metric: "system.filesystem.utilization".to_owned(),
                    attributes: vec![v1::Attribute {
                        key: "mountpoint".to_owned(),
                        value: (*mount).to_owned(),
                    }],
                    value: values[i],
                    timestamp_unix_ms: at,
                })
                .collect();
            if let Some(health) = &spec.battery_health {
                samples.push(v1::Sample {
                    metric: "system.battery.health".to_owned(),
                    attributes: vec![v1::Attribute {
                        key: "battery".to_owned(),
                        value: "BAT0".to_owned(),
                    }],
                    value: health[i],
                    timestamp_unix_ms: at,
                });
            }
            let last = i + 1 == timestamps_ms.len();
            let software = (i == 0 && !spec.packages.is_empty()).then(|| {
                let packages: Vec<v1::Package> = spec
                    .packages
                    .iter()
                    .map(|(name, version)| v1::Package {
                        name: (*name).to_owned(),
                        version: (*version).to_owned(),
                        architecture: "amd64".to_owned(),
                        source: "dpkg".to_owned(),
                    })
                    .collect();
                v1::SoftwareChanges {
                    full: true,
                    result_hash: vakt_proto::software_hash(&packages),
                    upserted: packages,
                    ..Default::default()
                }
            });
            v1::ReportBatch {
                sequence: i as u64 + 1,
                collected_at_unix_ms: at,
                samples,
                inventory: (i == 0).then(|| inventory.clone()),
                software,
                events: if last && spec.sleeps {
                    vec![v1::Event {
                        kind: v1::EventKind::Sleep as i32,
                        at_unix_ms: at,
                        detail: String::new(),
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }
        })
        .collect();
    let channel = collector
        .device_channel(&creds)
        .await
        .expect("device channel");
    let last = timestamps_ms.len() as u64;
    let acks = report(channel, batches, last)
        .await
        .unwrap_or_else(|status| panic!("report from {}: {status:?}", spec.hostname));
    assert_eq!(acks.last(), Some(&last), "{}: acks {acks:?}", spec.hostname);
    creds
}
