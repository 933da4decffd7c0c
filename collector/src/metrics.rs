//! The collector's own Prometheus metrics (served on the HTTP endpoint).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vakt_proto::v1::DeviceStatus;

/// How old the device gauges may be before a scrape recounts them. A status
/// changes on the scale of report intervals (online = seen within three of
/// them, plus 10 s), so counts this old are still right to within an
/// interval, and however many scrapers there are (Prometheus every 15 s, an
/// HA pair twice that), a fleet of 50,000 devices is walked at most this
/// often. Measured: one recount of 19,000 devices took 0.05–1.1 s of one core
/// on a machine at load 12 (docs/BENCHMARKS.md, "Fleet scale").
pub const FLEET_GAUGES_MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub reports: Family<ResultLabel, Counter>,
    pub samples: Counter,
    pub ack_latency: Histogram,
    pub connected_agents: Gauge,
    pub enrollments: Family<ResultLabel, Counter>,
    pub storage_bytes: Gauge,
    pub devices: Family<StatusLabel, Gauge>,
    /// Devices by status, department and class (recomputed at scrape time).
    pub fleet_devices: Family<FleetLabels, Gauge>,
    pub notify: crate::alerts::notify::metrics::NotifyMetrics,
    /// Set by the alert engine whenever an alert changes.
    pub alerts_firing: Family<SeverityLabel, Gauge>,
    /// When the device gauges were last recounted; also serializes recounts.
    fleet_counted_at: Mutex<Option<Instant>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetLabels {
    pub status: &'static str,
    pub department: String,
    pub class: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vakt_collector");
        let reports = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reports",
            "Report batches received, by result (stored, duplicate, rejected)",
            reports.clone(),
        );
        let samples = Counter::default();
        registry.register("samples", "Samples stored", samples.clone());
        let ack_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "report_ack_seconds",
            "Time from receiving a report to acknowledging it durably stored",
            ack_latency.clone(),
        );
        let connected_agents = Gauge::default();
        registry.register(
            "connected_agents",
            "Agents with an open report stream",
            connected_agents.clone(),
        );
        let enrollments = Family::<ResultLabel, Counter>::default();
        registry.register(
            "enrollments",
            "Enrollment attempts, by result",
            enrollments.clone(),
        );
        let storage_bytes = Gauge::default();
        registry.register(
            "storage_bytes",
            "Size of the sled database on disk",
            storage_bytes.clone(),
        );
        let devices = Family::<StatusLabel, Gauge>::default();
        registry.register("devices", "Devices by status", devices.clone());
        let fleet_devices = Family::<FleetLabels, Gauge>::default();
        registry.register(
            "fleet_devices",
            "Devices by status, department and class",
            fleet_devices.clone(),
        );
        let notify = crate::alerts::notify::metrics::NotifyMetrics::default();
        notify.register(&mut registry);
        let alerts_firing = Family::<SeverityLabel, Gauge>::default();
        registry.register(
            "alerts_firing",
            "Alerts firing now, by severity (acknowledged and silenced included)",
            alerts_firing.clone(),
        );
        Self {
            alerts_firing,
            registry,
            reports,
            samples,
            ack_latency,
            connected_agents,
            enrollments,
            storage_bytes,
            devices,
            fleet_devices,
            notify,
            fleet_counted_at: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Recounts `devices` and `fleet_devices` from the store unless that was
    /// done less than `FLEET_GAUGES_MAX_AGE` ago. Blocking (one pass over the
    /// devices tree): call it off the async workers.
    pub fn refresh_fleet_gauges(
        &self,
        store: &crate::store::Store,
        now_ms: i64,
        report_interval: Duration,
    ) -> crate::store::Result<()> {
        let mut counted_at = self
            .fleet_counted_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if counted_at.is_some_and(|at| at.elapsed() < FLEET_GAUGES_MAX_AGE) {
            return Ok(());
        }
        let mut counts = BTreeMap::<&'static str, i64>::new();
        for status in [
            DeviceStatus::NeverSeen,
            DeviceStatus::Online,
            DeviceStatus::Offline,
            DeviceStatus::Asleep,
            DeviceStatus::Off,
            DeviceStatus::Revoked,
        ] {
            counts.insert(status.short_name(), 0);
        }
        // Departments and classes are interned (looked up by &str, allocated
        // once per scan), so a scan allocates per group, not per device.
        let mut names = HashMap::<String, usize>::new();
        let mut intern = |name: &str| match names.get(name) {
            Some(&i) => i,
            None => {
                let i = names.len();
                names.insert(name.to_owned(), i);
                i
            }
        };
        let mut fleet = HashMap::<(&'static str, usize, usize), i64>::new();
        store.for_each_device_brief(|device, state| {
            let status = crate::fleet::status_of(
                device.revoked_at_ms,
                crate::fleet::Seen {
                    last_seen_ms: state.last_seen_ms,
                    last_event: state.last_event,
                    last_event_ms: state.last_event_ms,
                },
                now_ms,
                report_interval,
            )
            .short_name();
            *counts.entry(status).or_default() += 1;
            let key = (status, intern(&device.department), intern(&device.class));
            *fleet.entry(key).or_default() += 1;
        })?;
        let mut by_index = vec![String::new(); names.len()];
        for (name, i) in names {
            by_index[i] = name;
        }
        // Cleared first, so a department or class that has no devices any
        // more disappears instead of keeping its last count.
        self.fleet_devices.clear();
        for ((status, department, class), n) in fleet {
            self.fleet_devices
                .get_or_create(&FleetLabels {
                    status,
                    department: by_index[department].clone(),
                    class: by_index[class].clone(),
                })
                .set(n);
        }
        for (status, n) in counts {
            self.devices.get_or_create(&StatusLabel { status }).set(n);
        }
        *counted_at = Some(Instant::now());
        Ok(())
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Registration, Store, TokenRecord};

    async fn register(store: &Store, id: &str, department: &str, class: &str) {
        let registration = Registration {
            serial: format!("SN-{id}"),
            department: department.into(),
            class: class.into(),
            ..Default::default()
        };
        let token = TokenRecord {
            device_id: String::new(),
            secret_sha256: "00".into(),
            created_at_ms: 1,
            expires_at_ms: 2,
            used_at_ms: 0,
        };
        store
            .register(registration, id.into(), format!("t-{id}"), token)
            .await
            .unwrap();
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[tokio::test]
    async fn fleet_gauges_count_by_group_and_are_recounted_only_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        for (id, department, class) in [
            ("d1", "it", "server"),
            ("d2", "it", "server"),
            ("d3", "hr", "laptop"),
        ] {
            register(&store, id, department, class).await;
        }
        store.revoke("d3", 5).unwrap();
        let metrics = Metrics::default();
        let interval = Duration::from_secs(60);
        metrics.refresh_fleet_gauges(&store, 10, interval).unwrap();
        let text = metrics.encode();
        assert_eq!(
            line(
                &text,
                r#"vakt_collector_fleet_devices{status="never-seen",department="it",class="server"}"#
            ),
            Some(
                r#"vakt_collector_fleet_devices{status="never-seen",department="it",class="server"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"vakt_collector_fleet_devices{status="revoked",department="hr",class="laptop"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"vakt_collector_devices{status="never-seen"} 2"#));
        assert!(text.contains(r#"vakt_collector_devices{status="online"} 0"#));

        // A new device within FLEET_GAUGES_MAX_AGE: the cached counts stand.
        register(&store, "d4", "it", "server").await;
        metrics.refresh_fleet_gauges(&store, 20, interval).unwrap();
        assert!(
            metrics
                .encode()
                .contains(r#"vakt_collector_devices{status="never-seen"} 2"#)
        );
        // Once they are stale, a scrape recounts.
        *metrics.fleet_counted_at.lock().unwrap() = None;
        metrics.refresh_fleet_gauges(&store, 30, interval).unwrap();
        assert!(
            metrics
                .encode()
                .contains(r#"vakt_collector_devices{status="never-seen"} 3"#)
        );
    }
}
