//! The collector's own Prometheus metrics (served on the HTTP endpoint).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
