//! `vaktctl credentials issue`: a new admin credential with a role, for a
//! person or a script. The private key is generated here and written before
//! the collector is asked to sign its CSR, so the key never crosses the
//! network; if signing fails, nothing is left behind.

use super::connect::Admin;
use super::output::{self, Format};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vakt_proto::v1;

pub const ISSUE_HELP: &str = "\
Issue an admin credential with a role. vaktctl generates the private key \
locally, sends only a certificate signing request, and writes into --out \
(default ./NAME/, created with mode 0700):

  NAME-key.pem   the private key (mode 0600; it never leaves this machine)
  NAME.pem       the certificate the collector signed
  ca.pem         the collector's CA
  vaktctl.toml   a config naming this collector and the three files

Existing files are never overwritten. Copy the directory to where the \
credential is needed and use it with `vaktctl --config DIR/vaktctl.toml …`.

Roles: viewer (read), operator (+ acknowledge, silence), provisioner \
(register devices only), admin (everything, including revoke and issuing \
credentials).

Examples:
  vaktctl credentials issue --role provisioner --name imaging-bot
  vaktctl credentials issue --role viewer --name ana@example.com --out ~/vakt --lifetime 90d";

#[derive(Clone, Debug, clap::Args)]
pub struct IssueArgs {
    /// What the credential may do
    #[arg(long, value_name = "ROLE", value_parser = ["viewer", "operator", "provisioner", "admin"])]
    pub role: String,
    /// Who it is for (letters, digits, - _ . @); names the files and the audit records
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: String,
    /// Directory to write the files into [default: ./NAME/]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How long the certificate is valid [default: the collector's, 365d]
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    pub lifetime: Option<Duration>,
}

/// The collector's rule for names, checked here too because the name also
/// becomes file names (so `..` or `a/b` must never get this far).
fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > vakt_proto::validate::MAX_KEY_BYTES {
        return Err(format!(
            "must be 1 to {} characters",
            vakt_proto::validate::MAX_KEY_BYTES
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err("only letters, digits, '-', '_', '.' and '@' are allowed".into());
    }
    if s.starts_with('.') {
        return Err("must not start with '.' (it names files)".into());
    }
    Ok(s.to_string())
}

fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 365d, 90d)"))?;
    let max = vakt_proto::validate::MAX_CREDENTIAL_LIFETIME_SECONDS;
    if d.as_secs() == 0 || d.as_secs() > max {
        return Err(format!("must be between 1s and {}d", max / 86_400));
    }
    Ok(d)
}

/// Where the four files go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub ca: PathBuf,
    pub config: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path, name: &str) -> Self {
        Paths {
            dir: dir.to_path_buf(),
            key: dir.join(key_file(name)),
            cert: dir.join(cert_file(name)),
            ca: dir.join(CA_FILE),
            config: dir.join(CONFIG_FILE),
        }
    }
}

const CA_FILE: &str = "ca.pem";
const CONFIG_FILE: &str = "vaktctl.toml";

fn key_file(name: &str) -> String {
    format!("{name}-key.pem")
}

fn cert_file(name: &str) -> String {
    format!("{name}.pem")
}

/// What was issued, for the renderer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub name: String,
    pub role: String,
    pub paths: Paths,
    pub not_after_unix_ms: i64,
}

pub async fn issue(
    admin: &mut Admin,
    args: &IssueArgs,
    collector: &str,
    format: Format,
) -> Result<String> {
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new(".").join(&args.name));
    let paths = Paths::new(&dir, &args.name);
    let lifetime = args.lifetime.map_or(0, |d| d.as_secs());
    let issued = issue_into(
        &paths,
        &args.name,
        &args.role,
        collector,
        lifetime,
        async |request| {
            let response = admin.client.issue_credential(request).await;
            response
                .map(tonic::Response::into_inner)
                .map_err(|s| admin.error(s))
        },
    )
    .await?;
    Ok(render_issued(&issued, format, vakt_proto::now_unix_ms()))
}

/// The whole local procedure around one signing call: refuse to overwrite,
/// write the key first, sign, write the rest; on any failure remove what was
/// written (and the directory, if this created it).
pub async fn issue_into<F>(
    paths: &Paths,
    name: &str,
    role: &str,
    collector: &str,
    lifetime_seconds: u64,
    sign: F,
) -> Result<Issued>
where
    F: AsyncFnOnce(v1::IssueCredentialRequest) -> Result<v1::IssueCredentialResponse>,
{
    let mut undo = Undo::default();
    if !paths.dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .with_context(|| format!("cannot create the directory {}", paths.dir.display()))?;
        undo.dir = Some(paths.dir.clone());
    } else if !paths.dir.is_dir() {
        bail!("{} exists and is not a directory", paths.dir.display());
    }
    for path in [&paths.key, &paths.cert, &paths.ca, &paths.config] {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; refusing to overwrite it (choose another --out or --name)",
                path.display()
            );
        }
    }

    let key = rcgen::KeyPair::generate().context("cannot generate a key pair")?;
    write_new(&paths.key, key.serialize_pem().as_bytes(), 0o600, &mut undo)?;
    let request = v1::IssueCredentialRequest {
        name: name.to_string(),
        role: role.to_string(),
        csr_pem: csr_pem(&key, name)?,
        lifetime_seconds,
    };
    let response = sign(request).await?;
    if !response
        .certificate_pem
        .contains("-----BEGIN CERTIFICATE-----")
        || !response.ca_pem.contains("-----BEGIN CERTIFICATE-----")
    {
        bail!("the collector's answer holds no certificate (is it older than vaktctl?)");
    }
    write_new(
        &paths.cert,
        response.certificate_pem.as_bytes(),
        0o644,
        &mut undo,
    )?;
    write_new(&paths.ca, response.ca_pem.as_bytes(), 0o644, &mut undo)?;
    let config = config_text(collector, name);
    write_new(&paths.config, config.as_bytes(), 0o644, &mut undo)?;
    undo.disarm();
    Ok(Issued {
        name: name.to_string(),
        role: role.to_string(),
        paths: paths.clone(),
        not_after_unix_ms: response.not_after_unix_ms,
    })
}

/// A CSR naming the credential in its subject and asking for no subject
/// alternative names: the collector decides what the certificate says and
/// refuses CSRs that claim names.
fn csr_pem(key: &rcgen::KeyPair, name: &str) -> Result<String> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .context("cannot build the certificate signing request")
}

/// The config `vaktctl --config` reads; paths relative to the file, so the
/// directory can be moved as a whole.
pub fn config_text(collector: &str, name: &str) -> String {
    format!(
        "# vaktctl credential {name:?}, issued by vaktctl credentials issue.\n\
         collector = {}\nca = {}\ncert = {}\nkey = {}\n",
        toml_string(collector),
        toml_string(CA_FILE),
        toml_string(&cert_file(name)),
        toml_string(&key_file(name)),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Creates `path` (never replacing an existing file) with `mode`, and
/// records it for removal should a later step fail.
fn write_new(path: &Path, contents: &[u8], mode: u32, undo: &mut Undo) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            anyhow!(
                "cannot create {}: {}",
                path.display(),
                super::connect::io_reason(&e)
            )
        })?;
    undo.files.push(path.to_path_buf());
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            anyhow!(
                "cannot write {}: {}",
                path.display(),
                super::connect::io_reason(&e)
            )
        })
}

/// Removes, when dropped armed, the files written and the directory created:
/// a failed issue leaves the directory as it was (in particular no key
/// without a certificate, which would look like a usable credential).
#[derive(Default)]
struct Undo {
    files: Vec<PathBuf>,
    dir: Option<PathBuf>,
    disarmed: bool,
}

impl Undo {
    fn disarm(&mut self) {
        self.disarmed = true;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.disarmed {
            return;
        }
        for file in self.files.iter().rev() {
            let _ = std::fs::remove_file(file);
        }
        if let Some(dir) = &self.dir {
            // Only if empty: never delete anything this run did not write.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[derive(Serialize)]
struct IssuedJson {
    name: String,
    role: String,
    certificate: String,
    key: String,
    ca: String,
    config: String,
    not_after: Option<String>,
}

pub fn render_issued(issued: &Issued, format: Format, now_ms: i64) -> String {
    let p = &issued.paths;
    let shown = |path: &Path| path.display().to_string();
    let json = IssuedJson {
        name: issued.name.clone(),
        role: issued.role.clone(),
        certificate: shown(&p.cert),
        key: shown(&p.key),
        ca: shown(&p.ca),
        config: shown(&p.config),
        not_after: output::rfc3339(issued.not_after_unix_ms),
    };
    match format {
        Format::Json => output::json(&json),
        Format::Csv => {
            output::csv_row(&[
                "name",
                "role",
                "certificate",
                "key",
                "ca",
                "config",
                "not_after",
            ]) + &output::csv_row(&[
                json.name,
                json.role,
                json.certificate,
                json.key,
                json.ca,
                json.config,
                json.not_after.unwrap_or_default(),
            ])
        }
        Format::Table => {
            let until = match &json.not_after {
                Some(t) => format!(
                    "{t} ({})",
                    output::relative(issued.not_after_unix_ms, now_ms)
                ),
                None => "an unreported time".into(),
            };
            let example = if issued.role == "provisioner" {
                "register --help"
            } else {
                "devices"
            };
            format!(
                "Issued {} credential {:?}, valid until {until}.\n{}Use it with: vaktctl --config {} {example}\n",
                issued.role,
                issued.name,
                output::key_values(
                    "  ",
                    &[
                        ("Certificate", json.certificate.clone()),
                        (
                            "Private key",
                            format!("{} (generated here, mode 0600)", json.key)
                        ),
                        ("CA", json.ca.clone()),
                        ("Config", json.config.clone()),
                    ],
                ),
                output::terminal_safe(&json.config),
            )
        }
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
