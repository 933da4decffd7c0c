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
    let mut batch = batch::assemble(
        1,
        vakt_proto::now_unix_ms(),
        samples,
        hash,
        Some(inventory),
        Vec::new(),
        0,
    )?;
    // The full software list, as a first report to a collector would carry it.
    if let Some(software) = collector.software() {
        batch.software_hash = software.hash.clone();
        batch.software = Some(run::software_full(&software));
    }
    vakt_proto::validate::report_batch(&batch, batch.collected_at_unix_ms)
        .map_err(|e| anyhow::anyhow!("assembled report does not validate: {e}"))?;
    Ok(batch)
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

    /// `collect --once -o json` on a laptop fixture: the package list (count
    /// and packages) and the battery with its design capacity.
    #[test]
    fn collect_once_shows_packages_and_batteries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (file, content) in [
            ("type", "Battery"),
            ("manufacturer", "SMP"),
            ("energy_full_design", "50000000"),
        ] {
            collect::tests::write(
                root,
                &format!("sys/class/power_supply/BAT0/{file}"),
                content,
            );
        }
        collect::tests::write(
            root,
            "var/lib/dpkg/status",
            collect::software::tests::DPKG_STATUS_FIXTURE,
        );
        let config = config::AgentConfig {
            paths: config::Paths {
                procfs: "/proc".into(),
                sysfs: root.join("sys"),
                rootfs: root.to_path_buf(),
                etc_machine_id: root.join("etc/machine-id"),
            },
            ..Default::default()
        };
        let json = batch::to_json(&collect_once(&config).unwrap());
        assert_eq!(json["software"]["full"], true);
        assert_eq!(json["software"]["package_count"], 5);
        assert_eq!(json["software"]["packages"][2]["name"], "libc6");
        assert_eq!(json["software"]["packages"][2]["architecture"], "i386");
        assert_eq!(json["software_hash"].as_str().unwrap().len(), 64);
        let battery = &json["inventory"]["batteries"][0];
        assert_eq!(battery["name"], "BAT0");
        assert_eq!(battery["design_capacity_wh"], 50.0);
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
