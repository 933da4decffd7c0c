//! `collector.toml`: where the collector listens, where its credentials and
//! data live, and the policies it hands out. Relative paths are resolved
//! against the directory of the config file, so a data directory can be moved
//! as a whole.

use crate::alerts::notify::NotifyConfig;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7443";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9184";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// gRPC (TLS) address agents and vaktctl connect to.
    pub grpc_listen: SocketAddr,
    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    pub http_listen: SocketAddr,
    /// sled database directory.
    #[serde(default = "default_data")]
    pub data: PathBuf,
    #[serde(default = "default_ca_cert")]
    pub ca_cert: PathBuf,
    #[serde(default = "default_ca_key")]
    pub ca_key: PathBuf,
    #[serde(default = "default_server_cert")]
    pub server_cert: PathBuf,
    #[serde(default = "default_server_key")]
    pub server_key: PathBuf,
    /// Lifetime of device certificates; agents renew at 70–90 % of it.
    #[serde(default = "default_cert_lifetime", with = "humantime_serde_compat")]
    pub device_cert_lifetime: Duration,
    /// How long an enrollment token stays valid unless the registration says otherwise.
    #[serde(default = "default_token_ttl", with = "humantime_serde_compat")]
    pub token_ttl: Duration,
    /// The report interval pushed to agents.
    #[serde(default = "default_report_interval", with = "humantime_serde_compat")]
    pub report_interval: Duration,
    /// sled page cache. sled's memory use is a multiple of this, so keep it small.
    #[serde(default = "default_cache_bytes")]
    pub sled_cache_bytes: u64,
    /// Enrollment attempts per second allowed from one source address (and its burst).
    #[serde(default = "default_enroll_rate_per_address")]
    pub enroll_rate_per_address: f64,
    #[serde(default = "default_enroll_burst_per_address")]
    pub enroll_burst_per_address: f64,
    /// Enrollment attempts per second allowed from everyone together (and its burst).
    #[serde(default = "default_enroll_rate_global")]
    pub enroll_rate_global: f64,
    #[serde(default = "default_enroll_burst_global")]
    pub enroll_burst_global: f64,
    /// Tablet gateways: also accept a child registered (class tablet, without
    /// `--via`) in the reporting gateway's department. Off: only `--via`.
    #[serde(default)]
    pub gateway_children_by_department: bool,
    /// Alert notification receivers (Alertmanager, webhooks).
    #[serde(default, skip_serializing_if = "NotifyConfig::is_empty")]
    pub notify: NotifyConfig,
    /// Alert rules (TOML), merged over the built-in defaults; none: defaults only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_rules: Option<PathBuf>,
    /// Retention and compaction of telemetry (`[storage]`).
    #[serde(default)]
    pub storage: StorageConfig,
}

/// `[storage]`: how long raw samples and 5-minute rollups are kept, and how
/// often the background pass folds log records into chunks and applies it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default = "default_raw_retention", with = "humantime_serde_compat")]
    pub raw_retention: Duration,
    #[serde(default = "default_rollup_retention", with = "humantime_serde_compat")]
    pub rollup_retention: Duration,
    #[serde(default = "default_compact_interval", with = "humantime_serde_compat")]
    pub compact_interval: Duration,
    /// zstd-compress the hot database (log records, state) if it is created
    /// now (sled fixes this at creation): less disk, about half the store's
    /// ingest rate.
    #[serde(default)]
    pub compression: bool,
    /// zstd-compress the series database (chunks and rollups, written by the
    /// background fold) if it is created now: ~30 % less disk for the bulk
    /// of the data, at no cost to acknowledgements.
    #[serde(default = "default_series_compression")]
    pub series_compression: bool,
}

fn default_series_compression() -> bool {
    crate::store::sled_config::COMPRESS_SERIES
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            raw_retention: default_raw_retention(),
            rollup_retention: default_rollup_retention(),
            compact_interval: default_compact_interval(),
            compression: crate::store::sled_config::USE_COMPRESSION,
            series_compression: default_series_compression(),
        }
    }
}

fn default_raw_retention() -> Duration {
    Duration::from_secs(14 * 86_400)
}
fn default_rollup_retention() -> Duration {
    Duration::from_secs(400 * 86_400)
}
fn default_compact_interval() -> Duration {
    Duration::from_secs(600)
}

fn default_enroll_rate_per_address() -> f64 {
    2.0
}
fn default_enroll_burst_per_address() -> f64 {
    30.0
}
fn default_enroll_rate_global() -> f64 {
    50.0
}
fn default_enroll_burst_global() -> f64 {
    300.0
}

fn default_data() -> PathBuf {
    "data".into()
}
fn default_ca_cert() -> PathBuf {
    "ca.pem".into()
}
fn default_ca_key() -> PathBuf {
    "ca-key.pem".into()
}
fn default_server_cert() -> PathBuf {
    "server.pem".into()
}
fn default_server_key() -> PathBuf {
    "server-key.pem".into()
}
fn default_cert_lifetime() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_token_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_report_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_cache_bytes() -> u64 {
    32 * 1024 * 1024
}

impl CollectorConfig {
    pub fn new(grpc_listen: SocketAddr, http_listen: SocketAddr) -> Self {
        Self {
            grpc_listen,
            http_listen,
            data: default_data(),
            ca_cert: default_ca_cert(),
            ca_key: default_ca_key(),
            server_cert: default_server_cert(),
            server_key: default_server_key(),
            device_cert_lifetime: default_cert_lifetime(),
            token_ttl: default_token_ttl(),
            report_interval: default_report_interval(),
            sled_cache_bytes: default_cache_bytes(),
            enroll_rate_per_address: default_enroll_rate_per_address(),
            enroll_burst_per_address: default_enroll_burst_per_address(),
            enroll_rate_global: default_enroll_rate_global(),
            enroll_burst_global: default_enroll_burst_global(),
            gateway_children_by_department: false,
            notify: NotifyConfig::default(),
            alert_rules: None,
            storage: StorageConfig::default(),
        }
    }

    /// The store's settings from `sled_cache_bytes` and `[storage]`.
    pub fn storage_options(&self) -> crate::store::StorageOptions {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        crate::store::StorageOptions {
            cache_bytes: self.sled_cache_bytes,
            raw_retention_ms: ms(self.storage.raw_retention),
            rollup_retention_ms: ms(self.storage.rollup_retention),
            compress_new_database: self.storage.compression,
            compress_new_series: self.storage.series_compression,
        }
    }

    /// Reads the file and makes its relative paths absolute.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read collector config {}", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Some(p) = &mut config.alert_rules
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        for p in [
            &mut config.data,
            &mut config.ca_cert,
            &mut config.ca_key,
            &mut config.server_cert,
            &mut config.server_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.device_cert_lifetime < Duration::from_secs(60) {
            anyhow::bail!(
                "{}: device_cert_lifetime must be at least 60s",
                path.display()
            );
        }
        for (name, value) in [
            ("enroll_rate_per_address", config.enroll_rate_per_address),
            ("enroll_burst_per_address", config.enroll_burst_per_address),
            ("enroll_rate_global", config.enroll_rate_global),
            ("enroll_burst_global", config.enroll_burst_global),
        ] {
            if !(value.is_finite() && value > 0.0) {
                anyhow::bail!("{}: {name} must be a positive number", path.display());
            }
        }
        config.notify.resolve_paths(base);
        config
            .notify
            .validate()
            .with_context(|| format!("{}: [notify]", path.display()))?;
        let storage = &config.storage;
        if storage.raw_retention < Duration::from_secs(3600)
            || storage.rollup_retention < storage.raw_retention
        {
            anyhow::bail!(
                "{}: [storage] raw_retention must be at least 1h and rollup_retention at least raw_retention",
                path.display()
            );
        }
        if storage.compact_interval < Duration::from_secs(1) {
            anyhow::bail!(
                "{}: [storage] compact_interval must be at least 1s",
                path.display()
            );
        }
        if config.report_interval.is_zero() {
            anyhow::bail!("{}: report_interval must be positive", path.display());
        }
        Ok(config)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(self)?)
    }
}

/// Durations as humantime strings ("30s", "7d") in TOML.
pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CollectorConfig::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        config.device_cert_lifetime = Duration::from_secs(60);
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, config.to_toml().unwrap()).unwrap();
        let loaded = CollectorConfig::load(&path).unwrap();
        assert_eq!(loaded.ca_cert, dir.path().join("ca.pem"));
        assert_eq!(loaded.device_cert_lifetime, Duration::from_secs(60));
        assert_eq!(loaded.token_ttl, Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn the_storage_section_has_defaults_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        let base = "grpc_listen = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"\n";
        std::fs::write(&path, base).unwrap();
        let loaded = CollectorConfig::load(&path).unwrap();
        assert_eq!(loaded.storage, StorageConfig::default());
        assert_eq!(loaded.storage_options().raw_retention_ms, 14 * 86_400_000);
        std::fs::write(
            &path,
            format!("{base}[storage]\nraw_retention = \"30days\"\n"),
        )
        .unwrap();
        let loaded = CollectorConfig::load(&path).unwrap();
        assert_eq!(
            loaded.storage.raw_retention,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            loaded.storage.rollup_retention,
            Duration::from_secs(400 * 86_400)
        );
        assert!(!loaded.storage_options().compress_new_database);
        assert!(loaded.storage_options().compress_new_series);
        std::fs::write(
            &path,
            format!("{base}[storage]\ncompression = true\nseries_compression = false\n"),
        )
        .unwrap();
        let loaded = CollectorConfig::load(&path).unwrap();
        assert!(loaded.storage_options().compress_new_database);
        assert!(!loaded.storage_options().compress_new_series);
        std::fs::write(
            &path,
            format!("{base}[storage]\nraw_retention = \"500days\"\n"),
        )
        .unwrap();
        let err = format!("{:#}", CollectorConfig::load(&path).unwrap_err());
        assert!(err.contains("rollup_retention"), "{err}");
        let example = include_str!("../../deploy/collector/collector.toml.example");
        let example: CollectorConfig = toml::from_str(example).unwrap();
        assert_eq!(example.storage, StorageConfig::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        std::fs::write(
            &path,
            "grpc_listen = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"\ngrpc_lsiten = \"x\"\n",
        )
        .unwrap();
        let err = format!("{:#}", CollectorConfig::load(&path).unwrap_err());
        assert!(err.contains("grpc_lsiten"), "{err}");
    }
}
