//! `Enrollment.Enroll`: a one-time token and a CSR in, a device certificate out.
//! Rate limited per source address and globally; every attempt is audited.

use super::SharedRef;
use crate::ca::CsrError;
use crate::error::Error;
use crate::metrics::ResultLabel;
use crate::ratelimit::Refusal;
use crate::store::{AuditEntry, DeviceRecord, Store};
use crate::tokens;
use tonic::{Request, Response, Status};
use vakt_proto::v1::enrollment_server::Enrollment;
use vakt_proto::v1::{self, AgentSettings, EnrollRequest, EnrollResponse};
use vakt_proto::{now_unix_ms, validate};

pub struct EnrollmentService {
    pub shared: SharedRef,
}

/// Why an enrollment failed, for the audit log and the device's flags.
struct Refused {
    error: Error,
    /// The device the token belonged to, once the token was proven genuine.
    device_id: Option<String>,
    mismatch: bool,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused {
            error,
            device_id: None,
            mismatch: false,
        }
    }
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Self {
        Error::from(e).into()
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let shared = &self.shared;
        if let Err(refusal) = shared.enroll_limiter.check(peer.map(|a| a.ip())) {
            self.count("throttled");
            let scope = match refusal {
                Refusal::Address => "from this address",
                Refusal::Global => "across all addresses",
            };
            // Throttled attempts are counted, not audited one by one: a flood
            // must not be able to fill the audit log.
            return Err(Status::resource_exhausted(format!(
                "too many enrollment attempts {scope}; retry later"
            )));
        }
        let peer_text = peer.map(|a| a.to_string()).unwrap_or_default();
        let req = request.into_inner();
        let token_id = tokens::parse(&req.token).map(|(id, _)| id.to_owned());
        let hostname = req
            .hardware
            .as_ref()
            .map(|h| h.hostname.clone())
            .unwrap_or_default();
        match self.enroll_inner(req).await {
            Ok(response) => {
                self.count("accepted");
                shared.audit(AuditEntry {
                    at_ms: now_unix_ms(),
                    actor: "anonymous (one-time token)".into(),
                    action: "enroll.accepted".into(),
                    target: response.device_id.clone(),
                    outcome: "ok".into(),
                    detail: format!("hostname {hostname:?}"),
                    peer: peer_text,
                })?;
                shared.store.durable().await.map_err(Error::from)?;
                // A re-enrolled device's previous agent instance (if any is
                // still connected) must not keep reporting under this identity.
                let _ = shared.revocations.send(response.device_id.clone());
                Ok(Response::new(response))
            }
            Err(refused) => {
                self.count(if refused.mismatch {
                    "hardware_mismatch"
                } else {
                    "refused"
                });
                let action = if refused.mismatch {
                    "enroll.mismatch"
                } else {
                    "enroll.refused"
                };
                let target = refused
                    .device_id
                    .clone()
                    .or(token_id.map(|id| format!("token {id}")))
                    .unwrap_or_default();
                shared.audit(AuditEntry {
                    at_ms: now_unix_ms(),
                    actor: "anonymous (one-time token)".into(),
                    action: action.into(),
                    target,
                    outcome: "refused".into(),
                    detail: format!("{} (hostname {hostname:?})", refused.error),
                    peer: peer_text,
                })?;
                if let (true, Some(device_id)) = (refused.mismatch, &refused.device_id) {
                    shared
                        .flag_device(device_id, "enrollment-mismatch", refused.error.to_string())
                        .await?;
                }
                shared.store.durable().await.map_err(Error::from)?;
                Err(refused.error.into())
            }
        }
    }
}

impl EnrollmentService {
    fn count(&self, result: &'static str) {
        self.shared
            .metrics
            .enrollments
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    async fn enroll_inner(&self, req: EnrollRequest) -> Result<EnrollResponse, Refused> {
        validate::enroll_request(&req).map_err(Error::from)?;
        let shared = &self.shared;
        let now = now_unix_ms();
        let refused = || {
            Refused::from(Error::Unauthenticated(
                "the enrollment token is unknown, already used or expired".into(),
            ))
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
        if let Err(error) = check_binding(&device, &hardware) {
            return Err(Refused {
                error,
                device_id: Some(device.device_id),
                mismatch: true,
            });
        }
        let signed = shared
            .ca
            .sign_device_csr(
                &req.csr_pem,
                &device.device_id,
                shared.config.device_cert_lifetime,
            )
            .map_err(|e| Refused {
                error: csr_error(e),
                device_id: Some(device.device_id.clone()),
                mismatch: false,
            })?;
        let enrolled = shared
            .store
            .complete_enrollment(token_id, now, |d| {
                d.enrolled_at_ms = now;
                d.enrolled_hostname.clone_from(&hardware.hostname);
                Store::record_certificate(d, &signed.serial_hex, signed.not_after_unix_ms);
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

pub fn csr_error(e: CsrError) -> Error {
    Error::Invalid(vakt_proto::ValidationError {
        field: "csr_pem".into(),
        reason: e.to_string(),
    })
}

/// A registration that names hardware is only satisfied by that hardware; an
/// unknown (unreadable) identifier never satisfies it.
fn check_binding(device: &DeviceRecord, hw: &v1::HardwareFacts) -> Result<(), Error> {
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
                "enrollment mismatch: this token is bound to a {what}, and this device cannot read its {what}"
            )));
        }
        if !registered.trim().eq_ignore_ascii_case(reported.trim()) {
            return Err(Error::PermissionDenied(format!(
                "enrollment mismatch: this token is bound to another device (the {what} {:?} is not the registered one)",
                reported.trim()
            )));
        }
    }
    Ok(())
}
