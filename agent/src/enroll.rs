//! Enrollment: trade a one-time token for a device certificate. The key pair is
//! generated here and only the CSR leaves the machine.

use crate::state::{self, Enrollment};
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;
use vakt_proto::v1::{EnrollRequest, HardwareFacts, enrollment_client::EnrollmentClient};

pub struct EnrollOptions {
    /// `https://host:port`
    pub collector: String,
    /// CA that signs the collector's server certificate.
    pub ca_file: PathBuf,
    pub token: String,
    pub state_dir: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Enrolled {
    pub device_id: String,
    pub certificate_not_after_unix_ms: i64,
}

/// Refuses to replace an existing enrollment; see [`enroll_with`] for `--force`.
pub async fn enroll(opts: &EnrollOptions) -> anyhow::Result<Enrolled> {
    enroll_with(opts, false, &crate::config::Paths::default()).await
}

/// `force` replaces an existing enrollment; `paths` are where the hardware facts
/// are read (fixture trees in tests).
pub async fn enroll_with(
    opts: &EnrollOptions,
    force: bool,
    paths: &crate::config::Paths,
) -> anyhow::Result<Enrolled> {
    let dir = &opts.state_dir;
    let token = opts.token.trim();
    anyhow::ensure!(!token.is_empty(), "the enrollment token is empty");
    if !force && let Ok(existing) = Enrollment::load(dir) {
        anyhow::bail!(
            "already enrolled as device {} with {} (state directory {}); pass --force to enroll again",
            existing.device_id,
            existing.collector,
            dir.display()
        );
    }
    let ca_pem = std::fs::read(&opts.ca_file)
        .with_context(|| format!("cannot read CA file {}", opts.ca_file.display()))?;
    let endpoint = crate::transport::endpoint(&opts.collector, &ca_pem, None)
        .with_context(|| format!("CA file {}", opts.ca_file.display()))?
        .timeout(Duration::from_secs(30));

    state::create_dir(dir)?;
    if force {
        // The old enrollment is given up now: its certificate will not match the new key.
        let _ = std::fs::remove_file(state::enrollment_path(dir));
    }
    let key = rcgen::KeyPair::generate().context("cannot generate a device key")?;
    let csr_pem = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .context("cannot build the certificate signing request")?;
    // On disk before the request, so that a certificate the collector issues is
    // never without its key.
    state::write_atomic(
        &state::key_path(dir),
        key.serialize_pem().as_bytes(),
        0o600,
        true,
    )?;

    let request = EnrollRequest {
        token: token.to_owned(),
        csr_pem,
        hardware: Some(hardware_facts(paths)),
    };
    vakt_proto::validate::enroll_request(&request)
        .map_err(|e| anyhow::anyhow!("enrollment request is invalid: {e}"))?;

    let channel = crate::transport::connect(&endpoint)
        .await
        .with_context(|| format!("cannot connect to collector {}", opts.collector))?;
    let response = EnrollmentClient::new(channel)
        .enroll(request)
        .await
        .map_err(|status| explain(&status, &opts.collector))?
        .into_inner();

    vakt_proto::validate::device_id(&response.device_id)
        .map_err(|e| anyhow::anyhow!("collector returned a bad device id: {e}"))?;
    let certs = vakt_proto::identity::parse_certificates_pem(response.certificate_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("collector returned a bad certificate: {e}"))?;
    let not_after = certs
        .first()
        .and_then(|c| vakt_proto::identity::certificate_facts(c).ok())
        .map_or(response.certificate_not_after_unix_ms, |f| {
            f.not_after_unix_ms
        });
    let ca_chain = if response.ca_chain_pem.trim().is_empty() {
        // Nothing returned: keep trusting the CA the operator gave us.
        ca_pem
    } else {
        vakt_proto::identity::parse_certificates_pem(response.ca_chain_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("collector returned a bad CA chain: {e}"))?;
        response.ca_chain_pem.into_bytes()
    };

    state::write_atomic(
        &state::cert_path(dir),
        response.certificate_pem.as_bytes(),
        0o600,
        true,
    )?;
    state::write_atomic(&state::ca_path(dir), &ca_chain, 0o644, true)?;
    let enrollment = Enrollment {
        device_id: response.device_id.clone(),
        collector: opts.collector.clone(),
        settings: response
            .settings
            .as_ref()
            .map(state::Settings::from)
            .unwrap_or_default(),
        certificate_not_after_unix_ms: not_after,
        enrolled_at_unix_ms: vakt_proto::now_unix_ms(),
    };
    // Last, because its presence is what marks the state directory as enrolled.
    enrollment.save(dir)?;
    // A new identity starts a new sequence; leftovers from a previous enrollment
    // would be attributed to this device.
    reset_delivery_state(dir)?;
    tracing::info!(device_id = %enrollment.device_id, "enrolled");
    Ok(Enrolled {
        device_id: enrollment.device_id,
        certificate_not_after_unix_ms: not_after,
    })
}

fn reset_delivery_state(dir: &std::path::Path) -> anyhow::Result<()> {
    let spool = state::spool_dir(dir);
    if spool.exists() {
        std::fs::remove_dir_all(&spool)
            .with_context(|| format!("cannot clear old spool {}", spool.display()))?;
    }
    for path in [state::sequence_path(dir), state::delivery_path(dir)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(())
}

/// What the device can tell the collector about itself, to match the
/// registration an operator made (serial, product UUID or machine-id).
pub fn hardware_facts(paths: &crate::config::Paths) -> HardwareFacts {
    let dmi = crate::collect::dmi_facts(&paths.sysfs);
    let (os_name, os_version) = crate::collect::os_release(&paths.rootfs).unwrap_or_default();
    let clean = |s: String| crate::collect::clean_text(&s, vakt_proto::validate::MAX_TEXT_BYTES);
    HardwareFacts {
        serial: clean(dmi.serial),
        product_uuid: clean(dmi.product_uuid),
        machine_id: clean(crate::collect::machine_id(paths)),
        hostname: clean(crate::collect::hostname(paths)),
        os_name: clean(os_name),
        os_version: clean(os_version),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn explain(status: &tonic::Status, collector: &str) -> anyhow::Error {
    use tonic::Code;
    let msg = status.message();
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied | Code::NotFound => {
            anyhow::anyhow!("collector refused the token: {msg}")
        }
        Code::FailedPrecondition | Code::AlreadyExists => {
            anyhow::anyhow!("collector refused the enrollment: {msg}")
        }
        Code::InvalidArgument => anyhow::anyhow!("collector rejected the request: {msg}"),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => anyhow::anyhow!(
            "cannot reach collector {collector}: {}",
            crate::transport::status_line(status)
        ),
        _ => anyhow::anyhow!(
            "enrollment failed: {}",
            crate::transport::status_line(status)
        ),
    }
}
