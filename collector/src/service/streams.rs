//! Which report streams each device has open, to notice one identity used by
//! two agents at once.
//!
//! Two open streams alone are not proof: after a network drop the old stream
//! can linger until keepalive reaps it while the agent already reconnected.
//! The rule is therefore that *both* streams deliver batches after the newer
//! one opened — a lingering dead stream delivers nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Default)]
pub struct StreamRegistry {
    next_id: AtomicU64,
    open: Mutex<HashMap<String, Vec<OpenStream>>>,
}

struct OpenStream {
    id: u64,
    opened: Instant,
    last_batch: Option<Instant>,
}

/// Removes its stream from the registry when the stream ends.
pub struct StreamGuard<'a> {
    registry: &'a StreamRegistry,
    device_id: String,
    pub id: u64,
}

impl StreamRegistry {
    pub fn open(&self, device_id: &str) -> StreamGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(device_id.to_owned())
            .or_default()
            .push(OpenStream {
                id,
                opened: Instant::now(),
                last_batch: None,
            });
        StreamGuard {
            registry: self,
            device_id: device_id.to_owned(),
            id,
        }
    }

    /// Records a batch on `stream`; true if another stream of the same device
    /// has also delivered since the later of the two opened.
    pub fn batch_arrived(&self, device_id: &str, stream: u64) -> bool {
        let now = Instant::now();
        let mut open = self.lock();
        let Some(streams) = open.get_mut(device_id) else {
            return false;
        };
        let Some(opened) = streams.iter().find(|s| s.id == stream).map(|s| s.opened) else {
            return false;
        };
        let concurrent = streams.iter().any(|other| {
            other.id != stream
                && other
                    .last_batch
                    .is_some_and(|at| at > opened.max(other.opened))
        });
        if let Some(me) = streams.iter_mut().find(|s| s.id == stream) {
            me.last_batch = Some(now);
        }
        concurrent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<OpenStream>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        let mut open = self.registry.lock();
        if let Some(streams) = open.get_mut(&self.device_id) {
            streams.retain(|s| s.id != self.id);
            if streams.is_empty() {
                open.remove(&self.device_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_is_not_a_clone_but_two_live_streams_are() {
        let registry = StreamRegistry::default();
        let old = registry.open("d-1");
        assert!(!registry.batch_arrived("d-1", old.id));
        // The agent reconnects; the old stream lingers but stays silent.
        let new = registry.open("d-1");
        assert!(!registry.batch_arrived("d-1", new.id));
        assert!(!registry.batch_arrived("d-1", new.id));
        // Now the old stream delivers too: two agents.
        assert!(registry.batch_arrived("d-1", old.id));
        drop(old);
        assert!(!registry.batch_arrived("d-1", new.id));
        drop(new);
        assert!(registry.open.lock().unwrap().is_empty());
    }
}
