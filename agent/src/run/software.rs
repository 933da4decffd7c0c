//! Installed software, sent as a diff against the set the collector holds.
//!
//! The agent remembers the last set the collector acknowledged
//! (`state_dir/software.pb`, written atomically) and the newest set it has
//! spooled but not yet seen acknowledged. A new change is computed against the
//! spooled set if there is one (the collector applies batches in sequence
//! order, so changes chain), else against the acknowledged one. Every change
//! names the hash of the set it applies to; if the collector's differs (a
//! spooled change was dropped, the collector lost its data) it ignores the
//! change and asks for the full list, which the next report carries.

use crate::collect::software::{Software, SoftwareSet};
use prost::Message;
use std::path::{Path, PathBuf};
use vakt_proto::v1::{PackageKey, SoftwareChanges};

pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("software.pb")
}

/// A change that went into a spooled batch.
#[derive(Debug)]
pub(super) struct Spooled {
    sequence: u64,
    software: Software,
    full: bool,
}

/// What the next batch carries.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    /// The agent's current set's hash (empty: unknown).
    pub hash: Vec<u8>,
    pub changes: Option<SoftwareChanges>,
    /// To hand back through [`SoftwareSync::spooled`] once the batch is spooled.
    pub pending: Option<(Software, bool)>,
}

pub(super) struct SoftwareSync {
    path: PathBuf,
    /// The hash of what the collector acknowledged last; None: nothing (send
    /// in full). The set itself stays on disk (`software.pb`) and is read
    /// only to compute a change: holding it would cost more memory than the
    /// rest of the agent's heap.
    acked: Option<Vec<u8>>,
    spooled: Option<Spooled>,
    force_full: bool,
}

impl SoftwareSync {
    /// Loads the acknowledged set's hash; a missing or damaged file means the
    /// next report sends the full list, which is always safe.
    pub(super) fn load(state_dir: &Path) -> Self {
        let path = state_path(state_dir);
        let acked = read_acked(&path).map(|s| s.hash);
        Self {
            path,
            acked,
            spooled: None,
            force_full: false,
        }
    }

    /// The software fields of the next batch, given the current reading's
    /// hash; `load_current` reads the current set, called only when the set
    /// differs from the one the collector has (or will have).
    pub(super) fn prepare(
        &self,
        current_hash: Option<&[u8]>,
        load_current: impl FnOnce() -> Option<Software>,
    ) -> Prepared {
        let Some(current_hash) = current_hash else {
            return Prepared::default();
        };
        let base_hash = match &self.spooled {
            Some(s) => Some(s.software.hash.as_slice()),
            None => self.acked.as_deref(),
        };
        if !self.force_full && base_hash == Some(current_hash) {
            return Prepared {
                hash: current_hash.to_vec(),
                ..Default::default()
            };
        }
        let Some(current) = load_current() else {
            // Gone between the stat and the read: nothing to send this time.
            return Prepared {
                hash: current_hash.to_vec(),
                ..Default::default()
            };
        };
        let acked;
        let base = match &self.spooled {
            _ if self.force_full => None,
            Some(s) => Some(&s.software),
            None => {
                acked = self.read_acked();
                acked.as_ref()
            }
        };
        let changes = match base {
            Some(base) if base.hash == current.hash => None,
            Some(base) => {
                let changes = diff(base, &current);
                // A diff larger than the list itself is worth nothing.
                Some(
                    if changes.upserted.len() + changes.removed.len() > current.packages.len() {
                        full(&current)
                    } else {
                        changes
                    },
                )
            }
            None => Some(full(&current)),
        };
        Prepared {
            hash: current.hash.clone(),
            pending: changes.as_ref().map(|c| (current, c.full)),
            changes,
        }
    }

    /// The acknowledged set, from disk, if it is the one whose hash we hold.
    fn read_acked(&self) -> Option<Software> {
        let acked = read_acked(&self.path)?;
        (Some(&acked.hash) == self.acked.as_ref()).then_some(acked)
    }

    /// The batch `sequence` carrying a change is in the spool.
    pub(super) fn spooled(&mut self, sequence: u64, pending: (Software, bool)) {
        let (software, full) = pending;
        if full {
            self.force_full = false;
        }
        self.spooled = Some(Spooled {
            sequence,
            software,
            full,
        });
    }

    /// Applies an acknowledgement. Errors saving the acknowledged set are
    /// logged: the worst outcome is one more full list after a restart.
    pub(super) fn on_ack(&mut self, acked_sequence: u64, send_full: bool) {
        if self
            .spooled
            .as_ref()
            .is_some_and(|s| s.sequence <= acked_sequence)
            && let Some(spooled) = self.spooled.take()
        {
            self.acked = match self.save(&spooled.software) {
                Ok(()) => Some(spooled.software.hash),
                Err(e) => {
                    // Without the set on disk there is nothing to diff
                    // against: the next change goes in full.
                    tracing::warn!("{e:#}");
                    None
                }
            };
        }
        // A full list already on its way answers the request.
        if send_full && !self.spooled.as_ref().is_some_and(|s| s.full) {
            tracing::info!("collector asked for the full software list");
            self.force_full = true;
        }
    }

    /// The spooled change's batch left the spool without an acknowledgement
    /// (dropped when full, or refused): later changes go against the
    /// acknowledged set again.
    pub(super) fn forget_unless(&mut self, in_spool: impl Fn(u64) -> bool) {
        if self.spooled.as_ref().is_some_and(|s| !in_spool(s.sequence)) {
            self.spooled = None;
        }
    }

    fn save(&self, software: &Software) -> anyhow::Result<()> {
        let stored = SoftwareChanges {
            full: true,
            upserted: software.packages.values().cloned().collect(),
            result_hash: software.hash.clone(),
            ..Default::default()
        };
        crate::state::write_atomic(&self.path, &stored.encode_to_vec(), 0o644, true)
    }
}

/// The set stored in `path` if it is whole (its hash matches).
fn read_acked(path: &Path) -> Option<Software> {
    let bytes = std::fs::read(path).ok()?;
    let stored = SoftwareChanges::decode(bytes.as_slice()).ok()?;
    let packages: SoftwareSet = stored
        .upserted
        .into_iter()
        .map(|p| ((p.name.clone(), p.architecture.clone()), p))
        .collect();
    let software = Software::new(packages);
    (software.hash == stored.result_hash).then_some(software)
}

pub fn full(current: &Software) -> SoftwareChanges {
    SoftwareChanges {
        full: true,
        upserted: current.packages.values().cloned().collect(),
        removed: Vec::new(),
        base_hash: Vec::new(),
        result_hash: current.hash.clone(),
    }
}

/// The incremental change that turns `base` into `current`.
pub fn diff(base: &Software, current: &Software) -> SoftwareChanges {
    let upserted = current
        .packages
        .iter()
        .filter(|(key, p)| base.packages.get(*key) != Some(p))
        .map(|(_, p)| p.clone())
        .collect();
    let removed = base
        .packages
        .keys()
        .filter(|key| !current.packages.contains_key(*key))
        .map(|(name, architecture)| PackageKey {
            name: name.clone(),
            architecture: architecture.clone(),
        })
        .collect();
    SoftwareChanges {
        full: false,
        upserted,
        removed,
        base_hash: base.hash.clone(),
        result_hash: current.hash.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vakt_proto::v1::Package;

    fn set(packages: &[(&str, &str)]) -> Software {
        Software::new(
            packages
                .iter()
                .map(|(name, version)| {
                    let p = Package {
                        name: (*name).into(),
                        version: (*version).into(),
                        architecture: "amd64".into(),
                        source: "dpkg".into(),
                    };
                    ((p.name.clone(), p.architecture.clone()), p)
                })
                .collect(),
        )
    }

    /// `prepare` with the whole set at hand, as the collector module gives it.
    fn prep(sync: &SoftwareSync, current: Option<&Software>) -> Prepared {
        sync.prepare(current.map(|s| s.hash.as_slice()), || current.cloned())
    }

    /// Applies a change the way the collector does, for checking.
    fn apply(base: &Software, c: &SoftwareChanges) -> Software {
        let mut packages = if c.full {
            SoftwareSet::new()
        } else {
            assert_eq!(c.base_hash, base.hash);
            base.packages.clone()
        };
        for k in &c.removed {
            packages.remove(&(k.name.clone(), k.architecture.clone()));
        }
        for p in &c.upserted {
            packages.insert((p.name.clone(), p.architecture.clone()), p.clone());
        }
        let out = Software::new(packages);
        assert_eq!(out.hash, c.result_hash);
        out
    }

    #[test]
    fn diff_names_only_what_changed() {
        let a = set(&[("bash", "5.2"), ("curl", "7.88"), ("vim", "9.0")]);
        let b = set(&[("bash", "5.2"), ("curl", "8.0"), ("jq", "1.6")]);
        let d = diff(&a, &b);
        let names = |ps: &[Package]| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&d.upserted), ["curl", "jq"]);
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.removed[0].name, "vim");
        assert_eq!(apply(&a, &d), b);
    }

    #[test]
    fn first_report_is_full_then_diffs_chain_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut sync = SoftwareSync::load(dir.path());
        assert!(prep(&sync, None).changes.is_none(), "unknown: nothing sent");

        let a = set(&[("bash", "5.2"), ("vim", "9.0")]);
        let p = prep(&sync, Some(&a));
        assert!(p.changes.as_ref().unwrap().full);
        assert_eq!(p.hash, a.hash);
        sync.spooled(1, p.pending.unwrap());
        // Unchanged while the full list is in flight: nothing more to send.
        assert!(prep(&sync, Some(&a)).changes.is_none());

        let b = set(&[("bash", "5.3"), ("vim", "9.0")]);
        let p = prep(&sync, Some(&b));
        let change = p.changes.unwrap();
        assert!(!change.full);
        assert_eq!(change.base_hash, a.hash, "chained on the spooled set");
        sync.spooled(2, p.pending.unwrap());

        sync.on_ack(2, false);
        assert!(prep(&sync, Some(&b)).changes.is_none());
        // Remembered across a restart.
        let sync = SoftwareSync::load(dir.path());
        assert_eq!(sync.acked.as_ref(), Some(&b.hash));
        assert_eq!(sync.read_acked().as_ref(), Some(&b));
        let c = set(&[("vim", "9.0")]);
        let change = prep(&sync, Some(&c)).changes.unwrap();
        assert_eq!(
            (change.full, change.removed.len(), change.base_hash),
            (false, 1, b.hash.clone())
        );
    }

    #[test]
    fn an_unchanged_set_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut sync = SoftwareSync::load(dir.path());
        let a = set(&[("bash", "5.2")]);
        sync.spooled(1, prep(&sync, Some(&a)).pending.unwrap());
        sync.on_ack(1, false);
        let p = sync.prepare(Some(&a.hash), || panic!("read although unchanged"));
        assert!(p.changes.is_none());
        assert_eq!(p.hash, a.hash);
        // After a restart too: only the hash is loaded.
        let sync = SoftwareSync::load(dir.path());
        assert!(
            sync.prepare(Some(&a.hash), || panic!("read"))
                .changes
                .is_none()
        );
    }

    #[test]
    fn collector_asking_for_full_gets_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut sync = SoftwareSync::load(dir.path());
        let a = set(&[("bash", "5.2")]);
        let p = prep(&sync, Some(&a));
        sync.spooled(1, p.pending.unwrap());
        sync.on_ack(1, false);
        let b = set(&[("bash", "5.3")]);
        let p = prep(&sync, Some(&b));
        sync.spooled(2, p.pending.unwrap());
        // The collector had lost its list: diff 2 ignored, full requested.
        sync.on_ack(2, true);
        let p = prep(&sync, Some(&b));
        assert!(p.changes.as_ref().unwrap().full);
        sync.spooled(3, p.pending.unwrap());
        // Acks for batches before the full list still ask; it is on its way.
        sync.on_ack(2, true);
        assert!(prep(&sync, Some(&b)).changes.is_none());
        sync.on_ack(3, false);
        assert!(prep(&sync, Some(&b)).changes.is_none());
    }

    #[test]
    fn a_dropped_change_rebases_on_the_acknowledged_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut sync = SoftwareSync::load(dir.path());
        let a = set(&[("bash", "5.2")]);
        sync.spooled(1, prep(&sync, Some(&a)).pending.unwrap());
        sync.on_ack(1, false);
        let b = set(&[("bash", "5.3")]);
        sync.spooled(2, prep(&sync, Some(&b)).pending.unwrap());
        sync.forget_unless(|_| false);
        let change = prep(&sync, Some(&b)).changes.unwrap();
        assert_eq!(change.base_hash, a.hash);
    }

    #[test]
    fn a_damaged_state_file_means_full() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(state_path(dir.path()), b"\xff\xff not protobuf").unwrap();
        let sync = SoftwareSync::load(dir.path());
        let a = set(&[("bash", "5.2")]);
        assert!(prep(&sync, Some(&a)).changes.unwrap().full);
    }
}
