//! `Admin`: what ops staff and provisioning scripts call through `vaktctl`.
//! Every RPC is authorized by `authz` before anything else happens.

use super::{SharedRef, authorize, peer_of};
use crate::authz::AdminRpc;
use crate::error::Error;
use crate::fleet;
use crate::store::{AuditEntry, AuditFilter, Registration, TokenRecord};
use crate::tokens;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::{Request, Response, Status};
use vakt_proto::identity::Role;
use vakt_proto::v1::admin_server::Admin;
use vakt_proto::v1::{self, DeviceClass, DeviceStatus};
use vakt_proto::{now_unix_ms, validate};

pub struct AdminService {
    pub shared: SharedRef,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn register_device(
        &self,
        request: Request<v1::RegisterDeviceRequest>,
    ) -> Result<Response<v1::RegisterDeviceResponse>, Status> {
        let (who, role) = authorize(&request, AdminRpc::RegisterDevice)?;
        let peer = peer_of(&request);
        let req = request.into_inner();
        validate::register_device_request(&req).map_err(Error::from)?;
        let shared = &self.shared;
        let now = now_unix_ms();
        let (token, token_record) = new_token(shared.config.token_ttl, req.token_ttl_seconds, now);
        let expires_at_ms = token_record.expires_at_ms;
        let class = DeviceClass::try_from(req.class).unwrap_or(DeviceClass::Unspecified);
        let registration = Registration {
            serial: req.serial.trim().to_owned(),
            product_uuid: req.product_uuid.trim().to_owned(),
            machine_id: req.machine_id.trim().to_owned(),
            model: req.model,
            class: class.short_name().to_owned(),
            department: req.department,
            owner: req.owner,
            labels: req
                .labels
                .into_iter()
                .map(|a| (a.key, a.value))
                .collect::<BTreeMap<_, _>>(),
        };
        let new_id = format!("d-{}", hex::encode(rand::random::<[u8; 8]>()));
        let (record, created) = shared
            .store
            .register(registration, new_id, token.id.clone(), token_record)
            .await
            .map_err(Error::from)?;
        let identifiers = [
            ("serial", &record.serial),
            ("product-uuid", &record.product_uuid),
            ("machine-id", &record.machine_id),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
        shared.audit(AuditEntry {
            at_ms: now,
            actor: actor(&who, role),
            action: "device.register".into(),
            target: record.device_id.clone(),
            outcome: "ok".into(),
            detail: format!(
                "{} {}; new token {} expires {}",
                if created { "created" } else { "updated" },
                if identifiers.is_empty() {
                    "unbound".to_owned()
                } else {
                    identifiers
                },
                token.id,
                expires_at_ms
            ),
            peer,
        })?;
        shared.store.durable().await.map_err(Error::from)?;
        Ok(Response::new(v1::RegisterDeviceResponse {
            device_id: record.device_id,
            token: token.token,
            token_expires_at_unix_ms: expires_at_ms,
            created,
        }))
    }

    async fn list_devices(
        &self,
        request: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        authorize(&request, AdminRpc::ListDevices)?;
        let req = request.into_inner();
        validate::list_devices_request(&req).map_err(Error::from)?;
        let shared = &self.shared;
        let now = now_unix_ms();
        let class_filter = DeviceClass::try_from(req.class).unwrap_or(DeviceClass::Unspecified);
        let mut devices = Vec::new();
        for record in shared.store.devices().map_err(Error::from)? {
            if !req.department.is_empty() && record.department != req.department {
                continue;
            }
            if class_filter != DeviceClass::Unspecified && record.class != class_filter.short_name()
            {
                continue;
            }
            if !req
                .labels
                .iter()
                .all(|l| record.labels.get(&l.key) == Some(&l.value))
            {
                continue;
            }
            let state = shared
                .store
                .ingest_state(&record.device_id)
                .map_err(Error::from)?;
            let status = fleet::status(&record, &state, now, shared.config.report_interval);
            if req.status != DeviceStatus::Unspecified as i32 && status as i32 != req.status {
                continue;
            }
            let inventory = shared
                .store
                .inventory(&record.device_id)
                .map_err(Error::from)?;
            devices.push(fleet::device_view(
                &record,
                &state,
                inventory,
                now,
                shared.config.report_interval,
            ));
        }
        devices.sort_by(|a, b| {
            (a.hostname.is_empty(), &a.hostname, &a.device_id).cmp(&(
                b.hostname.is_empty(),
                &b.hostname,
                &b.device_id,
            ))
        });
        Ok(Response::new(v1::ListDevicesResponse { devices }))
    }

    async fn get_device(
        &self,
        request: Request<v1::GetDeviceRequest>,
    ) -> Result<Response<v1::Device>, Status> {
        authorize(&request, AdminRpc::GetDevice)?;
        let req = request.into_inner();
        validate::get_device_request(&req).map_err(Error::from)?;
        Ok(Response::new(self.device_view(&req.device)?))
    }

    async fn query_metrics(
        &self,
        request: Request<v1::QueryMetricsRequest>,
    ) -> Result<Response<v1::QueryMetricsResponse>, Status> {
        authorize(&request, AdminRpc::QueryMetrics)?;
        let req = request.into_inner();
        let now = now_unix_ms();
        validate::query_metrics_request(&req, now).map_err(Error::from)?;
        let shared = &self.shared;
        let device = shared
            .store
            .find_device(&req.device)
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("no device matches {:?}", req.device)))?;
        let until = if req.until_unix_ms == 0 {
            now
        } else {
            req.until_unix_ms
        };
        let mut series = shared
            .store
            .query_series_step(
                &device.device_id,
                &req.metric,
                &req.attributes,
                req.since_unix_ms,
                until,
                req.step_ms,
                validate::MAX_QUERY_POINTS,
            )
            .map_err(Error::from)?;
        if req.step_ms > 0 {
            for s in &mut series {
                s.points = average_per_step(&s.points, req.step_ms);
            }
        }
        Ok(Response::new(v1::QueryMetricsResponse {
            device_id: device.device_id,
            series,
        }))
    }

    async fn reenroll_device(
        &self,
        request: Request<v1::ReenrollDeviceRequest>,
    ) -> Result<Response<v1::RegisterDeviceResponse>, Status> {
        let (who, role) = authorize(&request, AdminRpc::ReenrollDevice)?;
        let peer = peer_of(&request);
        let req = request.into_inner();
        validate::reenroll_device_request(&req).map_err(Error::from)?;
        let shared = &self.shared;
        let device = self.find(&req.device)?;
        if device.revoked_at_ms != 0 {
            return Err(Status::failed_precondition(format!(
                "device {} is revoked; register the hardware again to give it a new identity",
                device.device_id
            )));
        }
        let now = now_unix_ms();
        let (token, token_record) = new_token(shared.config.token_ttl, req.token_ttl_seconds, now);
        let expires_at_ms = token_record.expires_at_ms;
        shared
            .store
            .reissue_token(&device.device_id, &token.id, token_record)
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("no device matches {:?}", req.device)))?;
        shared.audit(AuditEntry {
            at_ms: now,
            actor: actor(&who, role),
            action: "device.reenroll".into(),
            target: device.device_id.clone(),
            outcome: "ok".into(),
            detail: format!("new token {} expires {expires_at_ms}", token.id),
            peer,
        })?;
        shared.store.durable().await.map_err(Error::from)?;
        Ok(Response::new(v1::RegisterDeviceResponse {
            device_id: device.device_id,
            token: token.token,
            token_expires_at_unix_ms: expires_at_ms,
            created: false,
        }))
    }

    async fn revoke_device(
        &self,
        request: Request<v1::RevokeDeviceRequest>,
    ) -> Result<Response<v1::RevokeDeviceResponse>, Status> {
        let (who, role) = authorize(&request, AdminRpc::RevokeDevice)?;
        let peer = peer_of(&request);
        let req = request.into_inner();
        validate::revoke_device_request(&req).map_err(Error::from)?;
        let shared = &self.shared;
        let device = self.find(&req.device)?;
        let now = now_unix_ms();
        let revoked = shared
            .store
            .revoke(&device.device_id, now)
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("no device matches {:?}", req.device)))?;
        shared.audit(AuditEntry {
            at_ms: now,
            actor: actor(&who, role),
            action: "device.revoke".into(),
            target: revoked.device_id.clone(),
            outcome: "ok".into(),
            detail: format!(
                "reason {:?}; denylisted {} certificate serial(s)",
                req.reason,
                revoked.issued_serials.len()
            ),
            peer,
        })?;
        shared.store.durable().await.map_err(Error::from)?;
        // Only now, with the revocation durable: end the device's open streams.
        let _ = shared.revocations.send(revoked.device_id.clone());
        Ok(Response::new(v1::RevokeDeviceResponse {
            device_id: revoked.device_id,
            revoked_at_unix_ms: revoked.revoked_at_ms,
            denylisted_certificate_serials: revoked.issued_serials,
        }))
    }

    async fn issue_credential(
        &self,
        request: Request<v1::IssueCredentialRequest>,
    ) -> Result<Response<v1::IssueCredentialResponse>, Status> {
        let (who, role) = authorize(&request, AdminRpc::IssueCredential)?;
        let peer = peer_of(&request);
        let req = request.into_inner();
        validate::issue_credential_request(&req).map_err(Error::from)?;
        let shared = &self.shared;
        let new_role: Role =
            req.role
                .parse()
                .map_err(|e: vakt_proto::identity::IdentityError| {
                    Status::invalid_argument(e.to_string())
                })?;
        let lifetime = if req.lifetime_seconds == 0 {
            crate::ca::ADMIN_LIFETIME
        } else {
            Duration::from_secs(req.lifetime_seconds)
        };
        let signed = shared
            .ca
            .sign_admin_csr(&req.csr_pem, &req.name, new_role, lifetime)
            .map_err(super::enroll::csr_error)?;
        shared.audit(AuditEntry {
            at_ms: now_unix_ms(),
            actor: actor(&who, role),
            action: "credential.issue".into(),
            target: format!("{} ({new_role})", req.name),
            outcome: "ok".into(),
            detail: format!("certificate serial {}", signed.serial_hex),
            peer,
        })?;
        shared.store.durable().await.map_err(Error::from)?;
        Ok(Response::new(v1::IssueCredentialResponse {
            certificate_pem: signed.cert_pem,
            ca_pem: shared.ca.ca_pem().to_owned(),
            not_after_unix_ms: signed.not_after_unix_ms,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        authorize(&request, AdminRpc::ListAudit)?;
        let req = request.into_inner();
        validate::list_audit_request(&req).map_err(Error::from)?;
        let entries = self
            .shared
            .store
            .list_audit(&AuditFilter {
                since_ms: req.since_unix_ms,
                action_prefix: req.action_prefix,
                target: req.device_id,
                limit: if req.limit == 0 {
                    1000
                } else {
                    req.limit as usize
                },
            })
            .map_err(Error::from)?;
        Ok(Response::new(v1::ListAuditResponse {
            records: entries
                .into_iter()
                .map(|e| v1::AuditRecord {
                    at_unix_ms: e.at_ms,
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    outcome: e.outcome,
                    detail: e.detail,
                    peer: e.peer,
                })
                .collect(),
        }))
    }
}

fn actor(name: &str, role: Role) -> String {
    format!("admin:{name} ({role})")
}

/// A one-time token and the record that stores its hash (the store fills in
/// the device id). `requested_ttl_seconds` 0 means the collector's default.
fn new_token(
    default_ttl: Duration,
    requested_ttl_seconds: u64,
    now_ms: i64,
) -> (tokens::NewToken, TokenRecord) {
    let ttl = if requested_ttl_seconds == 0 {
        default_ttl
    } else {
        Duration::from_secs(requested_ttl_seconds)
    };
    let token = tokens::generate();
    let record = TokenRecord {
        device_id: String::new(),
        secret_sha256: token.secret_sha256.clone(),
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        used_at_ms: 0,
    };
    (token, record)
}

impl AdminService {
    fn find(&self, needle: &str) -> Result<crate::store::DeviceRecord, Error> {
        self.shared
            .store
            .find_device(needle)?
            .ok_or_else(|| Error::NotFound(format!("no device matches {needle:?}")))
    }

    fn device_view(&self, needle: &str) -> Result<v1::Device, Error> {
        let shared = &self.shared;
        let record = shared
            .store
            .find_device(needle)?
            .ok_or_else(|| Error::NotFound(format!("no device matches {needle:?}")))?;
        let state = shared.store.ingest_state(&record.device_id)?;
        let inventory = shared.store.inventory(&record.device_id)?;
        Ok(fleet::device_view(
            &record,
            &state,
            inventory,
            now_unix_ms(),
            shared.config.report_interval,
        ))
    }
}

/// One point per step bucket (aligned to multiples of `step_ms`): the mean of
/// the samples in it, stamped with the bucket's start.
fn average_per_step(points: &[v1::Point], step_ms: i64) -> Vec<v1::Point> {
    let mut out: Vec<v1::Point> = Vec::new();
    let mut count = 0u32;
    for p in points {
        let bucket = p.timestamp_unix_ms - p.timestamp_unix_ms.rem_euclid(step_ms);
        match out.last_mut() {
            Some(last) if last.timestamp_unix_ms == bucket => {
                count += 1;
                last.value += (p.value - last.value) / f64::from(count);
            }
            _ => {
                out.push(v1::Point {
                    timestamp_unix_ms: bucket,
                    value: p.value,
                });
                count = 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_averages_align_to_bucket_starts() {
        let pts = |v: &[(i64, f64)]| {
            v.iter()
                .map(|&(t, x)| v1::Point {
                    timestamp_unix_ms: t,
                    value: x,
                })
                .collect::<Vec<_>>()
        };
        let got = average_per_step(&pts(&[(1000, 1.0), (1500, 3.0), (2100, 5.0)]), 1000);
        assert_eq!(got, pts(&[(1000, 2.0), (2000, 5.0)]));
    }
}
