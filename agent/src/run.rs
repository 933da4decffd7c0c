//! The agent's main loop: collect on an interval into the spool, and keep one
//! report stream to a collector that drains the spool in order.
//!
//! Everything runs on one task. Collection keeps going while the collector is
//! unreachable; the spool is the only hand-off between the two halves, so a
//! crash at any point loses at most the batch being written.

use crate::batch;
use crate::collect::Collector;
use crate::config::{AgentConfig, DEFAULT_INTERVAL, DEFAULT_INVENTORY_INTERVAL};
use crate::spool::Spool;
use crate::state::{self, Delivery, Enrollment};
use crate::transport::{self, Backoff};
use anyhow::Context;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Code, Status, Streaming};
use vakt_proto::v1::telemetry_client::TelemetryClient;
use vakt_proto::v1::{EventKind, Inventory, ReportAck, ReportBatch};

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
                let events = std::mem::take(&mut agent.pending_events);
                if let Err(e) = agent.report(events) {
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
                match agent.report(events) {
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

struct Agent {
    state_dir: PathBuf,
    collector: Collector,
    spool: Spool,
    delivery: Delivery,
    last_sequence: u64,
    interval: Duration,
    inventory_interval: Duration,
    inventory: Option<(Inventory, Vec<u8>, Instant)>,
    /// The newest spooled, unacknowledged batch that carries the full inventory.
    spooled_inventory: Option<(u64, Vec<u8>)>,
    force_full_inventory: bool,
    pending_events: Vec<vakt_proto::v1::Event>,
    settings: state::Settings,
}

impl Agent {
    fn open(
        config: &AgentConfig,
        state_dir: &Path,
        enrollment: &Enrollment,
    ) -> anyhow::Result<Self> {
        let spool = Spool::open(&state::spool_dir(state_dir), config.spool_max_bytes)?;
        let delivery = Delivery::load(state_dir);
        let last_sequence = state::load_sequence(state_dir)?
            .max(spool.max_sequence().unwrap_or(0))
            .max(delivery.acked_sequence);
        let from_settings = |secs: u32| (secs > 0).then(|| Duration::from_secs(u64::from(secs)));
        let mut delivery = delivery;
        let mut pending_events = vec![batch::event(
            EventKind::AgentStart,
            concat!("vakt-agent ", env!("CARGO_PKG_VERSION")),
        )];
        let boot = crate::collect::boot_time_unix_ms(&config.paths.procfs);
        // btime is derived from the wall clock and wobbles by a second or so.
        if delivery.boot_time_unix_ms != 0 && (boot - delivery.boot_time_unix_ms).abs() > 5_000 {
            pending_events.push(vakt_proto::v1::Event {
                kind: EventKind::Boot as i32,
                at_unix_ms: boot,
                detail: String::new(),
            });
        }
        if boot != 0 && boot != delivery.boot_time_unix_ms {
            delivery.boot_time_unix_ms = boot;
            delivery.save(state_dir)?;
        }
        Ok(Self {
            state_dir: state_dir.to_owned(),
            collector: Collector::new(&config.paths)?,
            spool,
            delivery,
            last_sequence,
            interval: config
                .interval
                .or_else(|| from_settings(enrollment.settings.report_interval_seconds))
                .unwrap_or(DEFAULT_INTERVAL),
            inventory_interval: config
                .inventory_interval
                .or_else(|| from_settings(enrollment.settings.inventory_interval_seconds))
                .unwrap_or(DEFAULT_INVENTORY_INTERVAL),
            inventory: None,
            spooled_inventory: None,
            force_full_inventory: false,
            pending_events,
            settings: enrollment.settings.clone(),
        })
    }

    /// Collects, assembles and spools one batch; returns its sequence.
    fn report(&mut self, events: Vec<vakt_proto::v1::Event>) -> anyhow::Result<u64> {
        let samples = self.collector.health();
        let stale = self
            .inventory
            .as_ref()
            .is_none_or(|(_, _, at)| at.elapsed() >= self.inventory_interval);
        if stale {
            let inventory = self.collector.inventory();
            let hash = vakt_proto::inventory_hash(&inventory);
            self.inventory = Some((inventory, hash, Instant::now()));
        }
        let (inventory, hash, _) = self
            .inventory
            .as_ref()
            .context("inventory missing after collection")?;
        let in_flight = self
            .spooled_inventory
            .as_ref()
            .is_some_and(|(_, h)| h == hash);
        let include = self.force_full_inventory
            || (state::to_hex(hash) != self.delivery.acked_inventory_hash && !in_flight);
        let sequence = self.last_sequence + 1;
        let batch = batch::assemble(
            sequence,
            vakt_proto::now_unix_ms(),
            samples,
            hash.clone(),
            include.then(|| inventory.clone()),
            events,
            self.delivery.pending_dropped,
        )?;
        // Recorded before the spool file exists, so no crash can hand the same
        // number out twice.
        state::save_sequence(&self.state_dir, sequence)?;
        self.last_sequence = sequence;
        let dropped = self.spool.push(&batch)?;
        if batch.dropped_reports > 0 || dropped.batches > 0 {
            if dropped.batches > 0 {
                tracing::warn!(
                    dropped = dropped.batches,
                    "spool full: dropped the oldest reports"
                );
            }
            // This batch announces what was pending; what it just pushed out
            // (and what those batches were announcing) waits for the next one.
            self.delivery.pending_dropped = dropped.to_announce();
            self.delivery.dropped_reports_total += dropped.batches;
            self.save_delivery();
        }
        if batch.inventory.is_some() {
            self.spooled_inventory = Some((sequence, hash.clone()));
            self.force_full_inventory = false;
        }
        self.forget_dropped_inventory();
        tracing::debug!(
            sequence,
            samples = batch.samples.len(),
            full_inventory = include,
            "report spooled"
        );
        Ok(sequence)
    }

    /// Queues spooled batches on the stream, oldest first, up to the window.
    fn fill(&mut self, session: &mut Session) {
        let acked = self.delivery.acked_sequence;
        session.sent_upto = session.sent_upto.max(acked);
        while self.spool.count_between(acked, session.sent_upto) < WINDOW {
            let Some(batch) = self.spool.next_after(session.sent_upto) else {
                break;
            };
            let sequence = batch.sequence;
            if session.tx.send(batch).is_err() {
                // The stream is gone; its end arrives as the next step.
                break;
            }
            session.sent_upto = sequence;
        }
    }

    /// Applies an acknowledgement; returns a new report interval if the collector set one.
    fn on_ack(&mut self, ack: ReportAck) -> Option<Duration> {
        let acked = ack.acked_sequence;
        if acked > self.delivery.acked_sequence {
            self.delivery.acked_sequence = acked;
            if let Err(e) = self.spool.ack(acked) {
                tracing::warn!("{e:#}");
            }
            if let Some((sequence, hash)) = &self.spooled_inventory
                && *sequence <= acked
            {
                self.delivery.acked_inventory_hash = state::to_hex(hash);
                self.spooled_inventory = None;
            }
            self.save_delivery();
        }
        if acked > self.last_sequence {
            // The collector has seen higher sequences than this state directory
            // remembers (restored from a backup?). Numbers at or below its mark
            // would be discarded as duplicates, so continue above it.
            tracing::warn!(
                acked,
                last = self.last_sequence,
                "collector is ahead; skipping sequence numbers"
            );
            self.last_sequence = acked;
            if let Err(e) = state::save_sequence(&self.state_dir, acked) {
                tracing::warn!("{e:#}");
            }
        }
        if ack.send_full_inventory && self.spooled_inventory.is_none() {
            self.force_full_inventory = true;
            self.delivery.acked_inventory_hash.clear();
        }
        self.apply_settings(ack.settings.as_ref()?)
    }

    fn apply_settings(&mut self, settings: &vakt_proto::v1::AgentSettings) -> Option<Duration> {
        if let Err(e) = vakt_proto::validate::agent_settings(settings) {
            tracing::warn!("ignoring settings from the collector: {e}");
            return None;
        }
        let mut changed_interval = None;
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        if settings.report_interval_seconds > 0
            && secs(settings.report_interval_seconds) != self.interval
        {
            self.interval = secs(settings.report_interval_seconds);
            tracing::info!(interval = %humantime::format_duration(self.interval), "collector changed the report interval");
            changed_interval = Some(self.interval);
        }
        if settings.inventory_interval_seconds > 0 {
            self.inventory_interval = secs(settings.inventory_interval_seconds);
        }
        let merged = state::Settings {
            report_interval_seconds: if settings.report_interval_seconds > 0 {
                settings.report_interval_seconds
            } else {
                self.settings.report_interval_seconds
            },
            inventory_interval_seconds: if settings.inventory_interval_seconds > 0 {
                settings.inventory_interval_seconds
            } else {
                self.settings.inventory_interval_seconds
            },
        };
        if merged != self.settings {
            // Remembered so that a restart keeps what the collector asked for.
            self.settings = merged.clone();
            let saved = Enrollment::load(&self.state_dir).and_then(|mut e| {
                e.settings = merged;
                e.save(&self.state_dir)
            });
            if let Err(e) = saved {
                tracing::warn!("cannot remember the collector's settings: {e:#}");
            }
        }
        changed_interval
    }

    /// The stream ended with an error: decide what it means; returns a log line.
    fn stream_failed(&mut self, status: &Status) -> String {
        match status.code() {
            Code::InvalidArgument => {
                // The collector refuses a batch it will refuse again. It stores in
                // order, so the culprit is the oldest unacknowledged one: drop it,
                // count it, and let the rest through.
                let culprit = self.spool.next_sequence_after(self.delivery.acked_sequence);
                if let Some(sequence) = culprit {
                    match self.spool.remove_one(sequence) {
                        Ok(carried) => self.delivery.pending_dropped += carried,
                        Err(e) => tracing::warn!("{e:#}"),
                    }
                    self.delivery.pending_dropped += 1;
                    self.delivery.dropped_reports_total += 1;
                    self.save_delivery();
                    self.forget_dropped_inventory();
                }
                format!(
                    "collector refused report {}: {}; dropped it",
                    culprit.map_or_else(|| "?".into(), |s| s.to_string()),
                    status.message()
                )
            }
            Code::Unauthenticated | Code::PermissionDenied => format!(
                "collector refused this device (revoked, or certificate expired?): {}",
                transport::status_line(status)
            ),
            _ => format!("report stream failed: {}", transport::status_line(status)),
        }
    }

    fn forget_dropped_inventory(&mut self) {
        if let Some((sequence, _)) = &self.spooled_inventory
            && !self.spool.contains(*sequence)
        {
            self.spooled_inventory = None;
        }
    }

    fn save_delivery(&self) {
        if let Err(e) = self.delivery.save(&self.state_dir) {
            tracing::warn!("{e:#}");
        }
    }
}
