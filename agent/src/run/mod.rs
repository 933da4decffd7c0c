//! The agent's main loop: collect on an interval into the spool, and keep one
//! report stream to a collector that drains the spool in order.
//!
//! Everything runs on one task. Collection keeps going while the collector is
//! unreachable; the spool is the only hand-off between the two halves, so a
//! crash at any point loses at most the batch being written.

mod agent;
mod software;

use crate::batch;
use crate::config::AgentConfig;
use crate::state::{self, Enrollment};
use crate::transport::{self, Backoff};
use agent::Agent;
use anyhow::Context;
pub(crate) use software::full as software_full;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Status, Streaming};
use vakt_proto::v1::telemetry_client::TelemetryClient;
use vakt_proto::v1::{EventKind, ReportAck, ReportBatch};

/// Batches sent but not yet acknowledged, at most.
const WINDOW: usize = 32;
/// How long a shutting-down agent waits for its last batch to be acknowledged.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The first report waits this long so that CPU utilization has a time base.
const FIRST_REPORT_DELAY: Duration = Duration::from_millis(500);

type Connecting =
    Pin<Box<dyn Future<Output = Result<Box<Streaming<ReportAck>>, LinkError>> + Send>>;

enum LinkError {
    Transport(String),
    Status(Status),
}

enum Stage {
    Connecting(Connecting),
    Up(Box<Streaming<ReportAck>>),
}

struct Session {
    url: String,
    tx: mpsc::UnboundedSender<ReportBatch>,
    sent_upto: u64,
    stage: Stage,
    last_progress: Instant,
}

enum Link {
    Down(Pin<Box<Sleep>>),
    Open(Box<Session>),
}

enum Step {
    Tick,
    Shutdown,
    Deadline,
    Renew,
    Retry,
    Connected(Result<Box<Streaming<ReportAck>>, LinkError>),
    Ack(Result<Option<ReportAck>, Status>),
    Watchdog,
}

async fn link_step(link: &mut Link) -> Step {
    match link {
        Link::Down(retry) => {
            retry.as_mut().await;
            Step::Retry
        }
        Link::Open(session) => match &mut session.stage {
            Stage::Connecting(fut) => Step::Connected(fut.as_mut().await),
            Stage::Up(acks) => Step::Ack(acks.message().await),
        },
    }
}

/// Runs until `shutdown` resolves, then reports a shutdown event and returns.
pub async fn run(
    config: AgentConfig,
    state_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    state::recover_renewal(&state_dir)?;
    let enrollment = Enrollment::load(&state_dir)?;
    let collectors = if config.collectors.is_empty() {
        vec![enrollment.collector.clone()]
    } else {
        config.collectors.clone()
    };
    let ca_path = config
        .ca
        .clone()
        .unwrap_or_else(|| state::ca_path(&state_dir));
    let mut endpoints = build_endpoints(&collectors, &ca_path, &state_dir)?;
    let mut agent = Agent::open(&config, &state_dir, &enrollment)?;
    tracing::info!(
        device_id = %enrollment.device_id,
        collectors = ?collectors,
        interval = %humantime::format_duration(agent.interval),
        spooled = agent.spool.len(),
        "agent started"
    );

    let mut ticker = tokio::time::interval_at(Instant::now() + FIRST_REPORT_DELAY, agent.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut collector_index = 0;
    let mut link = Link::Down(Box::pin(tokio::time::sleep(FIRST_REPORT_DELAY)));
    let mut renew_at = next_renewal(&state_dir);
    let mut shutting_down: Option<(Instant, u64)> = None;
    tokio::pin!(shutdown);
    let mut watchdog = crate::service::watchdog_interval().map(tokio::time::interval);
    let mut sleep = crate::sleep::Detector::default();
    if let Some(clocks) = crate::sleep::Clocks::now() {
        sleep.observe(clocks);
    }
    crate::service::notify("READY=1");

    loop {
        if let Link::Open(session) = &mut link {
            agent.fill(session);
        }
        if let Some((_, last)) = shutting_down
            && agent.delivery.acked_sequence >= last
        {
            tracing::info!("shutdown report acknowledged");
            break;
        }
        let deadline = shutting_down.map_or_else(Instant::now, |(d, _)| d);
        let step = tokio::select! {
            _ = &mut shutdown, if shutting_down.is_none() => Step::Shutdown,
            _ = tokio::time::sleep_until(deadline), if shutting_down.is_some() => Step::Deadline,
            _ = ticker.tick(), if shutting_down.is_none() => Step::Tick,
            _ = tokio::time::sleep_until(renew_at), if shutting_down.is_none() => Step::Renew,
            step = link_step(&mut link) => step,
            _ = tick_opt(&mut watchdog) => Step::Watchdog,
        };
        let mut failed: Option<String> = None;
        match step {
            Step::Tick => {
                let mut events = std::mem::take(&mut agent.pending_events);
                if let Some(slept) = crate::sleep::Clocks::now().and_then(|c| sleep.observe(c)) {
                    tracing::info!(
                        asleep_at_unix_ms = slept.asleep_at_unix_ms,
                        resumed_at_unix_ms = slept.resumed_at_unix_ms,
                        "the machine was suspended"
                    );
                    events.extend(slept.events());
                    // After a night in a bag the backoff has grown and an open
                    // stream is probably dead (NAT state, Wi-Fi changed) though
                    // keepalive would take 40 s to say so. Reconnect now, so the
                    // resume reaches the collector at once.
                    backoff.reset();
                    match &mut link {
                        Link::Down(retry) => retry.as_mut().reset(Instant::now()),
                        Link::Open(_) => failed = Some("the machine slept; reconnecting".into()),
                    }
                }
                if let Err(e) = agent.report(events, in_flight_upto(&link)) {
                    tracing::error!("cannot store report: {e:#}");
                }
                if let Link::Open(session) = &link {
                    let stall = (agent.interval * 3).max(Duration::from_secs(60));
                    let waiting = session.sent_upto > agent.delivery.acked_sequence;
                    if waiting && session.last_progress.elapsed() > stall {
                        failed = Some(format!(
                            "no acknowledgement from {} for {}",
                            session.url,
                            humantime::format_duration(stall)
                        ));
                    }
                }
            }
            Step::Watchdog => crate::service::notify("WATCHDOG=1"),
            Step::Shutdown => {
                tracing::info!("shutting down");
                crate::service::notify("STOPPING=1");
                let events = vec![batch::event(EventKind::Shutdown, "agent stopping")];
                match agent.report(events, in_flight_upto(&link)) {
                    Ok(last) => {
                        shutting_down = Some((Instant::now() + SHUTDOWN_GRACE, last));
                        if let Link::Down(retry) = &mut link {
                            retry.as_mut().reset(Instant::now());
                        }
                    }
                    Err(e) => {
                        tracing::error!("cannot store the shutdown report: {e:#}");
                        break;
                    }
                }
            }
            Step::Deadline => {
                tracing::warn!(
                    spooled = agent.spool.len(),
                    "exiting before the collector acknowledged everything; the spool keeps it"
                );
                break;
            }
            Step::Renew => {
                let endpoint = &endpoints[collector_index % endpoints.len()];
                match crate::renew::renew(endpoint, &state_dir).await {
                    Ok(not_after) => {
                        tracing::info!(not_after_unix_ms = not_after, "certificate renewed");
                        match build_endpoints(&collectors, &ca_path, &state_dir) {
                            Ok(new) => endpoints = new,
                            Err(e) => tracing::error!("cannot load the renewed identity: {e:#}"),
                        }
                        renew_at = next_renewal(&state_dir);
                    }
                    Err(e) => {
                        tracing::warn!("certificate renewal failed, retrying: {e:#}");
                        renew_at = Instant::now()
                            + Backoff::new(Duration::from_secs(60), Duration::from_secs(3600))
                                .next_delay()
                                .max(Duration::from_secs(30));
                    }
                }
            }
            Step::Retry => {
                let index = collector_index % endpoints.len();
                let url = collectors[index].clone();
                tracing::debug!(collector = %url, "connecting");
                let (tx, rx) = mpsc::unbounded_channel();
                link = Link::Open(Box::new(Session {
                    stage: Stage::Connecting(open_stream(endpoints[index].clone(), rx)),
                    url,
                    tx,
                    sent_upto: agent.delivery.acked_sequence,
                    last_progress: Instant::now(),
                }));
            }
            Step::Connected(Ok(acks)) => {
                if let Link::Open(session) = &mut link {
                    tracing::info!(collector = %session.url, "connected");
                    session.stage = Stage::Up(acks);
                    session.last_progress = Instant::now();
                }
            }
            Step::Connected(Err(LinkError::Transport(e))) => failed = Some(e),
            Step::Connected(Err(LinkError::Status(status))) | Step::Ack(Err(status)) => {
                failed = Some(agent.stream_failed(&status));
            }
            Step::Ack(Ok(Some(ack))) => {
                backoff.reset();
                if let Link::Open(session) = &mut link {
                    session.last_progress = Instant::now();
                }
                if let Some(interval) = agent.on_ack(ack) {
                    ticker = tokio::time::interval_at(Instant::now() + interval, interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
            Step::Ack(Ok(None)) => failed = Some("collector closed the report stream".into()),
        }
        if let Some(reason) = failed {
            let mut next_delay = Duration::from_millis(250);
            let url = match &link {
                Link::Open(session) => session.url.clone(),
                Link::Down(_) => String::new(),
            };
            if shutting_down.is_some() {
                // Retrying quickly until the grace period ends; the exit warning sums it up.
                tracing::debug!(collector = %url, "{reason}");
            } else {
                let delay = backoff.next_delay();
                tracing::warn!(
                    collector = %url,
                    retry_in = %humantime::format_duration(Duration::from_millis(
                        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
                    )),
                    "{reason}"
                );
                next_delay = delay;
            }
            // Fail over: the next attempt goes to the next collector in the list.
            collector_index = (collector_index + 1) % endpoints.len();
            link = Link::Down(Box::pin(tokio::time::sleep(next_delay)));
        }
    }
    drop(link);
    agent.delivery.save(&state_dir)?;
    Ok(())
}

/// The highest sequence handed to the current stream, 0 when there is none.
fn in_flight_upto(link: &Link) -> u64 {
    match link {
        Link::Open(session) => session.sent_upto,
        Link::Down(_) => 0,
    }
}

/// Ticks of an optional interval; never resolves when there is none.
async fn tick_opt(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn build_endpoints(
    collectors: &[String],
    ca_path: &Path,
    state_dir: &Path,
) -> anyhow::Result<Vec<Endpoint>> {
    anyhow::ensure!(!collectors.is_empty(), "no collector configured");
    let ca_pem = std::fs::read(ca_path)
        .with_context(|| format!("cannot read CA file {}", ca_path.display()))?;
    let identity = transport::device_identity(state_dir)?;
    collectors
        .iter()
        .map(|url| transport::endpoint(url, &ca_pem, Some(identity.clone())))
        .collect()
}

fn next_renewal(state_dir: &Path) -> Instant {
    match crate::renew::certificate_validity(state_dir) {
        Ok((not_before, not_after)) => {
            let delay =
                crate::renew::delay_until_renewal(not_before, not_after, vakt_proto::now_unix_ms());
            // Right after start the stream matters more; renew a little later.
            Instant::now() + delay.max(Duration::from_secs(10))
        }
        Err(e) => {
            tracing::warn!("cannot read the device certificate's validity: {e:#}");
            Instant::now() + Duration::from_secs(3600)
        }
    }
}

fn open_stream(endpoint: Endpoint, rx: mpsc::UnboundedReceiver<ReportBatch>) -> Connecting {
    Box::pin(async move {
        let channel = transport::connect(&endpoint)
            .await
            .map_err(|e| LinkError::Transport(format!("cannot connect: {e:#}")))?;
        let mut client = TelemetryClient::new(channel);
        let call = client.report(UnboundedReceiverStream::new(rx));
        match tokio::time::timeout(Duration::from_secs(20), call).await {
            Err(_) => Err(LinkError::Transport(
                "collector did not open the report stream within 20 s".into(),
            )),
            Ok(Err(status)) => Err(LinkError::Status(status)),
            Ok(Ok(response)) => Ok(Box::new(response.into_inner())),
        }
    })
}
