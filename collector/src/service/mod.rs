//! Thin gRPC adapters: authenticate the peer, validate the message (in
//! vakt-proto), call the store, map errors (in `crate::error`). No storage
//! logic lives here.

pub mod admin;
pub mod enroll;
pub mod telemetry;

use crate::authz::{self, AdminRpc};
use crate::ca::CertificateAuthority;
use crate::config::CollectorConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{DeviceRecord, Store};
use std::sync::Arc;
use tonic::Request;
use vakt_proto::Identity;
use vakt_proto::identity::Role;

/// What every service shares.
pub struct Shared {
    pub store: Store,
    pub ca: CertificateAuthority,
    pub config: CollectorConfig,
    pub metrics: Metrics,
}

pub type SharedRef = Arc<Shared>;

/// The identity named by the peer's client certificate. The TLS layer has
/// already verified the chain against our CA.
pub fn peer_identity<T>(request: &Request<T>) -> Result<Identity, Error> {
    let certs = request.peer_certs().ok_or_else(|| {
        Error::Unauthenticated(
            "a client certificate issued by this collector's CA is required".into(),
        )
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Error::Unauthenticated(
            "a client certificate issued by this collector's CA is required".into(),
        )
    })?;
    vakt_proto::identity::identity_from_certificate(leaf)
        .map_err(|e| Error::Unauthenticated(format!("client certificate refused: {e}")))
}

/// The device calling, from its certificate; refused if unknown or revoked.
pub fn calling_device<T>(shared: &Shared, request: &Request<T>) -> Result<DeviceRecord, Error> {
    let device_id = match peer_identity(request)? {
        Identity::Device { device_id } => device_id,
        Identity::Admin { .. } => {
            return Err(Error::PermissionDenied(
                "admin credentials cannot report telemetry; use a device certificate".into(),
            ));
        }
    };
    let device = shared
        .store
        .device(&device_id)?
        .ok_or_else(|| Error::Unauthenticated(format!("device {device_id} is not registered")))?;
    if device.revoked_at_ms != 0 {
        return Err(Error::PermissionDenied(format!(
            "device {device_id} is revoked"
        )));
    }
    Ok(device)
}

/// The admin calling, if its role may call `rpc` (decided by `authz`).
pub fn authorize<T>(request: &Request<T>, rpc: AdminRpc) -> Result<(String, Role), Error> {
    match peer_identity(request)? {
        Identity::Admin { name, role } if authz::allowed(role, rpc) => Ok((name, role)),
        Identity::Admin { name, role } => Err(Error::PermissionDenied(format!(
            "{name} has role {role}, which may not call {rpc:?}"
        ))),
        Identity::Device { .. } => Err(Error::PermissionDenied(
            "device certificates cannot call the Admin service".into(),
        )),
    }
}
