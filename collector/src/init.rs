//! `vakt-collector init`: a CA, the collector's server certificate, a first
//! admin credential and the two config files, in one directory.

use crate::ca::{self, CertificateAuthority};
use crate::config::CollectorConfig;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use vakt_proto::identity::Role;

pub struct InitOptions<'a> {
    pub data_dir: &'a Path,
    /// DNS names and IP addresses agents use to reach the collector.
    pub names: Vec<String>,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub admin_name: String,
}

pub const CONFIG_FILE: &str = "collector.toml";
pub const VAKTCTL_FILE: &str = "vaktctl.toml";

pub fn init(opts: &InitOptions<'_>) -> Result<CollectorConfig> {
    let dir = opts.data_dir;
    if dir.join("ca.pem").exists() || dir.join("ca-key.pem").exists() {
        bail!(
            "{} already holds a CA; refusing to overwrite it (every enrolled device trusts it). \
             Use another --data-dir, or remove it deliberately.",
            dir.display()
        );
    }
    if opts.names.is_empty() {
        bail!("give at least one --name that agents will use to reach the collector");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let (authority, ca_files) = CertificateAuthority::create("Vakt CA")?;
    let server = authority.issue_server(&opts.names)?;
    let admin = authority.issue_admin(&opts.admin_name, Role::Admin, ca::ADMIN_LIFETIME)?;
    let config = CollectorConfig::new(opts.grpc_listen, opts.http_listen);

    write_file(&dir.join("ca-key.pem"), &ca_files.key_pem, 0o600)?;
    write_file(&dir.join("ca.pem"), &ca_files.cert_pem, 0o644)?;
    write_file(&dir.join("server-key.pem"), &server.key_pem, 0o600)?;
    write_file(&dir.join("server.pem"), &server.cert_pem, 0o644)?;
    write_file(&dir.join("admin-key.pem"), &admin.key_pem, 0o600)?;
    write_file(&dir.join("admin.pem"), &admin.cert_pem, 0o644)?;
    write_file(&dir.join(CONFIG_FILE), &config.to_toml()?, 0o644)?;
    write_vaktctl_config(dir, &collector_url(&opts.names[0], opts.grpc_listen.port()))?;
    Ok(config)
}

pub fn collector_url(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// `vaktctl.toml` next to the admin credential (paths relative to it).
pub fn write_vaktctl_config(dir: &Path, url: &str) -> Result<()> {
    let text = format!(
        "# vaktctl --config {}\ncollector = {:?}\nca = \"ca.pem\"\ncert = \"admin.pem\"\nkey = \"admin-key.pem\"\n",
        dir.join(VAKTCTL_FILE).display(),
        url
    );
    write_file(&dir.join(VAKTCTL_FILE), &text, 0o644)
}

/// Writes atomically (temp file, fsync, rename) with the given mode from the
/// start, so a key is never readable by others even for an instant.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_private_keys_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            data_dir: dir.path(),
            names: vec!["localhost".into(), "127.0.0.1".into()],
            grpc_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            admin_name: "admin".into(),
        };
        init(&opts).unwrap();
        for key in ["ca-key.pem", "server-key.pem", "admin-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let err = init(&opts).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        CollectorConfig::load(&dir.path().join(CONFIG_FILE)).unwrap();
    }
}
