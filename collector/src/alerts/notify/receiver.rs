//! A configured receiver, and what its answers mean for the outbox.

use super::alertmanager::Alertmanager;
use super::config::NotifyConfig;
use super::http::{HttpClient, Response, Target};
use super::webhook::{Webhook, read_secret};
use crate::alerts::notification::Notification;
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a delivery did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again later: the receiver is down, slow, overloaded, or
    /// misconfigured in a way ops can fix (401, 403, 404, 3xx).
    Transient(String),
    /// The receiver says this very payload is bad (400, 413, 422); sending it
    /// again cannot help, and would hold up everything queued behind it.
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(why) | Self::Refused(why) => f.write_str(why),
        }
    }
}

pub fn classify(response: &Response) -> Result<(), Failure> {
    let status = response.status;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&response.body);
    let body: String = body.trim().chars().take(300).collect();
    let why = format!("HTTP {status}: {body}");
    match status {
        400 | 413 | 422 => Err(Failure::Refused(why)),
        _ => Err(Failure::Transient(why)),
    }
}

pub enum Sink {
    Alertmanager(Alertmanager),
    Webhook(Webhook),
}

pub struct Receiver {
    pub name: String,
    pub sink: Sink,
    /// True while this receiver has nothing queued in the outbox. Alertmanager
    /// re-sends wait for it, so a re-send never overtakes a queued resolve.
    pub drained: AtomicBool,
}

impl Receiver {
    pub async fn deliver(&self, n: &Notification) -> Result<(), Failure> {
        match &self.sink {
            Sink::Alertmanager(am) => am.send(std::slice::from_ref(n)).await,
            Sink::Webhook(hook) => hook.send(n).await,
        }
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Release);
    }
}

/// Builds every configured receiver (reads secrets and CA files now, so a
/// bad config stops the collector at startup rather than at the first alert).
pub fn build(config: &NotifyConfig) -> Result<Vec<Receiver>> {
    let mut receivers = Vec::new();
    for am in &config.alertmanager {
        let target = Target::parse(&am.url)?;
        let client = HttpClient::new(&target, am.ca_file.as_deref(), am.timeout)
            .with_context(|| format!("notify.alertmanager {}", am.url))?;
        receivers.push(Receiver {
            name: am.receiver_name(),
            sink: Sink::Alertmanager(Alertmanager::new(target, client, config.resend_interval)),
            drained: AtomicBool::new(false),
        });
    }
    for hook in &config.webhook {
        let target = Target::parse(&hook.url)?;
        let client = HttpClient::new(&target, hook.ca_file.as_deref(), hook.timeout)
            .with_context(|| format!("notify.webhook {}", hook.url))?;
        let secret = read_secret(&hook.secret_file)?;
        receivers.push(Receiver {
            name: hook.receiver_name(),
            sink: Sink::Webhook(Webhook::new(target, client, secret)),
            drained: AtomicBool::new(false),
        });
    }
    Ok(receivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Result<(), Failure> {
        classify(&Response {
            status,
            body: b"nope".to_vec(),
        })
    }

    #[test]
    fn only_payload_errors_are_final() {
        assert_eq!(answer(200), Ok(()));
        assert_eq!(answer(204), Ok(()));
        assert!(matches!(answer(400), Err(Failure::Refused(_))));
        assert!(matches!(answer(422), Err(Failure::Refused(_))));
        for status in [301, 401, 403, 404, 408, 429, 500, 503] {
            assert!(
                matches!(answer(status), Err(Failure::Transient(_))),
                "{status}"
            );
        }
    }
}
