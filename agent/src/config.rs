//! The agent's configuration file (`/etc/vakt/agent.toml`). Every field is
//! optional: an enrolled agent runs with an empty file, taking the collector
//! address and CA from its enrollment state and its intervals from the collector.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the agent looks for its config when `run` is not given `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vakt/agent.toml";
/// Used when neither the config nor the collector names an interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_INVENTORY_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Collector URLs (`https://host:port`), tried in order for failover.
    /// Empty: the collector used at enrollment.
    pub collectors: Vec<String>,
    /// CA bundle that signs the collector's certificate. None: `state_dir/ca.pem`.
    pub ca: Option<PathBuf>,
    /// Collection and report interval. None: what the collector says, else 30 s.
    /// An explicit value is used at start; the collector may still change it later.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How often the inventory is re-read. None: what the collector says, else 1 h.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub inventory_interval: Option<Duration>,
    /// Upper bound on the unacknowledged-report spool; the oldest reports are
    /// dropped (and counted) beyond it.
    pub spool_max_bytes: u64,
    pub paths: Paths,
    /// Tablet gateway: `[[gateway.source]]` programs that list child devices.
    #[serde(skip_serializing_if = "crate::gateway::GatewayConfig::is_empty")]
    pub gateway: crate::gateway::GatewayConfig,
}

/// Roots the readers take their files from, so that tests (and containers, as
/// with node_exporter's `--path.*`) can point them at another tree.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Paths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
    pub etc_machine_id: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: "/".into(),
            etc_machine_id: "/etc/machine-id".into(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            collectors: Vec::new(),
            ca: None,
            interval: None,
            inventory_interval: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            paths: Paths::default(),
            gateway: crate::gateway::GatewayConfig::default(),
        }
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// The config `run` uses: the named file, else the default path if it exists,
    /// else built-in defaults.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(path) => Self::load(path),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    Self::load(default)
                } else {
                    Ok(Self::default())
                }
            }
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        for url in &self.collectors {
            anyhow::ensure!(
                url.starts_with("https://"),
                "collectors: {url:?} must be an https:// URL"
            );
        }
        for (name, value) in [
            ("interval", self.interval),
            ("inventory_interval", self.inventory_interval),
        ] {
            if let Some(d) = value {
                anyhow::ensure!(
                    d >= Duration::from_secs(1) && d <= Duration::from_secs(24 * 3600),
                    "{name}: must be between 1s and 24h"
                );
            }
        }
        anyhow::ensure!(
            self.spool_max_bytes >= 64 * 1024,
            "spool_max_bytes: must be at least 65536"
        );
        self.gateway.check()
    }
}

/// humantime strings ("30s", "1h 30m") for optional durations.
mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(AgentConfig::parse("").unwrap(), AgentConfig::default());
    }

    #[test]
    fn full_file_parses() {
        let config = AgentConfig::parse(
            r#"
            collectors = ["https://a.example:7443", "https://b.example:7443"]
            ca = "/var/lib/vakt-agent/ca.pem"
            interval = "30s"
            inventory_interval = "1h"
            spool_max_bytes = 67108864
            [paths]
            procfs = "/fixture/proc"
            sysfs = "/fixture/sys"
            rootfs = "/fixture"
            etc_machine_id = "/fixture/etc/machine-id"
            "#,
        )
        .unwrap();
        assert_eq!(config.collectors.len(), 2);
        assert_eq!(config.interval, Some(Duration::from_secs(30)));
        assert_eq!(config.inventory_interval, Some(Duration::from_secs(3600)));
        assert_eq!(config.paths.sysfs, PathBuf::from("/fixture/sys"));
        // Round trip, so that quickstart can write the config it runs with.
        let text = toml::to_string(&config).unwrap();
        assert_eq!(AgentConfig::parse(&text).unwrap(), config);
    }

    #[test]
    fn mistakes_are_refused_with_the_field_named() {
        for (text, needle) in [
            ("intervall = \"30s\"", "intervall"),
            ("interval = \"soon\"", "soon"),
            ("interval = \"0s\"", "interval"),
            ("collectors = [\"http://plain:80\"]", "https://"),
            ("[paths]\nprocs = \"/p\"", "procs"),
            ("spool_max_bytes = 10", "spool_max_bytes"),
        ] {
            let err = format!("{:#}", AgentConfig::parse(text).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
