//! The agent's state directory and the small files in it.
//!
//! ```text
//! state_dir/
//!   key.pem          device private key (0600), generated here, never sent
//!   cert.pem         device certificate issued by the collector (0600)
//!   ca.pem           CA chain the collector returned at enrollment
//!   enrollment.json  device id, collector URL, settings, certificate expiry
//!   sequence         last report sequence number assigned (decimal)
//!   delivery.json    last acknowledged sequence and inventory hash
//!   software.pb      the software set the collector last acknowledged
//!   spool/           unacknowledged reports, one <sequence>.pb file each
//! ```

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/vakt-agent";

pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("key.pem")
}
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join("cert.pem")
}
pub fn ca_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}
pub fn enrollment_path(dir: &Path) -> PathBuf {
    dir.join("enrollment.json")
}
pub fn sequence_path(dir: &Path) -> PathBuf {
    dir.join("sequence")
}
pub fn delivery_path(dir: &Path) -> PathBuf {
    dir.join("delivery.json")
}
pub fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("spool")
}

/// Replaces `path` so that a crash leaves either the old or the new content,
/// never a torn file: write a sibling temp file, fsync it, rename, fsync the dir.
/// `durable = false` skips the fsyncs for files that may lag behind safely.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, durable: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() only applies to new files; a stale temp file
        // from a crash could carry looser permissions.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(data)?;
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Makes a rename or unlink in `dir` survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates the state directory (0700: it holds the device key).
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Settings {
    pub report_interval_seconds: u32,
    pub inventory_interval_seconds: u32,
}

impl From<&vakt_proto::v1::AgentSettings> for Settings {
    fn from(s: &vakt_proto::v1::AgentSettings) -> Self {
        Self {
            report_interval_seconds: s.report_interval_seconds,
            inventory_interval_seconds: s.inventory_interval_seconds,
        }
    }
}

/// `enrollment.json`: written once at enrollment, updated on renewal and when
/// the collector pushes new settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Enrollment {
    pub device_id: String,
    pub collector: String,
    #[serde(default)]
    pub settings: Settings,
    pub certificate_not_after_unix_ms: i64,
    #[serde(default)]
    pub enrolled_at_unix_ms: i64,
}

impl Enrollment {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = enrollment_path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "not enrolled: {} does not exist (run `vakt-agent enroll` first, or pass the right --state-dir)",
                path.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("cannot encode enrollment state")?;
        write_atomic(&enrollment_path(dir), &json, 0o644, true)
    }
}

/// `delivery.json`: what the collector has confirmed. Lagging behind after a
/// crash is harmless (unacknowledged reports are resent and deduplicated), so
/// it is written without fsync.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Delivery {
    pub acked_sequence: u64,
    /// Hex SHA-256 of the last inventory the collector acknowledged.
    #[serde(default)]
    pub acked_inventory_hash: String,
    /// Reports dropped but not yet announced in a batch's `dropped_reports`.
    #[serde(default)]
    pub pending_dropped: u64,
    /// Every report this agent dropped unacknowledged (spool full, or refused),
    /// for `status`; the collector sums the announced counts the same way.
    #[serde(default)]
    pub dropped_reports_total: u64,
    /// Boot time seen by the previous run, to tell a reboot from a restart.
    #[serde(default)]
    pub boot_time_unix_ms: i64,
}

impl Delivery {
    pub fn load(dir: &Path) -> Self {
        let path = delivery_path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "ignoring damaged delivery state: {e}");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec(self).context("cannot encode delivery state")?;
        write_atomic(&delivery_path(dir), &json, 0o644, false)
    }
}

/// The last sequence number handed out, or 0.
pub fn load_sequence(dir: &Path) -> anyhow::Result<u64> {
    let path = sequence_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a number", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Durable, because a sequence number reused after a crash would make the
/// collector silently discard a new report as a duplicate.
pub fn save_sequence(dir: &Path, sequence: u64) -> anyhow::Result<()> {
    write_atomic(
        &sequence_path(dir),
        format!("{sequence}\n").as_bytes(),
        0o644,
        true,
    )
}

pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Finishes a certificate renewal that a crash interrupted. Renewal writes
/// `key.pem.new` and `cert.pem.new`, then renames the key, then the certificate,
/// so the leftover files say how far it got.
pub fn recover_renewal(dir: &Path) -> anyhow::Result<()> {
    let key_new = dir.join("key.pem.new");
    let cert_new = dir.join("cert.pem.new");
    match (key_new.exists(), cert_new.exists()) {
        (true, true) => {
            std::fs::rename(&key_new, key_path(dir)).context("cannot finish renewal (key)")?;
            std::fs::rename(&cert_new, cert_path(dir)).context("cannot finish renewal (cert)")?;
        }
        (true, false) => {
            std::fs::remove_file(&key_new).context("cannot discard half-written renewal")?;
        }
        (false, true) => {
            std::fs::rename(&cert_new, cert_path(dir)).context("cannot finish renewal (cert)")?;
        }
        (false, false) => return Ok(()),
    }
    sync_dir(dir).context("cannot sync state directory")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"one", 0o600, true).unwrap();
        write_atomic(&path, b"two", 0o600, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sequence_round_trips_and_defaults_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_sequence(dir.path()).unwrap(), 0);
        save_sequence(dir.path(), 42).unwrap();
        assert_eq!(load_sequence(dir.path()).unwrap(), 42);
    }

    #[test]
    fn interrupted_renewal_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(key_path(dir.path()), "new-key").unwrap();
        std::fs::write(dir.path().join("cert.pem.new"), "new-cert").unwrap();
        std::fs::write(cert_path(dir.path()), "old-cert").unwrap();
        recover_renewal(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(cert_path(dir.path())).unwrap(),
            "new-cert"
        );
    }
}
