//! `[notify]` in `collector.toml`: where notifications go and how hard the
//! collector tries.
//!
//! ```toml
//! [notify]
//! resend_interval = "1m"
//! [[notify.alertmanager]]
//! url = "http://127.0.0.1:9093"
//! [[notify.webhook]]
//! url = "https://hooks.example.org/vakt"
//! secret_file = "webhook.secret"
//! ```

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::humantime_serde_compat;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// How often alerts still firing are re-sent to Alertmanager (as
    /// Prometheus does), so it never resolves them on its own.
    #[serde(
        default = "default_resend_interval",
        with = "humantime_serde_compat",
        skip_serializing_if = "is_default_resend"
    )]
    pub resend_interval: Duration,
    /// Upper bound of the exponential backoff between delivery attempts.
    #[serde(
        default = "default_retry_max_backoff",
        with = "humantime_serde_compat",
        skip_serializing_if = "is_default_backoff"
    )]
    pub retry_max_backoff: Duration,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alertmanager: Vec<AlertmanagerConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook: Vec<WebhookConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL (`http://host:9093`); `/api/v2/alerts` is appended.
    pub url: String,
    /// Shown in logs and metrics; also keys the delivery progress, so changing
    /// it re-delivers what is queued. Defaults to `alertmanager:<url>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// PEM CA bundle for https (default: the system bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Full URL the JSON is POSTed to.
    pub url: String,
    /// File holding the HMAC-SHA256 secret (surrounding whitespace ignored).
    pub secret_file: PathBuf,
    /// Defaults to `webhook:<url>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
}

fn default_resend_interval() -> Duration {
    Duration::from_secs(60)
}
fn is_default_resend(d: &Duration) -> bool {
    *d == default_resend_interval()
}
fn default_retry_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn is_default_backoff(d: &Duration) -> bool {
    *d == default_retry_max_backoff()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl AlertmanagerConfig {
    pub fn receiver_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("alertmanager:{}", self.url))
    }
}

impl WebhookConfig {
    pub fn receiver_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("webhook:{}", self.url))
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            resend_interval: default_resend_interval(),
            retry_max_backoff: default_retry_max_backoff(),
            alertmanager: Vec::new(),
            webhook: Vec::new(),
        }
    }
}

impl NotifyConfig {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Every receiver's name, in configuration order. A notification leaves
    /// the outbox once each of these has taken it.
    pub fn receiver_names(&self) -> Vec<String> {
        self.alertmanager
            .iter()
            .map(AlertmanagerConfig::receiver_name)
            .chain(self.webhook.iter().map(WebhookConfig::receiver_name))
            .collect()
    }

    /// Makes relative file paths relative to the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let files = self
            .alertmanager
            .iter_mut()
            .filter_map(|a| a.ca_file.as_mut())
            .chain(
                self.webhook
                    .iter_mut()
                    .flat_map(|w| std::iter::once(&mut w.secret_file).chain(w.ca_file.as_mut())),
            );
        for p in files {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.resend_interval < Duration::from_secs(1) {
            bail!("notify.resend_interval must be at least 1s");
        }
        if self.retry_max_backoff < Duration::from_millis(100) {
            bail!("notify.retry_max_backoff must be at least 100ms");
        }
        for (kind, url) in self
            .alertmanager
            .iter()
            .map(|a| ("alertmanager", &a.url))
            .chain(self.webhook.iter().map(|w| ("webhook", &w.url)))
        {
            super::http::Target::parse(url)
                .with_context(|| format!("notify.{kind} url {url:?}"))?;
        }
        let names = self.receiver_names();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                bail!("notify: two receivers are both named {name:?}; give one a `name`");
            }
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                bail!("notify: receiver name {name:?} must be 1–200 printable characters");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_receivers_and_defaults() {
        let config: NotifyConfig = toml::from_str(
            "[[alertmanager]]\nurl = \"http://127.0.0.1:9093\"\n\
             [[webhook]]\nurl = \"https://h.example/x\"\nsecret_file = \"s\"\nname = \"ops\"\n",
        )
        .unwrap();
        assert_eq!(config.resend_interval, Duration::from_secs(60));
        assert_eq!(
            config.receiver_names(),
            ["alertmanager:http://127.0.0.1:9093", "ops"]
        );
        config.validate().unwrap();
        assert!(NotifyConfig::default().is_empty());
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../../deploy/collector/collector.toml.example");
        let config: crate::config::CollectorConfig = toml::from_str(text).unwrap();
        config.notify.validate().unwrap();
        assert_eq!(config.notify.retry_max_backoff, Duration::from_secs(300));
        // And with the receivers uncommented.
        let uncommented = text
            .replace("\n#[[notify", "\n[[notify")
            .replace("\n#url", "\nurl");
        let uncommented = uncommented.replace("\n#secret_file", "\nsecret_file");
        let config: crate::config::CollectorConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(config.notify.receiver_names().len(), 2);
        config.notify.validate().unwrap();
    }

    #[test]
    fn refuses_bad_urls_and_duplicate_names() {
        let config: NotifyConfig = toml::from_str("[[alertmanager]]\nurl = \"ftp://x\"\n").unwrap();
        assert!(config.validate().is_err());
        let config: NotifyConfig = toml::from_str(
            "[[alertmanager]]\nurl = \"http://a:1\"\n[[alertmanager]]\nurl = \"http://a:1\"\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("both named"), "{err}");
    }
}
