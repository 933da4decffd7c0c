//! `Admin`: what ops staff and provisioning scripts call through `vaktctl`.
//! Every RPC is authorized by `authz` before anything else happens.

use super::{SharedRef, authorize, peer_of};
use crate::authz::AdminRpc;
use crate::error::Error;
use crate::fleet;
use crate::queries;
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
        let via_gateway = match req.via_gateway.trim() {
            "" => String::new(),
            needle => crate::gateway::resolve_gateway(&shared.store, needle)?.device_id,
        };
        // What a gateway reports is a tablet (or phone) unless ops said otherwise.
        let class = if via_gateway.is_empty() || class != DeviceClass::Unspecified {
            class
        } else {
            DeviceClass::Tablet
        };
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
            via_gateway,
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
        .chain([("via", &record.via_gateway)].iter())
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
        let via = match req.via_gateway.as_str() {
            "" => None,
            needle => Some(self.find(needle)?.device_id),
        };
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
            let inventory = shared
                .store
                .inventory(&record.device_id)
                .map_err(Error::from)?;
            let mut view = fleet::device_view(
                &record,
                &state,
                inventory,
                now,
                shared.config.report_interval,
            );
            // Children's status comes from their gateway's reports.
            crate::gateway::decorate(&shared.store, &record, &mut view, now)
                .map_err(Error::from)?;
            if req.status != DeviceStatus::Unspecified as i32 && view.status != req.status {
                continue;
            }
            if via.as_ref().is_some_and(|v| *v != view.via_gateway) {
                continue;
            }
            devices.push(view);
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
        let aggregation =
            v1::Aggregation::try_from(req.step_aggregation).unwrap_or(v1::Aggregation::Avg);
        let series = if req.step_ms > 0 && aggregation != v1::Aggregation::Avg {
            // min/max/p95/… of a step need the raw samples; averages can come
            // from the rollups the store picks for long ranges.
            let mut series = shared
                .store
                .query_series(
                    &device.device_id,
                    &req.metric,
                    &req.attributes,
                    req.since_unix_ms,
                    until,
                    validate::MAX_QUERY_POINTS,
                )
                .map_err(Error::from)?;
            for s in &mut series {
                s.points = queries::step::per_step(&s.points, req.step_ms, aggregation);
            }
            series
        } else {
            shared
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
                .map_err(Error::from)?
        };
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

    async fn get_inventory(
        &self,
        request: Request<v1::GetInventoryRequest>,
    ) -> Result<Response<v1::GetInventoryResponse>, Status> {
        super::inventory::get_inventory(&self.shared, request).await
    }

    async fn list_inventory_history(
        &self,
        request: Request<v1::ListInventoryHistoryRequest>,
    ) -> Result<Response<v1::ListInventoryHistoryResponse>, Status> {
        super::inventory::list_inventory_history(&self.shared, request).await
    }

    async fn find_package(
        &self,
        request: Request<v1::FindPackageRequest>,
    ) -> Result<Response<v1::FindPackageResponse>, Status> {
        super::inventory::find_package(&self.shared, request).await
    }

    // ---- tablet gateway ----

    async fn list_refused_children(
        &self,
        request: Request<v1::ListRefusedChildrenRequest>,
    ) -> Result<Response<v1::ListRefusedChildrenResponse>, Status> {
        authorize(&request, AdminRpc::ListRefusedChildren)?;
        let req = request.into_inner();
        validate::list_refused_children_request(&req).map_err(Error::from)?;
        Ok(Response::new(crate::gateway::list_refused(
            &self.shared.store,
            &req,
        )?))
    }

    // queries: fleet-wide questions (collector/src/queries/).

    async fn fleet_aggregate(
        &self,
        request: Request<v1::FleetAggregateRequest>,
    ) -> Result<Response<v1::FleetAggregateResponse>, Status> {
        authorize(&request, AdminRpc::FleetAggregate)?;
        let req = request.into_inner();
        let now = now_unix_ms();
        validate::fleet_aggregate_request(&req, now).map_err(Error::from)?;
        let shared = self.shared.clone();
        blocking(move || queries::aggregate(&shared.store, &req, now)).await
    }

    async fn fleet_top(
        &self,
        request: Request<v1::FleetTopRequest>,
    ) -> Result<Response<v1::FleetTopResponse>, Status> {
        authorize(&request, AdminRpc::FleetTop)?;
        let req = request.into_inner();
        validate::fleet_top_request(&req).map_err(Error::from)?;
        let shared = self.shared.clone();
        blocking(move || queries::top(&shared.store, &req)).await
    }

    async fn inventory_query(
        &self,
        request: Request<v1::InventoryQueryRequest>,
    ) -> Result<Response<v1::InventoryQueryResponse>, Status> {
        authorize(&request, AdminRpc::InventoryQuery)?;
        let req = request.into_inner();
        validate::inventory_query_request(&req).map_err(Error::from)?;
        let shared = self.shared.clone();
        blocking(move || queries::inventory::query(&shared.store, &req)).await
    }

    async fn fleet_summary(
        &self,
        request: Request<v1::FleetSummaryRequest>,
    ) -> Result<Response<v1::FleetSummaryResponse>, Status> {
        authorize(&request, AdminRpc::FleetSummary)?;
        let req = request.into_inner();
        validate::fleet_summary_request(&req).map_err(Error::from)?;
        let shared = self.shared.clone();
        let now = now_unix_ms();
        let firing = queries::summary::firing_by_device(&shared.alerts.alerts());
        blocking(move || {
            queries::summary::summary(
                &shared.store,
                &req,
                now,
                shared.config.report_interval,
                &firing,
            )
        })
        .await
    }

    // alerts (issue 5): adapters in `service::alerts`.
    type WatchAlertsStream = super::alerts::WatchStream;

    async fn list_alerts(
        &self,
        request: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        super::alerts::list_alerts(&self.shared, request)
    }

    async fn ack_alert(
        &self,
        request: Request<v1::AckAlertRequest>,
    ) -> Result<Response<v1::AckAlertResponse>, Status> {
        super::alerts::ack_alert(&self.shared, request).await
    }

    async fn add_silence(
        &self,
        request: Request<v1::AddSilenceRequest>,
    ) -> Result<Response<v1::AddSilenceResponse>, Status> {
        super::alerts::add_silence(&self.shared, request).await
    }

    async fn list_silences(
        &self,
        request: Request<v1::ListSilencesRequest>,
    ) -> Result<Response<v1::ListSilencesResponse>, Status> {
        super::alerts::list_silences(&self.shared, request)
    }

    async fn expire_silence(
        &self,
        request: Request<v1::ExpireSilenceRequest>,
    ) -> Result<Response<v1::ExpireSilenceResponse>, Status> {
        super::alerts::expire_silence(&self.shared, request).await
    }

    async fn watch_alerts(
        &self,
        request: Request<v1::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        super::alerts::watch_alerts(&self.shared, request)
    }

    async fn reload_rules(
        &self,
        request: Request<v1::ReloadRulesRequest>,
    ) -> Result<Response<v1::ReloadRulesResponse>, Status> {
        super::alerts::reload_rules(&self.shared, request).await
    }
}

/// Fleet scans read every device's records: run them on the blocking pool so
/// report streams on the async workers keep being acknowledged meanwhile.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<Response<T>, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(Response::new(result?)),
        Err(e) => Err(Error::Internal(format!("fleet query task failed: {e}")).into()),
    }
}

pub(super) fn actor(name: &str, role: Role) -> String {
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
        let now = now_unix_ms();
        let mut view = fleet::device_view(
            &record,
            &state,
            inventory,
            now,
            shared.config.report_interval,
        );
        super::inventory::fill_device_view(shared, &mut view)?;
        crate::gateway::decorate(&shared.store, &record, &mut view, now)?;
        Ok(view)
    }
}
