//! `Enrollment.Enroll`: a one-time token and a CSR in, a device certificate out.

use super::SharedRef;
use crate::error::Error;
use crate::metrics::ResultLabel;
use crate::tokens;
use tonic::{Request, Response, Status};
use vakt_proto::v1::enrollment_server::Enrollment;
use vakt_proto::v1::{self, AgentSettings, EnrollRequest, EnrollResponse};
use vakt_proto::{now_unix_ms, validate};

pub struct EnrollmentService {
    pub shared: SharedRef,
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let result = self.enroll_inner(request.into_inner()).await;
        let label = match &result {
            Ok(_) => "accepted",
            Err(Error::Unauthenticated(_)) => "bad_token",
            Err(Error::PermissionDenied(_)) => "hardware_mismatch",
            Err(_) => "error",
        };
        self.shared
            .metrics
            .enrollments
            .get_or_create(&ResultLabel { result: label })
            .inc();
        match &result {
            Ok(resp) => tracing::info!(device_id = %resp.device_id, ?peer, "device enrolled"),
            Err(e) => tracing::warn!(error = %e, ?peer, "enrollment refused"),
        }
        Ok(Response::new(result?))
    }
}

impl EnrollmentService {
    async fn enroll_inner(&self, req: EnrollRequest) -> Result<EnrollResponse, Error> {
        validate::enroll_request(&req)?;
        let shared = &self.shared;
        let now = now_unix_ms();
        let refused = || {
            Error::Unauthenticated(
                "the enrollment token is unknown, already used or expired".into(),
            )
        };
        let (token_id, secret) = tokens::parse(&req.token).ok_or_else(refused)?;
        let token = shared.store.token(token_id)?.ok_or_else(refused)?;
        if !tokens::secret_matches(secret, &token.secret_sha256)
            || token.used_at_ms != 0
            || token.expires_at_ms <= now
        {
            return Err(refused());
        }
        let device = shared.store.device(&token.device_id)?.ok_or_else(refused)?;
        let hardware = req.hardware.unwrap_or_default();
        check_binding(&device, &hardware)?;
        let signed = shared
            .ca
            .sign_device_csr(
                &req.csr_pem,
                &device.device_id,
                shared.config.device_cert_lifetime,
            )
            .map_err(|e| {
                Error::Invalid(vakt_proto::ValidationError {
                    field: "csr_pem".into(),
                    reason: e.to_string(),
                })
            })?;
        let enrolled = shared
            .store
            .complete_enrollment(token_id, now, |d| {
                d.enrolled_at_ms = now;
                d.enrolled_hostname.clone_from(&hardware.hostname);
                d.cert_serial.clone_from(&signed.serial_hex);
                d.cert_not_after_ms = signed.not_after_unix_ms;
            })?
            .ok_or_else(refused)?;
        shared.store.durable().await?;
        Ok(EnrollResponse {
            device_id: enrolled.device_id,
            certificate_pem: signed.cert_pem,
            ca_chain_pem: shared.ca.ca_pem().to_owned(),
            settings: Some(AgentSettings {
                report_interval_seconds: u32::try_from(shared.config.report_interval.as_secs())
                    .unwrap_or(u32::MAX),
                inventory_interval_seconds: 0,
            }),
            certificate_not_after_unix_ms: signed.not_after_unix_ms,
        })
    }
}

/// A registration that names hardware is only satisfied by that hardware; an
/// unknown (unreadable) identifier never satisfies it.
fn check_binding(device: &crate::store::DeviceRecord, hw: &v1::HardwareFacts) -> Result<(), Error> {
    for (what, registered, reported) in [
        ("serial", &device.serial, &hw.serial),
        ("product UUID", &device.product_uuid, &hw.product_uuid),
        ("machine id", &device.machine_id, &hw.machine_id),
    ] {
        if registered.is_empty() {
            continue;
        }
        if reported.trim().is_empty() {
            return Err(Error::PermissionDenied(format!(
                "this token is bound to a {what}, and this device cannot read its {what}"
            )));
        }
        if !registered.trim().eq_ignore_ascii_case(reported.trim()) {
            return Err(Error::PermissionDenied(format!(
                "this token is bound to another device: the {what} does not match the registration"
            )));
        }
    }
    Ok(())
}
