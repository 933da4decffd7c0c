//! `vakt-collector serve`: wires TLS, the gRPC services, health, reflection and
//! the HTTP endpoint around one store.

use crate::ca::CertificateAuthority;
use crate::config::CollectorConfig;
use crate::service::admin::AdminService;
use crate::service::enroll::EnrollmentService;
use crate::service::telemetry::TelemetryService;
use crate::service::{Shared, SharedRef};
use crate::store::Store;
use anyhow::{Context, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::http;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use vakt_proto::v1::admin_server::AdminServer;
use vakt_proto::v1::enrollment_server::EnrollmentServer;
use vakt_proto::v1::telemetry_server::TelemetryServer;
use vakt_proto::validate::MAX_MESSAGE_BYTES;

// HTTP/2 settings for a collector that holds one connection per device.
//
// At fleet scale the collector keeps tens of thousands of mostly idle agent
// connections, so what matters is what each may cost in the worst case, not
// the throughput of one. hyper's defaults are tuned for the opposite (a few
// fast connections): a 1 MiB window per stream and per connection that a
// peer may fill before the collector reads (and BDP-based adaptive windows,
// which would grow it further, are kept off explicitly). With 20,000 agents that is up to 20 GiB of buffered request
// data if the collector stalls (a long fsync) while agents replay their
// spools. The windows below still let a batch of the largest allowed size
// (4 MiB) through in a few round trips on loopback or a LAN, and a normal
// report (a few KiB) in one. The measured effect on idle memory and latency
// is in docs/BENCHMARKS.md ("Fleet scale").

/// Flow-control window of one stream (the agent's Report stream).
pub const STREAM_WINDOW_BYTES: u32 = 256 * 1024;
/// Flow-control window of a whole connection (all its streams together).
pub const CONNECTION_WINDOW_BYTES: u32 = 512 * 1024;
/// Streams one connection may have open at once: an agent uses one Report
/// stream plus the odd unary call (renewal, inventory); vaktctl a few.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// A running collector's addresses, once it accepts connections.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// Serves until `shutdown` resolves, then drains and flushes. `on_bound` is
/// called once both listeners are bound (the real ports, if 0 was asked).
pub async fn serve(
    config: CollectorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound) + Send,
) -> Result<()> {
    let ca = CertificateAuthority::load(&config.ca_cert, &config.ca_key)?;
    let server_cert = std::fs::read(&config.server_cert)
        .with_context(|| format!("read server certificate {}", config.server_cert.display()))?;
    let server_key = std::fs::read(&config.server_key)
        .with_context(|| format!("read server key {}", config.server_key.display()))?;
    let store = Store::open_with(&config.data, config.storage_options())
        .with_context(|| format!("open the database in {}", config.data.display()))?;
    store
        .child_policy()
        .set_accept_by_department(config.gateway_children_by_department);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(server_cert, server_key))
        .client_ca_root(Certificate::from_pem(ca.ca_pem()))
        // Enrollment and health work without a client certificate; every other
        // RPC checks for one itself (service::peer_identity).
        .client_auth_optional(true)
        .timeout(std::time::Duration::from_secs(10));

    let grpc_listener = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("listen for gRPC on {}", config.grpc_listen))?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("listen for HTTP on {}", config.http_listen))?;
    let bound = Bound {
        grpc: grpc_listener.local_addr()?,
        http: http_listener.local_addr()?,
    };

    let shared: SharedRef = Arc::new(Shared::new(store, ca, config)?);
    let engine = shared.clone();
    tokio::spawn(async move { engine.alerts.clone().run(&engine.store).await });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<EnrollmentServer<EnrollmentService>>()
        .await;
    health_reporter
        .set_serving::<TelemetryServer<TelemetryService>>()
        .await;
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    // Both reflection versions: grpcurl and older clients still ask v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vakt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build the reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vakt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("build the reflection service (v1alpha)")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let notifier = crate::alerts::notify::start(
        shared.clone(),
        Some(crate::alerts::firing_alerts(&shared.alerts)),
        stop_rx.clone(),
    )
    .context("start notification delivery")?;
    tokio::spawn(crate::store::retention::run_maintenance(
        shared.clone(),
        |s: &crate::service::Shared| &s.store,
        shared.config.storage.compact_interval,
        stopped(stop_rx.clone()),
    ));
    let http = tokio::spawn(crate::http::serve(
        http_listener,
        shared.clone(),
        stopped(stop_rx.clone()),
    ));
    let grpc = Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversized_is_resource_exhausted,
        ))
        .tls_config(tls)
        .context("configure TLS")?
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .http2_adaptive_window(Some(false))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            EnrollmentServer::new(EnrollmentService {
                shared: shared.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            TelemetryServer::new(TelemetryService {
                shared: shared.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            AdminServer::new(AdminService {
                shared: shared.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), stopped(stop_rx));
    tracing::info!(grpc = %bound.grpc, http = %bound.http, "collector serving");
    on_bound(bound);
    let served = grpc.await.context("gRPC server");
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "HTTP endpoint stopped with an error");
    }
    notifier.join().await;
    // Whatever was acknowledged is already durable; this only shortens recovery.
    shared.store.durable().await.context("final flush")?;
    served
}

/// tonic refuses a request over `max_decoding_message_size` with `OUT_OF_RANGE`;
/// gRPC's convention for "too big" is `RESOURCE_EXHAUSTED`, which is what
/// clients retry-classify correctly. Vakt itself never returns `OUT_OF_RANGE`,
/// so every trailers-only response carrying it is this case. (Streamed
/// requests are mapped where the stream is read: `service::telemetry`.)
fn oversized_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    const RESOURCE_EXHAUSTED: http::HeaderValue = http::HeaderValue::from_static("8");
    if response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v == OUT_OF_RANGE)
    {
        response
            .headers_mut()
            .insert("grpc-status", RESOURCE_EXHAUSTED);
    }
    response
}
