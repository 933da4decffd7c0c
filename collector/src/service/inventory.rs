//! Admin RPCs for inventory and installed software (issue 4): thin adapters
//! over `store::software`, called from the `Admin` impl in `admin.rs`.

use super::{SharedRef, authorize};
use crate::authz::AdminRpc;
use crate::error::Error;
use crate::store::DeviceRecord;
use tonic::{Request, Response, Status};
use vakt_proto::v1;
use vakt_proto::validate::{self, MAX_HISTORY_ENTRIES};

/// Default number of history entries when the request says 0.
const DEFAULT_HISTORY_LIMIT: usize = 1000;

fn find(shared: &SharedRef, needle: &str) -> Result<DeviceRecord, Error> {
    shared
        .store
        .find_device(needle)?
        .ok_or_else(|| Error::NotFound(format!("no device matches {needle:?}")))
}

pub async fn get_inventory(
    shared: &SharedRef,
    request: Request<v1::GetInventoryRequest>,
) -> Result<Response<v1::GetInventoryResponse>, Status> {
    authorize(&request, AdminRpc::GetInventory)?;
    let req = request.into_inner();
    validate::get_inventory_request(&req).map_err(Error::from)?;
    let record = find(shared, &req.device)?;
    let id = &record.device_id;
    let inventory = shared.store.inventory(id).map_err(Error::from)?;
    let state = shared.store.software_state(id).map_err(Error::from)?;
    let packages = if req.software {
        shared.store.packages(id).map_err(Error::from)?
    } else {
        Vec::new()
    };
    Ok(Response::new(v1::GetInventoryResponse {
        device_id: record.device_id,
        inventory,
        packages,
        package_count: state.package_count,
        software_hash: state.hash,
        software_updated_at_unix_ms: state.updated_at_ms,
    }))
}

pub async fn list_inventory_history(
    shared: &SharedRef,
    request: Request<v1::ListInventoryHistoryRequest>,
) -> Result<Response<v1::ListInventoryHistoryResponse>, Status> {
    authorize(&request, AdminRpc::ListInventoryHistory)?;
    let req = request.into_inner();
    validate::list_inventory_history_request(&req).map_err(Error::from)?;
    let record = find(shared, &req.device)?;
    let limit = match req.limit as usize {
        0 => DEFAULT_HISTORY_LIMIT,
        n => n.min(MAX_HISTORY_ENTRIES),
    };
    let changes = shared
        .store
        .inventory_history(&record.device_id, req.since_unix_ms, limit)
        .map_err(Error::from)?;
    Ok(Response::new(v1::ListInventoryHistoryResponse {
        device_id: record.device_id,
        changes,
    }))
}

pub async fn find_package(
    shared: &SharedRef,
    request: Request<v1::FindPackageRequest>,
) -> Result<Response<v1::FindPackageResponse>, Status> {
    authorize(&request, AdminRpc::FindPackage)?;
    let req = request.into_inner();
    validate::find_package_request(&req).map_err(Error::from)?;
    let mut installs = Vec::new();
    for found in shared.store.find_package(&req.name).map_err(Error::from)? {
        let hostname = shared
            .store
            .ingest_state(&found.device_id)
            .map(|s| s.hostname)
            .unwrap_or_default();
        installs.push(v1::PackageInstall {
            device_id: found.device_id,
            hostname,
            version: found.version,
            architecture: found.architecture,
        });
    }
    Ok(Response::new(v1::FindPackageResponse { installs }))
}

/// The software summary `device show` includes.
pub fn fill_device_view(shared: &SharedRef, view: &mut v1::Device) -> Result<(), Error> {
    let state = shared.store.software_state(&view.device_id)?;
    view.software_package_count = state.package_count;
    view.software_hash = state.hash;
    view.software_updated_at_unix_ms = state.updated_at_ms;
    Ok(())
}
