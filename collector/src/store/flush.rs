//! Group commit: one flusher task makes sled durable for every writer that is
//! waiting, and starts the next flush as soon as the last one ends.
//!
//! Why not a timer: a fixed flush interval caps throughput at
//! in-flight/interval. Why not `flush_async` per writer: sled 0.34's
//! `flush_async` hangs with 8+ concurrent calls. A waiter registers *after* its
//! write is applied, and the flusher drains all registered waiters *before*
//! calling `flush`, so each flush covers every write of the waiters it answers.

use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), Arc<sled::Error>>>;

pub struct Flusher {
    waiters: mpsc::UnboundedSender<Waiter>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("sled flush failed: {0}")]
    Sled(Arc<sled::Error>),
    #[error("the flusher has stopped")]
    Stopped,
}

impl Flusher {
    /// Starts the flusher on the current tokio runtime.
    pub fn start(db: sled::Db) -> Self {
        Self::start_with(db, Gather::from_env())
    }

    /// Starts the flusher with an explicit gathering policy.
    pub fn start_with(db: sled::Db, gather: Gather) -> Self {
        tracing::debug!(?gather, "group commit gathering");
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let task = tokio::spawn(async move {
            let mut stats = Stats::default();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(waiter) = rx.try_recv() {
                    batch.push(waiter);
                }
                gather.more(&mut rx, &mut batch).await;
                let db = db.clone();
                let started = std::time::Instant::now();
                // sled's flush blocks on fsync: keep it off the async threads.
                let result = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(Arc::new(e)),
                    Err(join) => Err(Arc::new(sled::Error::ReportableBug(format!(
                        "flush task failed: {join}"
                    )))),
                };
                stats.record(batch.len(), started.elapsed());
                for waiter in batch {
                    // A waiter that gave up (its RPC was cancelled) is fine to ignore.
                    let _ = waiter.send(result.clone());
                }
            }
        });
        Self { waiters: tx, task }
    }

    /// Stops the flusher after the waiters already queued, and releases its
    /// handle on the database.
    pub async fn shutdown(self) {
        drop(self.waiters);
        let _ = self.task.await;
    }

    /// Returns once everything written before this call is on disk.
    pub async fn durable(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        self.waiters.send(tx).map_err(|_| FlushError::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FlushError::Sled(e)),
            Err(_) => Err(FlushError::Stopped),
        }
    }
}

/// How the flusher waits for more writers before a flush that would answer
/// only a few. Every flush costs sled's IO threads a buffer seal, a write and
/// an fsync whatever it covers; under saturation the streams are CPU-bound
/// reaching the flush, so waiting a little for them makes flushes fewer and
/// larger. Durability is unchanged: a waiter is still answered only by a
/// flush that started after it registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gather {
    /// Flush as soon as the previous flush ends.
    Off,
    /// Yield to the runtime up to this many times while each yield brings
    /// new waiters: the streams that are already runnable reach their flush,
    /// and an idle collector pays nothing (no waiter comes, no wait).
    Yield(u32),
    /// Wait up to this long for more waiters.
    Window(std::time::Duration),
}

/// Gathering stops once a flush would answer this many waiters.
const GATHER_ENOUGH: usize = 32;

impl Gather {
    /// The default policy, or `VAKT_FLUSH_GATHER` (`off`, `yield:N`, or a
    /// duration such as `500us`) — a tuning knob for the ingest benchmark
    /// (`tests/bench/ingest_ratio.sh`), not a user setting.
    pub fn from_env() -> Self {
        let Ok(text) = std::env::var("VAKT_FLUSH_GATHER") else {
            return Self::DEFAULT;
        };
        Self::parse(&text).unwrap_or_else(|| {
            tracing::warn!(value = %text, "VAKT_FLUSH_GATHER not understood; using the default");
            Self::DEFAULT
        })
    }

    /// Measured side by side (docs/BENCHMARKS.md, "Ingest ceiling ratio"):
    /// 700 flushes/s answering 2.4 waiters each became 43/s answering 39,
    /// throughput +2 %, p99 ack lower; an idle collector waits for nothing.
    pub const DEFAULT: Self = Self::Yield(8);

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "off" {
            return Some(Self::Off);
        }
        if let Some(n) = text.strip_prefix("yield:") {
            return n.parse().ok().map(Self::Yield);
        }
        humantime::parse_duration(text).ok().map(Self::Window)
    }

    async fn more(self, rx: &mut mpsc::UnboundedReceiver<Waiter>, batch: &mut Vec<Waiter>) {
        match self {
            Self::Off => {}
            Self::Yield(times) => {
                for _ in 0..times {
                    if batch.len() >= GATHER_ENOUGH {
                        break;
                    }
                    tokio::task::yield_now().await;
                    let before = batch.len();
                    while let Ok(waiter) = rx.try_recv() {
                        batch.push(waiter);
                    }
                    if batch.len() == before {
                        break;
                    }
                }
            }
            Self::Window(window) => {
                let deadline = tokio::time::Instant::now() + window;
                while batch.len() < GATHER_ENOUGH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(waiter)) => batch.push(waiter),
                        // Timed out, or shutting down: flush what we have.
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
    }
}

/// Group-commit figures, logged at debug level every few seconds (how many
/// waiters a flush answers and how long it takes tell whether fsync or CPU
/// limits ingest).
#[derive(Default)]
struct Stats {
    since: Option<std::time::Instant>,
    flushes: u64,
    waiters: u64,
    busy: std::time::Duration,
    slowest: std::time::Duration,
}

impl Stats {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    fn record(&mut self, waiters: usize, took: std::time::Duration) {
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        self.flushes += 1;
        self.waiters += waiters as u64;
        self.busy += took;
        self.slowest = self.slowest.max(took);
        let elapsed = since.elapsed();
        if elapsed >= Self::EVERY {
            tracing::debug!(
                flushes_per_s = self.flushes as f64 / elapsed.as_secs_f64(),
                waiters_per_flush = self.waiters as f64 / self.flushes as f64,
                mean_flush_ms = self.busy.as_secs_f64() * 1e3 / self.flushes as f64,
                max_flush_ms = self.slowest.as_secs_f64() * 1e3,
                "group commit"
            );
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_policies_parse() {
        assert_eq!(Gather::parse("off"), Some(Gather::Off));
        assert_eq!(Gather::parse("yield:4"), Some(Gather::Yield(4)));
        assert_eq!(
            Gather::parse("500us"),
            Some(Gather::Window(std::time::Duration::from_micros(500)))
        );
        assert_eq!(Gather::parse("yield:x"), None);
        assert_eq!(Gather::parse("soon"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_waiters_all_complete() {
        for gather in [
            Gather::Off,
            Gather::Yield(4),
            Gather::Window(std::time::Duration::from_millis(2)),
        ] {
            many_waiters_complete(gather).await;
        }
    }

    async fn many_waiters_complete(gather: Gather) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let flusher = std::sync::Arc::new(Flusher::start_with(db.clone(), gather));
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let db = db.clone();
            let flusher = flusher.clone();
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &b"x"[..]).unwrap();
                flusher.durable().await.unwrap();
            }));
        }
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(30), t)
                .await
                .expect("flush waiter hung")
                .unwrap();
        }
    }
}
