//! Certificate renewal over mTLS, at 70–90 % of the certificate's lifetime.
//! The jitter spreads a fleet enrolled on the same day over several days of
//! renewals instead of one burst.

use crate::state::{self, Enrollment};
use anyhow::Context;
use rand::Rng;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Endpoint;
use vakt_proto::v1::{RenewCertificateRequest, telemetry_client::TelemetryClient};

/// Validity of the certificate in `state_dir`, as (not_before, not_after) in Unix ms.
pub fn certificate_validity(state_dir: &Path) -> anyhow::Result<(i64, i64)> {
    let path = state::cert_path(state_dir);
    let certs = vakt_proto::identity::load_certificates_pem(&path)?;
    let first = certs
        .first()
        .with_context(|| format!("{} holds no certificate", path.display()))?;
    let facts = vakt_proto::identity::certificate_facts(first)?;
    Ok((facts.not_before_unix_ms, facts.not_after_unix_ms))
}

/// How long from now until the certificate should be renewed.
pub fn delay_until_renewal(not_before_ms: i64, not_after_ms: i64, now_ms: i64) -> Duration {
    let lifetime = (not_after_ms - not_before_ms).max(0);
    let fraction = rand::rng().random_range(0.70..0.90);
    let at = not_before_ms + (lifetime as f64 * fraction) as i64;
    Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0))
}

/// Gets a new certificate for a new key and installs both. Returns the new
/// certificate's not_after.
pub async fn renew(endpoint: &Endpoint, state_dir: &Path) -> anyhow::Result<i64> {
    let key = rcgen::KeyPair::generate().context("cannot generate a new device key")?;
    let csr_pem = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .context("cannot build the certificate signing request")?;
    let channel = crate::transport::connect(endpoint).await?;
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        TelemetryClient::new(channel).renew_certificate(RenewCertificateRequest { csr_pem }),
    )
    .await
    .context("collector did not answer the renewal in 30 s")?
    .map_err(|s| anyhow::anyhow!("renewal refused: {}", crate::transport::status_line(&s)))?
    .into_inner();
    let certs = vakt_proto::identity::parse_certificates_pem(response.certificate_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("collector returned a bad certificate: {e}"))?;
    let not_after = certs
        .first()
        .and_then(|c| vakt_proto::identity::certificate_facts(c).ok())
        .map_or(response.certificate_not_after_unix_ms, |f| {
            f.not_after_unix_ms
        });

    // Both new files complete on disk before either replaces the old pair; see
    // state::recover_renewal for how a crash in between is finished.
    let key_new = state_dir.join("key.pem.new");
    let cert_new = state_dir.join("cert.pem.new");
    state::write_atomic(&key_new, key.serialize_pem().as_bytes(), 0o600, true)?;
    state::write_atomic(&cert_new, response.certificate_pem.as_bytes(), 0o600, true)?;
    std::fs::rename(&key_new, state::key_path(state_dir)).context("cannot install new key")?;
    std::fs::rename(&cert_new, state::cert_path(state_dir))
        .context("cannot install new certificate")?;
    state::sync_dir(state_dir).context("cannot sync state directory")?;

    if vakt_proto::identity::parse_certificates_pem(response.ca_chain_pem.as_bytes()).is_ok() {
        state::write_atomic(
            &state::ca_path(state_dir),
            response.ca_chain_pem.as_bytes(),
            0o644,
            true,
        )?;
    }
    let mut enrollment = Enrollment::load(state_dir)?;
    enrollment.certificate_not_after_unix_ms = not_after;
    enrollment.save(state_dir)?;
    Ok(not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_70_and_90_percent() {
        let day = 24 * 3600 * 1000;
        for _ in 0..100 {
            let d = delay_until_renewal(0, 30 * day, 0).as_millis() as i64;
            assert!((21 * day..=27 * day).contains(&d), "{d}");
        }
        assert_eq!(delay_until_renewal(0, 10, 1_000), Duration::ZERO);
    }
}
