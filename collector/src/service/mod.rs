//! Thin gRPC adapters: authenticate the peer, validate the message (in
//! vakt-proto), call the store, map errors (in `crate::error`). No storage
//! logic lives here.

pub mod admin;
pub mod alerts;
pub mod enroll;
mod streams;
pub mod telemetry;

use crate::authz::{self, AdminRpc};
use crate::ca::CertificateAuthority;
use crate::config::CollectorConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::ratelimit::EnrollLimiter;
use crate::store::{AuditEntry, DeviceRecord, Flag, Store};
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
    pub enroll_limiter: EnrollLimiter,
    /// Device ids as they are revoked or re-enrolled, so the open report
    /// streams of the old identity end at once.
    pub revocations: tokio::sync::broadcast::Sender<String>,
    pub streams: streams::StreamRegistry,
    pub alerts: Arc<crate::alerts::Engine>,
}

pub type SharedRef = Arc<Shared>;

/// Flags of one kind are not repeated within this window.
const FLAG_QUIET_MS: i64 = 3600 * 1000;

impl Shared {
    /// Fails when the alert rules file is unreadable or invalid.
    pub fn new(
        store: Store,
        ca: CertificateAuthority,
        config: CollectorConfig,
    ) -> anyhow::Result<Self> {
        let enroll_limiter = EnrollLimiter::new(
            crate::ratelimit::Rate {
                per_second: config.enroll_rate_per_address,
                burst: config.enroll_burst_per_address,
            },
            crate::ratelimit::Rate {
                per_second: config.enroll_rate_global,
                burst: config.enroll_burst_global,
            },
        );
        let metrics = Metrics::default();
        let alerts = Arc::new(crate::alerts::Engine::open(
            &store,
            config.alert_rules.clone(),
            config.report_interval,
            metrics.alerts_firing.clone(),
        )?);
        Ok(Self {
            store,
            ca,
            config,
            metrics,
            enroll_limiter,
            revocations: tokio::sync::broadcast::channel(256).0,
            streams: streams::StreamRegistry::default(),
            alerts,
        })
    }

    /// Appends to the audit log; durable with the caller's next `durable()`.
    pub fn audit(&self, entry: AuditEntry) -> Result<(), Error> {
        tracing::info!(
            actor = %entry.actor,
            action = %entry.action,
            target = %entry.target,
            outcome = %entry.outcome,
            detail = %entry.detail,
            "audit"
        );
        Ok(self.store.audit(&entry)?)
    }

    /// Raises a security flag on a device and audits it (once per quiet window).
    pub async fn flag_device(
        &self,
        device_id: &str,
        kind: &str,
        detail: String,
    ) -> Result<(), Error> {
        let now = vakt_proto::now_unix_ms();
        let flag = Flag {
            kind: kind.to_owned(),
            at_ms: now,
            detail: detail.clone(),
        };
        if self.store.flag_device(device_id, flag, FLAG_QUIET_MS)? {
            tracing::warn!(%device_id, kind, %detail, "device flagged");
            self.audit(AuditEntry {
                at_ms: now,
                actor: format!("device:{device_id}"),
                action: format!("device.flag.{kind}"),
                target: device_id.to_owned(),
                outcome: "flagged".into(),
                detail,
                peer: String::new(),
            })?;
            self.store.durable().await?;
        }
        Ok(())
    }
}

/// The identity named by the peer's client certificate, and the
/// certificate's serial. The TLS layer has already verified the chain
/// against our CA.
pub fn peer_identity<T>(request: &Request<T>) -> Result<(Identity, String), Error> {
    let missing = || {
        Error::Unauthenticated(
            "a client certificate issued by this collector's CA is required".into(),
        )
    };
    let certs = request.peer_certs().ok_or_else(missing)?;
    let leaf = certs.first().ok_or_else(missing)?;
    let facts = vakt_proto::identity::certificate_facts(leaf)
        .map_err(|e| Error::Unauthenticated(format!("client certificate refused: {e}")))?;
    let identity = facts.identity.ok_or_else(|| {
        Error::Unauthenticated("client certificate names no Vakt device or admin".into())
    })?;
    Ok((identity, facts.serial_hex))
}

/// `peer` for audit records.
pub fn peer_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// The device calling, from its certificate; refused if unknown, revoked or
/// presenting a denylisted certificate.
pub fn calling_device<T>(shared: &Shared, request: &Request<T>) -> Result<DeviceRecord, Error> {
    let (identity, serial) = peer_identity(request)?;
    if shared.store.is_denylisted(&serial)? {
        return Err(Error::PermissionDenied(
            "this certificate has been revoked".into(),
        ));
    }
    let device_id = match identity {
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
    match peer_identity(request)?.0 {
        Identity::Admin { name, role } if authz::allowed(role, rpc) => Ok((name, role)),
        Identity::Admin { name, role } => Err(Error::PermissionDenied(format!(
            "{name} has role {role}, which may not call {rpc:?}"
        ))),
        Identity::Device { .. } => Err(Error::PermissionDenied(
            "device certificates cannot call the Admin service".into(),
        )),
    }
}
