//! The Vakt agent: collects health and inventory, keeps every report in a
//! crash-safe spool until the collector acknowledges it, and reports over one
//! mTLS gRPC stream.
//!
//! The binary (`vakt-agent`) is a thin CLI over this library; the collector's
//! `quickstart` calls [`enroll::enroll`] and [`run`] in-process.
#![forbid(unsafe_code)]

pub mod batch;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod gateway;
pub mod renew;
mod run;
pub mod service;
pub mod sleep;
pub mod spool;
pub mod state;
pub mod status;
pub mod transport;

pub use run::run;

use std::time::Duration;

/// How long `collect_once` waits between its two CPU readings.
const CPU_SAMPLE_WINDOW: Duration = Duration::from_millis(250);

/// The batch the agent would send now: health samples and the full inventory,
/// validated exactly as the collector will validate it. Blocks for about a
/// quarter of a second to measure CPU utilization. The sequence is a placeholder
/// (1): real sequences belong to the running agent's state directory.
pub fn collect_once(config: &config::AgentConfig) -> anyhow::Result<vakt_proto::v1::ReportBatch> {
    let mut collector = collect::Collector::new(&config.paths)?;
    std::thread::sleep(CPU_SAMPLE_WINDOW);
    let samples = collector.health();
    let inventory = collector.inventory();
    let hash = vakt_proto::inventory_hash(&inventory);
    batch::assemble(
        1,
        vakt_proto::now_unix_ms(),
        samples,
        hash,
        Some(inventory),
        Vec::new(),
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quickstart spawns `run` on a multi-threaded runtime.
    #[test]
    fn run_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let fut = run(
            config::AgentConfig::default(),
            std::path::PathBuf::from("/nonexistent"),
            std::future::pending(),
        );
        assert_send(&fut);
    }

    #[test]
    fn collect_once_passes_validation_on_this_machine() {
        let batch = collect_once(&config::AgentConfig::default()).unwrap();
        let now = vakt_proto::now_unix_ms();
        assert_eq!(vakt_proto::validate::report_batch(&batch, now), Ok(()));
        let metrics: std::collections::HashSet<&str> =
            batch.samples.iter().map(|s| s.metric.as_str()).collect();
        for expected in [
            "system.cpu.utilization",
            "system.cpu.load_average.1m",
            "system.memory.usage",
            "system.memory.utilization",
            "system.paging.usage",
            "system.uptime",
            "system.processes.count",
        ] {
            assert!(
                metrics.contains(expected),
                "{expected} missing: {metrics:?}"
            );
        }
        assert!(batch.samples.iter().all(|s| s.value.is_finite()));
        let inventory = batch.inventory.as_ref().unwrap();
        assert_eq!(batch.inventory_hash, vakt_proto::inventory_hash(inventory));
        assert!(!inventory.hostname.is_empty());
        assert!(inventory.cpu_logical_cores > 0);
        // The JSON view is what `collect --once -o json` prints.
        let json = batch::to_json(&batch);
        assert_eq!(json["sequence"], 1);
        assert!(json["samples"].as_array().unwrap().len() > 5);
    }
}
