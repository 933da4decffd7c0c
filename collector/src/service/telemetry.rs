//! `Telemetry`: the agents' long-lived report stream and certificate renewal.
//!
//! Per stream, batches that are already waiting are stored together and
//! acknowledged with one durable flush (shared with every other stream by the
//! store's group commit), so an agent that pipelines pays one fsync per group,
//! not per batch.

use super::{SharedRef, calling_device};
use crate::error::Error;
use crate::metrics::ResultLabel;
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use std::pin::Pin;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use vakt_proto::v1::telemetry_server::Telemetry;
use vakt_proto::v1::{RenewCertificateRequest, RenewCertificateResponse, ReportAck, ReportBatch};
use vakt_proto::{now_unix_ms, validate};

/// Most batches stored before one acknowledgement.
const MAX_GROUP: usize = 256;

pub struct TelemetryService {
    pub shared: SharedRef,
}

type AckStream = Pin<Box<dyn Stream<Item = Result<ReportAck, Status>> + Send>>;

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    type ReportStream = AckStream;

    async fn report(
        &self,
        request: Request<Streaming<ReportBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        // Subscribe before the revocation check, so a revocation between the
        // two cannot be missed.
        let revocations = self.shared.revocations.subscribe();
        let device = calling_device(&self.shared, &request)?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            shared.metrics.connected_agents.inc();
            let device_id = device.device_id;
            let stream = AgentStream {
                shared: &shared,
                device_id: &device_id,
                revocations,
            };
            if let Err(status) = stream.serve(inbound, &tx).await {
                // An agent that disconnects (shutdown, network drop) surfaces
                // as Unknown/Cancelled from h2: routine, not worth a warning.
                if matches!(status.code(), tonic::Code::Unknown | tonic::Code::Cancelled) {
                    tracing::debug!(%device_id, message = status.message(), "report stream closed by the agent");
                } else {
                    tracing::warn!(%device_id, code = ?status.code(), message = status.message(), "report stream ended with an error");
                }
                let _ = tx.send(Err(status)).await;
            }
            shared.metrics.connected_agents.dec();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let device = calling_device(&self.shared, &request)?;
        let req = request.into_inner();
        validate::renew_request(&req).map_err(Error::from)?;
        let shared = &self.shared;
        let signed = shared
            .ca
            .sign_device_csr(
                &req.csr_pem,
                &device.device_id,
                shared.config.device_cert_lifetime,
            )
            .map_err(super::enroll::csr_error)?;
        shared
            .store
            .update_device(&device.device_id, |d| {
                crate::store::Store::record_certificate(
                    d,
                    &signed.serial_hex,
                    signed.not_after_unix_ms,
                );
            })
            .map_err(Error::from)?;
        shared.store.durable().await.map_err(Error::from)?;
        tracing::info!(device_id = %device.device_id, "certificate renewed");
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem: signed.cert_pem,
            ca_chain_pem: shared.ca.ca_pem().to_owned(),
            certificate_not_after_unix_ms: signed.not_after_unix_ms,
        }))
    }
}

struct AgentStream<'a> {
    shared: &'a SharedRef,
    device_id: &'a str,
    revocations: broadcast::Receiver<String>,
}

impl AgentStream<'_> {
    /// The next batch, or the end of the stream; ends it with
    /// `PERMISSION_DENIED` as soon as the device is revoked.
    async fn next(
        &mut self,
        inbound: &mut Streaming<ReportBatch>,
    ) -> Result<Option<ReportBatch>, Status> {
        loop {
            tokio::select! {
                message = inbound.message() => return message.map_err(oversized_is_resource_exhausted),
                revoked = self.revocations.recv() => match revoked {
                    Ok(id) if id == self.device_id => return Err(self.ended_status()?),
                    Ok(_) => {}
                    // Missed some: ask the store instead.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let revoked = self
                            .shared
                            .store
                            .device(self.device_id)
                            .map_err(Error::from)?
                            .is_none_or(|d| d.revoked_at_ms != 0);
                        if revoked {
                            return Err(revoked_status(self.device_id));
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Status::unavailable("collector is shutting down")),
                },
            }
        }
    }

    /// Why the stream is being ended: the device was revoked, or it enrolled
    /// again and this connection belongs to the superseded instance.
    fn ended_status(&self) -> Result<Status, Status> {
        let device = self
            .shared
            .store
            .device(self.device_id)
            .map_err(Error::from)?;
        Ok(match device {
            Some(d) if d.revoked_at_ms == 0 => Status::permission_denied(format!(
                "device {} enrolled again; this connection's certificate is superseded",
                self.device_id
            )),
            _ => revoked_status(self.device_id),
        })
    }

    async fn serve(
        mut self,
        mut inbound: Streaming<ReportBatch>,
        acks: &mpsc::Sender<Result<ReportAck, Status>>,
    ) -> Result<(), Status> {
        let shared = self.shared;
        let device_id = self.device_id;
        let registration = shared.streams.open(device_id);
        let stats = StreamCounters::new(shared);
        let mut ended = false;
        while !ended {
            let Some(first) = self.next(&mut inbound).await? else {
                break;
            };
            let started = Instant::now();
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match inbound.message().now_or_never() {
                    Some(Ok(Some(batch))) => group.push(batch),
                    Some(Ok(None)) => {
                        ended = true;
                        break;
                    }
                    Some(Err(status)) => return Err(oversized_is_resource_exhausted(status)),
                    None => break,
                }
            }
            if shared.streams.batch_arrived(device_id, registration.id) {
                shared
                    .flag_device(
                        device_id,
                        "clone-suspected",
                        "two connections reporting at the same time with one identity".into(),
                    )
                    .await?;
            }
            let mut ack = ReportAck::default();
            let mut clone_suspected = false;
            let now = now_unix_ms();
            // Validate the whole group first; what precedes a bad batch is
            // stored and acknowledged, then the bad one is refused.
            let mut refused = None;
            if let Some((i, e)) = group
                .iter()
                .enumerate()
                .find_map(|(i, b)| validate::report_batch(b, now).err().map(|e| (i, e)))
            {
                stats.rejected.inc();
                refused = Some(Status::invalid_argument(format!(
                    "batch {}: {e}",
                    group[i].sequence
                )));
                group.truncate(i);
            }
            let sample_counts: Vec<usize> = group.iter().map(|b| b.samples.len()).collect();
            let results = shared
                .store
                .ingest_group(device_id, group, now)
                .map_err(Error::from)?;
            for (ingested, samples) in results.iter().zip(sample_counts) {
                if ingested.stored {
                    stats.stored.inc();
                    stats.samples.inc_by(samples as u64);
                    // The newest stored batch says whether the list is still missing.
                    ack.send_full_software = ingested.need_full_software;
                } else {
                    stats.duplicate.inc();
                }
                clone_suspected |= ingested.clone_suspected;
                ack.acked_sequence = ingested.acked_sequence;
                ack.send_full_inventory |= ingested.need_inventory;
            }
            if let Some(status) = refused {
                // Acknowledge what was stored before the bad batch, then refuse it.
                if ack.acked_sequence > 0 {
                    shared.store.durable().await.map_err(Error::from)?;
                    let _ = acks.send(Ok(ack)).await;
                }
                return Err(status);
            }
            if clone_suspected {
                shared
                    .flag_device(
                        device_id,
                        "clone-suspected",
                        "sequence numbers went backwards with new data: another agent uses this identity".into(),
                    )
                    .await?;
            }
            shared.store.durable().await.map_err(Error::from)?;
            shared
                .metrics
                .ack_latency
                .observe(started.elapsed().as_secs_f64());
            if acks.send(Ok(ack)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// This stream's handles on the report counters: looked up once, not per
/// batch (a labelled family lookup hashes the label and takes a lock).
struct StreamCounters {
    stored: Counter,
    duplicate: Counter,
    rejected: Counter,
    samples: Counter,
}

impl StreamCounters {
    fn new(shared: &SharedRef) -> Self {
        let reports = &shared.metrics.reports;
        let result = |result| reports.get_or_create(&ResultLabel { result }).clone();
        Self {
            stored: result("stored"),
            duplicate: result("duplicate"),
            rejected: result("rejected"),
            samples: shared.metrics.samples.clone(),
        }
    }
}

/// tonic's decoder says `OUT_OF_RANGE` for a message over the size limit;
/// gRPC's convention (and our contract) is `RESOURCE_EXHAUSTED`.
fn oversized_is_resource_exhausted(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange {
        Status::resource_exhausted(status.message().to_owned())
    } else {
        status
    }
}

fn revoked_status(device_id: &str) -> Status {
    Status::permission_denied(format!("device {device_id} is revoked"))
}
