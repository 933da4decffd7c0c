//! The agent's state between loop steps: what is spooled, what the collector
//! has acknowledged, and how each report is assembled. Split from the loop in
//! `mod.rs`, which only decides what happens next.

use super::software::SoftwareSync;
use super::{Session, WINDOW};
use crate::batch;
use crate::collect::Collector;
use crate::config::{AgentConfig, DEFAULT_INTERVAL, DEFAULT_INVENTORY_INTERVAL};
use crate::spool::Spool;
use crate::state::{self, Delivery, Enrollment};
use crate::transport;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Code, Status};
use vakt_proto::v1::{EventKind, Inventory, ReportAck};

pub(super) struct Agent {
    pub(super) state_dir: PathBuf,
    pub(super) collector: Collector,
    pub(super) spool: Spool,
    pub(super) delivery: Delivery,
    pub(super) last_sequence: u64,
    pub(super) interval: Duration,
    pub(super) inventory_interval: Duration,
    pub(super) inventory: Option<(Inventory, Vec<u8>, Instant)>,
    /// The newest spooled, unacknowledged batch that carries the full inventory.
    pub(super) spooled_inventory: Option<(u64, Vec<u8>)>,
    pub(super) force_full_inventory: bool,
    pub(super) pending_events: Vec<vakt_proto::v1::Event>,
    pub(super) settings: state::Settings,
    pub(super) software: SoftwareSync,
    /// Tablet-gateway sources, when configured; their children ride along.
    pub(super) gateway: Option<crate::gateway::Gateway>,
}

impl Agent {
    pub(super) fn open(
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
            software: SoftwareSync::load(state_dir),
            gateway: crate::gateway::Gateway::start(&config.gateway),
        })
    }

    /// Collects, assembles and spools one batch; returns its sequence.
    /// `in_flight_upto`: the highest sequence queued on a live stream, which
    /// the spool must not drop to make room (see [`Spool::push`]).
    pub(super) fn report(
        &mut self,
        events: Vec<vakt_proto::v1::Event>,
        in_flight_upto: u64,
    ) -> anyhow::Result<u64> {
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
        let mut batch = batch::assemble(
            sequence,
            vakt_proto::now_unix_ms(),
            samples,
            hash.clone(),
            include.then(|| inventory.clone()),
            events,
            self.delivery.pending_dropped,
        )?;
        let collector = &mut self.collector;
        let current_hash = collector.software_hash();
        let software = self
            .software
            .prepare(current_hash.as_deref(), || collector.software());
        batch.software_hash = software.hash;
        batch.software = software.changes;
        let mut software_pending = software.pending;
        if let Some(Err(e)) = batch
            .software
            .as_ref()
            .map(|c| vakt_proto::validate::software_changes("software", c))
        {
            // The reader keeps packages within the limits; should it ever
            // fail, the collector sees the hash and asks for the full list.
            tracing::warn!("leaving out software changes the collector would refuse: {e}");
            batch.software = None;
            software_pending = None;
        }
        // Validated line by line by the gateway module, deduplicated, capped.
        if let Some(gateway) = &self.gateway {
            (batch.children, batch.invalid_child_lines) = gateway.take();
        }
        // Spooled first, then recorded: a start takes the next number above
        // the spool's highest (`open`), so a kill between the two lines
        // neither hands `sequence` out twice nor leaves a gap the collector
        // would take for a lost report. Nothing is sent before both are done
        // (no await in between), so no acknowledgement can empty the spool of
        // `sequence` before it is recorded.
        let dropped = self.spool.push(&batch, in_flight_upto)?;
        self.last_sequence = sequence;
        state::save_sequence(&self.state_dir, sequence)?;
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
        if let (Some(changes), Some(pending)) = (&batch.software, software_pending) {
            tracing::debug!(
                sequence,
                full = changes.full,
                upserted = changes.upserted.len(),
                removed = changes.removed.len(),
                "software changes spooled"
            );
            self.software.spooled(sequence, pending);
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
    pub(super) fn fill(&mut self, session: &mut Session) {
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
    pub(super) fn on_ack(&mut self, ack: ReportAck) -> Option<Duration> {
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
        self.software
            .on_ack(ack.acked_sequence, ack.send_full_software);
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
    pub(super) fn stream_failed(&mut self, status: &Status) -> String {
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
        let spool = &self.spool;
        self.software
            .forget_unless(|sequence| spool.contains(sequence));
    }

    fn save_delivery(&self) {
        if let Err(e) = self.delivery.save(&self.state_dir) {
            tracing::warn!("{e:#}");
        }
    }
}
