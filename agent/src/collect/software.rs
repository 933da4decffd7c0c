//! Installed software, read from the package database under the configured
//! rootfs: Debian's `var/lib/dpkg/status`, and RPM's database through `rpm`.
//!
//! The dpkg status file is plain text and parsed here. RPM's database is a
//! Berkeley DB or SQLite file whose format has changed across releases, so it
//! is read by running `rpm -qa` — but only when the rootfs is `/` (the `rpm`
//! binary reads the running system's database; `--root` would need the
//! database's format to match the host's `rpm`), and only when `rpm` exists.
//!
//! Both databases are re-read only when their modification time (or size)
//! changes: a `stat` per report instead of parsing thousands of packages.
//! Anything unreadable makes the software set unknown (`None`), never an error
//! that stops the report.

use super::clean_text;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use vakt_proto::v1::Package;
use vakt_proto::validate::{
    MAX_PACKAGE_ARCH_BYTES, MAX_PACKAGE_NAME_BYTES, MAX_PACKAGE_VERSION_BYTES,
    MAX_PACKAGES_PER_BATCH,
};

/// A software set keyed by (name, architecture), the key the collector uses.
pub type SoftwareSet = BTreeMap<(String, String), Package>;

const DPKG_STATUS: &str = "var/lib/dpkg/status";
const RPM_DB_DIR: &str = "var/lib/rpm";
/// `name TAB [epoch:]version-release TAB arch`, one package per line.
const RPM_QUERY_FORMAT: &str =
    "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n";

/// What a database looked like when it was last read.
type Stamp = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

/// A reading of the package databases and its `vakt_proto::software_hash`.
#[derive(Clone, Debug, PartialEq)]
pub struct Software {
    pub packages: SoftwareSet,
    pub hash: Vec<u8>,
}

impl Software {
    pub fn new(packages: SoftwareSet) -> Self {
        let hash = vakt_proto::software_hash(packages.values());
        Self { packages, hash }
    }
}

/// Remembers the hash of the last reading and re-reads only when a database
/// file changed. The package set itself is not kept: hundreds of packages as
/// keyed strings are needed only when the set changed, to
/// compute what to send — then [`SoftwareReader::load`] reads it again
/// (docs/BENCHMARKS.md "Agent footprint", lever 5).
pub struct SoftwareReader {
    rootfs: PathBuf,
    stamp: Option<Stamp>,
    hash: Option<Vec<u8>>,
}

impl SoftwareReader {
    pub fn new(rootfs: &Path) -> Self {
        Self {
            rootfs: rootfs.to_owned(),
            stamp: None,
            hash: None,
        }
    }

    /// The hash of the installed packages now; None when no package database
    /// is readable. One `stat` per database file when nothing changed.
    pub fn hash(&mut self) -> Option<&[u8]> {
        let stamp = self.stamp();
        if self.stamp.as_ref() != Some(&stamp) {
            self.hash = self.load().map(|s| s.hash);
            self.stamp = Some(stamp);
        }
        self.hash.as_deref()
    }

    /// The installed packages, read now.
    pub fn load(&self) -> Option<Software> {
        read_all(&self.rootfs).map(Software::new)
    }

    fn stamp(&self) -> Stamp {
        let mut files = vec![self.rootfs.join(DPKG_STATUS)];
        if let Ok(entries) = std::fs::read_dir(self.rootfs.join(RPM_DB_DIR)) {
            let mut rpm: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            rpm.sort();
            files.extend(rpm);
        }
        files
            .into_iter()
            .map(|path| {
                let meta = std::fs::metadata(&path).ok();
                let stamp = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
                (path, stamp)
            })
            .collect()
    }
}

/// Reads every database present; None when none could be read.
pub fn read_all(rootfs: &Path) -> Option<SoftwareSet> {
    // Streamed, not read into one String: the status file is often larger
    // than glibc's mmap threshold, and freeing such a block raises the
    // threshold (and the heap's trim threshold with it) for the rest of the
    // process's life, so later freed memory would stay resident.
    let dpkg = match std::fs::File::open(rootfs.join(DPKG_STATUS))
        .and_then(|f| parse_dpkg_status_from(std::io::BufReader::new(f)))
    {
        Ok(packages) => Some(packages),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::debug!("cannot read the dpkg database: {e}");
            None
        }
    };
    let rpm = if rootfs == Path::new("/") && rootfs.join(RPM_DB_DIR).is_dir() {
        read_rpm()
    } else {
        None
    };
    if dpkg.is_none() && rpm.is_none() {
        return None;
    }
    let mut set = SoftwareSet::new();
    for p in dpkg.into_iter().flatten().chain(rpm.into_iter().flatten()) {
        insert(&mut set, p);
    }
    if set.len() > MAX_PACKAGES_PER_BATCH {
        tracing::warn!(
            packages = set.len(),
            "more packages than one report carries; keeping the first {MAX_PACKAGES_PER_BATCH} by name"
        );
        if let Some(first_dropped) = set.keys().nth(MAX_PACKAGES_PER_BATCH).cloned() {
            set.split_off(&first_dropped);
        }
    }
    Some(set)
}

/// Adds a package; a second one with the same key (RPM keeps several kernels
/// of one name and architecture) joins its version to the first's.
fn insert(set: &mut SoftwareSet, p: Package) {
    let key = (p.name.clone(), p.architecture.clone());
    match set.get_mut(&key) {
        Some(existing) if existing.version != p.version => {
            let joined = format!("{} {}", existing.version, p.version);
            existing.version = clean_text(&joined, MAX_PACKAGE_VERSION_BYTES);
        }
        Some(_) => {}
        None => {
            set.insert(key, p);
        }
    }
}

fn package(name: &str, version: &str, architecture: &str, source: &str) -> Option<Package> {
    let name = clean_text(name.trim(), MAX_PACKAGE_NAME_BYTES);
    (!name.is_empty()).then(|| Package {
        name,
        version: clean_text(version.trim(), MAX_PACKAGE_VERSION_BYTES),
        architecture: clean_text(architecture.trim(), MAX_PACKAGE_ARCH_BYTES),
        source: source.to_owned(),
    })
}

/// The installed packages of a dpkg status file. A package counts when its
/// current state (the third word of `Status:`) is `installed` with the `ok`
/// flag — `install ok installed`, and also `hold ok installed` (pinned) and
/// `deinstall ok installed` (removal requested, files still there), as
/// `dpkg -l` lists them with `ii`/`hi`/`ri`. Half-installed, unpacked,
/// config-files and not-installed entries are not installed software.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    // Reading from memory cannot fail.
    parse_dpkg_status_from(text.as_bytes()).unwrap_or_default()
}

/// [`parse_dpkg_status`] line by line from a reader; bytes that are not
/// UTF-8 (in descriptions, say) are replaced, not an error.
pub fn parse_dpkg_status_from(mut reader: impl std::io::BufRead) -> std::io::Result<Vec<Package>> {
    #[derive(Default)]
    struct Paragraph {
        name: String,
        version: String,
        arch: String,
        status: String,
    }
    impl Paragraph {
        fn installed(&self) -> bool {
            let words: Vec<&str> = self.status.split_whitespace().collect();
            words.len() == 3 && words[1] == "ok" && words[2] == "installed"
        }
    }
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut paragraph = Paragraph::default();
    loop {
        line.clear();
        let end = reader.read_until(b'\n', &mut line)? == 0;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if end || text.is_empty() {
            if paragraph.installed() {
                out.extend(package(
                    &paragraph.name,
                    &paragraph.version,
                    &paragraph.arch,
                    "dpkg",
                ));
            }
            paragraph = Paragraph::default();
            if end {
                return Ok(out);
            }
            continue;
        }
        // Continuation lines (descriptions, conffiles) start with a space.
        if text.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = text.split_once(':') else {
            continue;
        };
        let slot = match field {
            "Package" => &mut paragraph.name,
            "Version" => &mut paragraph.version,
            "Architecture" => &mut paragraph.arch,
            "Status" => &mut paragraph.status,
            _ => continue,
        };
        value.trim().clone_into(slot);
    }
}

fn read_rpm() -> Option<Vec<Package>> {
    let output = std::process::Command::new("rpm")
        .args(["-qa", "--qf", RPM_QUERY_FORMAT])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(o) if o.status.success() => Some(parse_rpm_output(&String::from_utf8_lossy(&o.stdout))),
        Ok(o) => {
            tracing::debug!(status = %o.status, "rpm -qa failed; RPM software unknown");
            None
        }
        // No rpm binary: a Debian machine with a stray /var/lib/rpm.
        Err(e) => {
            tracing::debug!("cannot run rpm: {e}");
            None
        }
    }
}

pub fn parse_rpm_output(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (name, version, arch) = (fields.next()?, fields.next()?, fields.next()?);
            // gpg-pubkey pseudo-packages have no architecture: "(none)".
            let arch = if arch == "(none)" { "" } else { arch };
            package(name, version, arch, "rpm")
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::collect::tests::write;

    /// A Debian status file: installed, held, multi-arch, half-installed,
    /// removed-with-config-files and not-installed entries.
    pub(crate) const DPKG_STATUS_FIXTURE: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Installed-Size: 7164
Architecture: amd64
Version: 5.2.15-2+b2
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 Status: not a field, part of the description

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: amd64
Version: 2.36-9+deb12u4

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: i386
Version: 2.36-9+deb12u4

Package: openssl
Status: hold ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2

Package: broken-thing
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.0

Package: vim
Status: deinstall ok config-files
Architecture: amd64
Version: 2:9.0.1378-2
Conffiles:
 /etc/vim/vimrc 0123456789abcdef

Package: old-lib
Status: purge ok not-installed
Architecture: amd64

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
";

    fn keys(set: &[Package]) -> Vec<String> {
        set.iter()
            .map(|p| format!("{}:{}={}", p.name, p.architecture, p.version))
            .collect()
    }

    #[test]
    fn dpkg_status_keeps_only_installed_packages() {
        let packages = parse_dpkg_status(DPKG_STATUS_FIXTURE);
        assert_eq!(
            keys(&packages),
            [
                "bash:amd64=5.2.15-2+b2",
                "libc6:amd64=2.36-9+deb12u4",
                "libc6:i386=2.36-9+deb12u4",
                "openssl:amd64=3.0.11-1~deb12u2",
                "tzdata:all=2024a-0+deb12u1",
            ]
        );
        assert!(packages.iter().all(|p| p.source == "dpkg"));
    }

    #[test]
    fn rpm_output_with_epochs_and_several_kernels() {
        let text = "bash\t5.1.8-6.el9\tx86_64\n\
                    kernel-core\t5.14.0-362.el9\tx86_64\n\
                    kernel-core\t5.14.0-427.el9\tx86_64\n\
                    openssl\t1:3.0.7-27.el9\tx86_64\n\
                    gpg-pubkey\t8483c65d-5ccc5b19\t(none)\n\
                    garbage line\n";
        let mut set = SoftwareSet::new();
        for p in parse_rpm_output(text) {
            insert(&mut set, p);
        }
        let list: Vec<Package> = set.into_values().collect();
        assert_eq!(
            keys(&list),
            [
                "bash:x86_64=5.1.8-6.el9",
                "gpg-pubkey:=8483c65d-5ccc5b19",
                "kernel-core:x86_64=5.14.0-362.el9 5.14.0-427.el9",
                "openssl:x86_64=1:3.0.7-27.el9",
            ]
        );
    }

    #[test]
    fn reader_rereads_only_when_the_database_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut reader = SoftwareReader::new(dir.path());
        assert!(reader.hash().is_none(), "no database: unknown, not empty");
        write(dir.path(), DPKG_STATUS, DPKG_STATUS_FIXTURE);
        let first = reader.hash().unwrap().to_vec();
        assert_eq!(reader.load().map(|s| s.packages.len()), Some(5));
        // Same stamp: the cached hash, even if the file's content were different.
        let stamp = reader.stamp.clone();
        assert_eq!(reader.stamp(), stamp.unwrap());
        assert_eq!(reader.hash(), Some(first.as_slice()));
        let more = format!(
            "{DPKG_STATUS_FIXTURE}\nPackage: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10\n"
        );
        write(dir.path(), DPKG_STATUS, &more);
        assert_ne!(reader.hash(), Some(first.as_slice()));
        let set = &reader.load().unwrap().packages;
        assert_eq!(set.len(), 6);
        assert!(set.contains_key(&("curl".to_owned(), "amd64".to_owned())));
    }

    /// What one re-read of this machine's dpkg database costs (parse, key,
    /// hash) and what its full list weighs on the wire; figures in
    /// docs/BENCHMARKS.md. `cargo test -p vakt-agent --lib -- --ignored
    /// software_read_cost --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn software_read_cost() {
        use prost::Message;
        let rounds = 20;
        let started = std::time::Instant::now();
        let mut last = None;
        for _ in 0..rounds {
            last = read_all(Path::new("/")).map(Software::new);
        }
        let per_read = started.elapsed() / rounds;
        let Some(software) = last else {
            eprintln!("no package database here");
            return;
        };
        let full = crate::run::software_full(&software).encoded_len();
        let mut reader = SoftwareReader::new(Path::new("/"));
        reader.hash();
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            reader.hash();
        }
        let unchanged = started.elapsed() / 1000;
        eprintln!(
            "{} packages: read+parse+hash {per_read:?}, unchanged check {unchanged:?}, full list {full} bytes",
            software.packages.len()
        );
    }

    #[test]
    fn unreadable_database_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading fails, nothing panics.
        std::fs::create_dir_all(dir.path().join(DPKG_STATUS)).unwrap();
        assert!(read_all(dir.path()).is_none());
    }
}
