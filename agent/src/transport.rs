//! TLS channels to the collector and the backoff between attempts.

use anyhow::Context;
use rand::Rng;
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An endpoint for `url` that trusts only `ca_pem` and, for telemetry, presents
/// the device certificate. The TLS name is the URL's host, so a collector
/// addressed by IP (127.0.0.1 in quickstart) needs that IP in its certificate.
pub fn endpoint(url: &str, ca_pem: &[u8], identity: Option<Identity>) -> anyhow::Result<Endpoint> {
    anyhow::ensure!(
        url.starts_with("https://"),
        "collector URL {url:?} must start with https://"
    );
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid collector URL {url:?}"))?;
    let host = endpoint
        .uri()
        .host()
        .with_context(|| format!("collector URL {url:?} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    vakt_proto::identity::parse_certificates_pem(ca_pem).map_err(|e| anyhow::anyhow!("CA: {e}"))?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Ok(endpoint
        .tls_config(tls)
        .context("invalid TLS configuration")?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Notices a collector that vanished without closing the connection
        // (power loss, network partition) instead of waiting for TCP to give up.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// The device's mTLS identity from the state directory.
pub fn device_identity(state_dir: &Path) -> anyhow::Result<Identity> {
    let cert_path = crate::state::cert_path(state_dir);
    let key_path = crate::state::key_path(state_dir);
    let cert = std::fs::read(&cert_path)
        .with_context(|| format!("cannot read device certificate {}", cert_path.display()))?;
    let key = std::fs::read(&key_path)
        .with_context(|| format!("cannot read device key {}", key_path.display()))?;
    vakt_proto::identity::parse_certificates_pem(&cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
    Ok(Identity::from_pem(cert, key))
}

pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<Channel> {
    endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
}

/// tonic's transport errors say "transport error" and keep the reason (refused,
/// certificate not trusted, ...) in their sources; operators need the reason.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// A status as one line, with the transport reason when there is one.
pub fn status_line(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut line = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = status.source() {
        line.push_str(": ");
        line.push_str(&error_chain(source));
    }
    line
}

/// Exponential backoff with full jitter: each wait is uniform in
/// [0, min(cap, base·2^attempt)], so a fleet that lost its collector at the same
/// moment does not come back at the same moment.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn endpoint_refuses_plain_http_and_bad_ca() {
        assert!(endpoint("http://127.0.0.1:1", b"", None).is_err());
        let err = endpoint("https://127.0.0.1:7443", b"not a pem", None).unwrap_err();
        assert!(format!("{err:#}").contains("CA"));
    }
}
