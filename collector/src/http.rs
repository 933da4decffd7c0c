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
    match shared.store.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
    }
}

async fn metrics(State(shared): State<SharedRef>) -> impl IntoResponse {
    let m = &shared.metrics;
    m.storage_bytes
        .set(i64::try_from(shared.store.size_on_disk()).unwrap_or(i64::MAX));
    // Device counts come from one pass over the devices tree, redone at most
    // every FLEET_GAUGES_MAX_AGE; off the async workers, which carry the
    // agents' report streams (a pass over 19,000 devices took 0.05-1 s on a
    // busy 2-core machine).
    let scan = shared.clone();
    let counted = tokio::task::spawn_blocking(move || {
        scan.metrics.refresh_fleet_gauges(
            &scan.store,
            vakt_proto::now_unix_ms(),
            scan.config.report_interval,
        )
    })
    .await;
    match counted {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "device gauges not updated"),
        Err(e) => tracing::warn!(error = %e, "device gauges not updated"),
    }
    crate::alerts::notify::update_queue_metrics(&shared);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}
