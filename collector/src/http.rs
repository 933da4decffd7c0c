//! The plain-HTTP endpoint: `/metrics` for Prometheus, `/healthz` (the process
//! is up) and `/readyz` (the store answers).

use crate::service::SharedRef;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::future::Future;
use tokio::net::TcpListener;
use vakt_proto::v1::DeviceStatus;

pub async fn serve(
    listener: TcpListener,
    shared: SharedRef,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ready(State(shared): State<SharedRef>) -> impl IntoResponse {
    match shared.store.devices() {
        Ok(_) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
    }
}

async fn metrics(State(shared): State<SharedRef>) -> impl IntoResponse {
    let m = &shared.metrics;
    m.storage_bytes
        .set(i64::try_from(shared.store.size_on_disk()).unwrap_or(i64::MAX));
    // Device counts are derived at scrape time: cheap at this fleet size, and
    // never stale.
    let now = vakt_proto::now_unix_ms();
    // Two scrapes at once would interleave clearing and refilling the fleet
    // family below; one at a time is plenty.
    static SCRAPE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SCRAPE.lock().unwrap_or_else(|p| p.into_inner());
    let mut fleet = std::collections::HashMap::<crate::metrics::FleetLabels, i64>::new();
    let mut counts = std::collections::BTreeMap::<&'static str, i64>::new();
    for status in [
        DeviceStatus::NeverSeen,
        DeviceStatus::Online,
        DeviceStatus::Offline,
        DeviceStatus::Asleep,
        DeviceStatus::Off,
        DeviceStatus::Revoked,
    ] {
        counts.insert(status.short_name(), 0);
    }
    if let Ok(devices) = shared.store.devices() {
        for record in devices {
            let state = shared
                .store
                .ingest_state(&record.device_id)
                .unwrap_or_default();
            let status = crate::fleet::status(&record, &state, now, shared.config.report_interval);
            *counts.entry(status.short_name()).or_default() += 1;
            *fleet
                .entry(crate::metrics::FleetLabels {
                    status: status.short_name(),
                    department: record.department,
                    class: record.class,
                })
                .or_default() += 1;
        }
    }
    // Cleared first, so a department or class that has no devices any more
    // disappears instead of keeping its last count.
    m.fleet_devices.clear();
    for (labels, n) in fleet {
        m.fleet_devices.get_or_create(&labels).set(n);
    }
    crate::alerts::notify::update_queue_metrics(&shared);
    for (status, n) in counts {
        m.devices
            .get_or_create(&crate::metrics::StatusLabel { status })
            .set(n);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}
