//! The agent against a small in-process collector stand-in: enrollment,
//! in-order delivery, acknowledgement, a refused batch, an untrusted server and
//! a clean shutdown. The real collector's behaviour is tested in `tests/`; this
//! checks the agent's side of the protocol without depending on it.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns are test code too

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use vakt_agent::config::AgentConfig;
use vakt_agent::enroll::{EnrollOptions, enroll};
use vakt_proto::v1::enrollment_server::{Enrollment, EnrollmentServer};
use vakt_proto::v1::telemetry_server::{Telemetry, TelemetryServer};
use vakt_proto::v1::*;

const TOKEN: &str = "good-token-0123456789abcdef";

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

#[derive(Default)]
struct Stored {
    batches: Vec<ReportBatch>,
    highest: u64,
    reject: Option<u64>,
}

#[derive(Clone)]
struct Fake {
    ca: Arc<Ca>,
    stored: Arc<Mutex<Stored>>,
}

fn sign_csr(ca: &Ca, csr_pem: &str) -> Result<String, Status> {
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    csr.params.subject_alt_names = vec![SanType::URI("vakt://device/d-test".try_into().unwrap())];
    Ok(csr.signed_by(&ca.issuer).unwrap().pem())
}

#[tonic::async_trait]
impl Enrollment for Fake {
    async fn enroll(
        &self,
        req: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let req = req.into_inner();
        vakt_proto::validate::enroll_request(&req)?;
        if req.token != TOKEN {
            return Err(Status::unauthenticated("unknown or used token"));
        }
        assert!(!req.hardware.unwrap().machine_id.is_empty());
        Ok(Response::new(EnrollResponse {
            device_id: "d-test".into(),
            certificate_pem: sign_csr(&self.ca, &req.csr_pem)?,
            ca_chain_pem: self.ca.pem.clone(),
            settings: Some(AgentSettings {
                report_interval_seconds: 1,
                inventory_interval_seconds: 3600,
            }),
            certificate_not_after_unix_ms: 0,
        }))
    }
}

#[tonic::async_trait]
impl Telemetry for Fake {
    type ReportStream = ReceiverStream<Result<ReportAck, Status>>;

    async fn report(
        &self,
        req: Request<Streaming<ReportBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        if req.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated("client certificate required"));
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let stored = self.stored.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let verdict = {
                    let mut s = stored.lock().unwrap();
                    if vakt_proto::validate::report_batch(&batch, vakt_proto::now_unix_ms())
                        .is_err()
                        || s.reject == Some(batch.sequence)
                    {
                        s.reject = None;
                        Err(Status::invalid_argument(format!(
                            "batch {}: refused",
                            batch.sequence
                        )))
                    } else {
                        if batch.sequence > s.highest {
                            s.highest = batch.sequence;
                            s.batches.push(batch);
                        }
                        Ok(ReportAck {
                            acked_sequence: s.highest,
                            settings: None,
                            send_full_inventory: false,
                            send_full_software: false,
                        })
                    }
                };
                let end = verdict.is_err();
                let _ = tx.send(verdict).await;
                if end {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn renew_certificate(
        &self,
        req: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem: sign_csr(&self.ca, &req.into_inner().csr_pem)?,
            ca_chain_pem: self.ca.pem.clone(),
            certificate_not_after_unix_ms: 0,
        }))
    }
}

async fn start(fake: Fake) -> SocketAddr {
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let server_cert = params.signed_by(&server_key, &fake.ca.issuer).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            server_cert.pem(),
            server_key.serialize_pem(),
        ))
        .client_ca_root(Certificate::from_pem(&fake.ca.pem))
        .client_auth_optional(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(EnrollmentServer::new(fake.clone()))
            .add_service(TelemetryServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

async fn run_for(config: &AgentConfig, state_dir: &Path, secs: f64) {
    let stop = tokio::time::sleep(Duration::from_secs_f64(secs));
    tokio::time::timeout(
        Duration::from_secs_f64(secs + 10.0),
        vakt_agent::run(config.clone(), state_dir.to_owned(), stop),
    )
    .await
    .expect("run returns soon after shutdown")
    .expect("run succeeds");
}

fn kinds(batch: &ReportBatch) -> Vec<EventKind> {
    batch
        .events
        .iter()
        .map(|e| EventKind::try_from(e.kind).unwrap())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn enroll_report_refuse_and_recover() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    {
        use tracing_subscriber::prelude::*;
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(
                tracing_subscriber::filter::Targets::new()
                    .with_target("vakt_agent", tracing::Level::INFO),
            )
            .try_init();
    }
    let fake = Fake {
        ca: Arc::new(new_ca("fake vakt CA")),
        stored: Default::default(),
    };
    let addr = start(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &fake.ca.pem).unwrap();
    let mut opts = EnrollOptions {
        collector: format!("https://127.0.0.1:{}", addr.port()),
        ca_file: ca_file.clone(),
        token: "wrong".into(),
        state_dir: state.clone(),
    };

    // Enrollment: a bad token is explained, a good one writes the state files.
    let err = format!("{:#}", enroll(&opts).await.unwrap_err());
    assert!(err.contains("collector refused the token"), "{err}");
    opts.token = TOKEN.into();
    let enrolled = enroll(&opts).await.unwrap();
    assert_eq!(enrolled.device_id, "d-test");
    assert!(enrolled.certificate_not_after_unix_ms > vakt_proto::now_unix_ms());
    for file in ["key.pem", "cert.pem", "ca.pem", "enrollment.json"] {
        assert!(state.join(file).exists(), "{file}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let err = format!("{:#}", enroll(&opts).await.unwrap_err());
    assert!(err.contains("already enrolled"), "{err}");

    // A run: start event first, shutdown event last, every batch acknowledged.
    let config = AgentConfig::default();
    run_for(&config, &state, 2.5).await;
    let first_run = {
        let s = fake.stored.lock().unwrap();
        let seqs: Vec<u64> = s.batches.iter().map(|b| b.sequence).collect();
        assert!(seqs.len() >= 3, "{seqs:?}");
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert_eq!(kinds(&s.batches[0]), vec![EventKind::AgentStart]);
        assert!(s.batches[0].inventory.is_some());
        assert!(s.batches[1].inventory.is_none(), "inventory sent once");
        assert_eq!(kinds(s.batches.last().unwrap()), vec![EventKind::Shutdown]);
        s.highest
    };
    let status = vakt_agent::status::read(&state).unwrap();
    assert_eq!(status.acked_sequence, first_run);
    assert_eq!(status.spool_reports, 0);

    // A batch the collector refuses is dropped once and counted, not retried forever.
    fake.stored.lock().unwrap().reject = Some(first_run + 1);
    run_for(&config, &state, 3.5).await;
    {
        let s = fake.stored.lock().unwrap();
        let after: Vec<&ReportBatch> = s
            .batches
            .iter()
            .filter(|b| b.sequence > first_run)
            .collect();
        assert!(!after.is_empty());
        assert_eq!(after[0].sequence, first_run + 2);
        assert_eq!(after[0].dropped_reports, 1);
        assert!(after.windows(2).all(|w| w[0].sequence < w[1].sequence));
    }
    let second_run = fake.stored.lock().unwrap().highest;

    // An untrusted server gets nothing; the spool keeps it all for later.
    let other = new_ca("some other CA");
    let wrong_ca = dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, &other.pem).unwrap();
    let untrusting = AgentConfig {
        ca: Some(wrong_ca),
        ..AgentConfig::default()
    };
    run_for(&untrusting, &state, 2.5).await;
    assert_eq!(fake.stored.lock().unwrap().highest, second_run);
    let spooled = vakt_agent::status::read(&state).unwrap().spool_reports;
    assert!(spooled >= 2, "{spooled}");

    // Trusted again, behind a first collector that is down: the agent fails
    // over, and the backlog arrives in order, nothing lost or reordered.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("https://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let failover = AgentConfig {
        collectors: vec![dead_url, opts.collector.clone()],
        ..AgentConfig::default()
    };
    run_for(&failover, &state, 3.0).await;
    let tail: Vec<u64> = fake
        .stored
        .lock()
        .unwrap()
        .batches
        .iter()
        .map(|b| b.sequence)
        .filter(|&q| q > second_run)
        .collect();
    assert_eq!(
        tail,
        (second_run + 1..=second_run + tail.len() as u64).collect::<Vec<_>>()
    );
    assert!(
        tail.len() > spooled,
        "the backlog plus at least the shutdown report"
    );
    assert_eq!(vakt_agent::status::read(&state).unwrap().spool_reports, 0);

    // Renewal swaps key and certificate together, and the new identity works.
    let old_cert = std::fs::read_to_string(state.join("cert.pem")).unwrap();
    let old_key = std::fs::read_to_string(state.join("key.pem")).unwrap();
    let endpoint = vakt_agent::transport::endpoint(
        &opts.collector,
        fake.ca.pem.as_bytes(),
        Some(vakt_agent::transport::device_identity(&state).unwrap()),
    )
    .unwrap();
    vakt_agent::renew::renew(&endpoint, &state).await.unwrap();
    assert_ne!(
        std::fs::read_to_string(state.join("cert.pem")).unwrap(),
        old_cert
    );
    assert_ne!(
        std::fs::read_to_string(state.join("key.pem")).unwrap(),
        old_key
    );
    let before = fake.stored.lock().unwrap().highest;
    run_for(&config, &state, 1.5).await;
    assert!(fake.stored.lock().unwrap().highest > before);
}
