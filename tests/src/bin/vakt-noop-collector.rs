//! `vakt-noop-collector`: the ceiling a Vakt collector is measured against.
//!
//! A bare tonic server over exactly the collector's TLS setup (its server
//! certificate, client certificates verified against its CA) that implements
//! `Telemetry.Report` by acknowledging every batch as soon as it arrives: no
//! validation, no storage, no fsync. `tests/bench/ingest_ratio.sh` runs
//! `vakt-fleet-sim --saturate` against it and against the real collector with
//! the same load; the ratio of the two rates is the cost of durability.

use anyhow::{Context, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use vakt_collector::config::CollectorConfig;
use vakt_proto::v1::telemetry_server::{Telemetry, TelemetryServer};
use vakt_proto::v1::{RenewCertificateRequest, RenewCertificateResponse, ReportAck, ReportBatch};

/// A no-op Telemetry server with the collector's TLS, for ingest-ceiling benchmarks.
///
/// Example: vakt-noop-collector --config /srv/vakt/collector.toml --listen 127.0.0.1:7444
#[derive(Parser)]
#[command(name = "vakt-noop-collector", version)]
struct Args {
    /// A collector.toml made by `vakt-collector init`: its ca_cert, server_cert
    /// and server_key are used (the database is never opened).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Address to listen on (must differ from the collector's own).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7444")]
    listen: SocketAddr,
}

struct Noop;

type AckStream = Pin<Box<dyn Stream<Item = Result<ReportAck, Status>> + Send>>;

#[tonic::async_trait]
impl Telemetry for Noop {
    type ReportStream = AckStream;

    async fn report(
        &self,
        request: Request<Streaming<ReportBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        // mTLS is required at the TLS layer here; still insist on a certificate
        // like the collector does, so a misconfigured client fails loudly.
        if request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated("a client certificate is required"));
        }
        let acks = request.into_inner().map(|batch| {
            batch.map(|b| ReportAck {
                acked_sequence: b.sequence,
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(acks)))
    }

    async fn renew_certificate(
        &self,
        _request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        Err(Status::unimplemented(
            "vakt-noop-collector only acknowledges reports",
        ))
    }
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let config = CollectorConfig::load(&args.config)?;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("read {}", p.display()));
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read(&config.server_cert)?,
            read(&config.server_key)?,
        ))
        .client_ca_root(Certificate::from_pem(read(&config.ca_cert)?))
        .timeout(std::time::Duration::from_secs(10));
    // Same runtime shape as `vakt-collector serve` (multi-thread, one worker per core).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        eprintln!(
            "vakt-noop-collector: acknowledging reports on {} (no storage)",
            listener.local_addr()?
        );
        Server::builder()
            .tls_config(tls)
            .context("configure TLS")?
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(
                TelemetryServer::new(Noop)
                    .max_decoding_message_size(vakt_proto::validate::MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                vakt_collector::shutdown_signal(),
            )
            .await
            .context("serve")
    })
}
