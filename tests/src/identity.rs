//! Helpers for the provisioning and device-identity tests (`identity_*.rs`):
//! fixture hardware, agents enrolled or run with a config of the test's
//! choosing, role credentials, the audit log, CSRs and token shapes.

use crate::{
    COMMAND_TIMEOUT, ChildGuard, Collector, Output, bin, run_command, token_file,
    vaktctl_with_config,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tonic::transport::Channel;

/// A fixture machine: a sysfs tree whose DMI says `serial` (no
/// `product_serial` file when `None`), a machine-id file, and an agent config
/// pointing the agent's readers at them. Everything lives under `dir`.
pub struct FixtureHardware {
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl FixtureHardware {
    /// Writes the tree and `dir/agent.toml` (reporting to `collector` every second).
    pub fn new(collector: &Collector, dir: &Path, serial: Option<&str>, machine_id: &str) -> Self {
        let dmi = dir.join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).expect("create fixture DMI dir");
        if let Some(serial) = serial {
            std::fs::write(dmi.join("product_serial"), format!("{serial}\n"))
                .expect("write product_serial");
        }
        std::fs::write(dmi.join("sys_vendor"), "Vakt Test Hardware\n").expect("write sys_vendor");
        std::fs::write(dmi.join("product_name"), "Fixture 9000\n").expect("write product_name");
        let machine_id_path = dir.join("etc/machine-id");
        std::fs::create_dir_all(machine_id_path.parent().expect("etc")).expect("create etc");
        std::fs::write(&machine_id_path, format!("{machine_id}\n")).expect("write machine-id");
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "interval = \"1s\"\ncollectors = [\"{url}\"]\n\n[paths]\nsysfs = {sysfs:?}\netc_machine_id = {mid:?}\n",
                url = collector.url(),
                sysfs = dir.join("sys").display().to_string(),
                mid = machine_id_path.display().to_string(),
            ),
        )
        .expect("write agent config");
        Self {
            dir: dir.to_path_buf(),
            config,
        }
    }
}

/// `vakt-agent enroll … --state-dir DIR [--config CONFIG]` with the token in a file.
pub fn agent_enroll_with_config(
    collector: &Collector,
    token: &str,
    state_dir: &Path,
    config: Option<&Path>,
) -> Output {
    let token_path = token_file(&state_dir.with_extension("token"), token);
    let mut cmd = Command::new(bin("vakt-agent"));
    cmd.arg("enroll")
        .arg("--collector")
        .arg(collector.url())
        .arg("--ca")
        .arg(collector.dir.join("ca.pem"))
        .arg("--token-file")
        .arg(&token_path)
        .arg("--state-dir")
        .arg(state_dir);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    run_command(cmd, COMMAND_TIMEOUT)
}

/// Writes an agent config reporting to `collector` every second, at `path`.
pub fn write_agent_config(collector: &Collector, path: &Path) {
    std::fs::write(
        path,
        format!(
            "interval = \"1s\"\ncollectors = [\"{}\"]\n",
            collector.url()
        ),
    )
    .expect("write agent config");
}

/// `vakt-agent run --config CONFIG --state-dir DIR` in the background, logs in
/// `collector.tmp()`.
pub fn run_agent(collector: &Collector, config: &Path, state_dir: &Path, name: &str) -> ChildGuard {
    let mut cmd = Command::new(bin("vakt-agent"));
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    ChildGuard::spawn(cmd, name, collector.tmp())
}

/// `vakt-agent status --state-dir DIR -o json`.
pub fn agent_status(state_dir: &Path) -> Result<Value, String> {
    let mut cmd = Command::new(bin("vakt-agent"));
    cmd.arg("status")
        .arg("--state-dir")
        .arg(state_dir)
        .args(["-o", "json"]);
    let out = run_command(cmd, COMMAND_TIMEOUT);
    if !out.success() {
        return Err(out.to_string());
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {out}"))
}

/// `cp -a FROM TO`: a byte-for-byte copy of a state directory (a cloned disk).
pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp -a");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// `vaktctl audit -o json ARGS…` as records.
pub fn audit(collector: &Collector, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    match collector.vaktctl_json(&all) {
        Value::Array(records) => records,
        other => panic!("vaktctl audit -o json printed no array: {other}"),
    }
}

/// The flags of a device object (`vaktctl device show -o json`) of `kind`.
pub fn flags_of<'a>(device: &'a Value, kind: &str) -> Vec<&'a Value> {
    device["flags"]
        .as_array()
        .map(|flags| flags.iter().filter(|f| f["kind"] == kind).collect())
        .unwrap_or_default()
}

/// An admin credential made with `vaktctl credentials issue`.
pub struct RoleCredential {
    pub role: String,
    pub name: String,
    pub dir: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl RoleCredential {
    /// `vaktctl credentials issue --role ROLE --name NAME --out DIR` with the
    /// collector's admin credential (asserts success and the files it writes).
    pub fn issue(collector: &Collector, role: &str, name: &str) -> Self {
        let dir = collector.tmp().join(format!("cred-{name}"));
        let out = collector.vaktctl(&[
            "credentials",
            "issue",
            "--role",
            role,
            "--name",
            name,
            "--out",
            dir.to_str().expect("utf-8 path"),
        ]);
        out.assert_success();
        let read = |file: String| {
            std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| {
                panic!(
                    "credentials issue did not write {file} in {}: {e}\n{out}",
                    dir.display()
                )
            })
        };
        let cert_pem = read(format!("{name}.pem"));
        let key_pem = read(format!("{name}-key.pem"));
        read("ca.pem".into());
        read("vaktctl.toml".into());
        Self {
            role: role.to_owned(),
            name: name.to_owned(),
            dir,
            cert_pem,
            key_pem,
        }
    }

    /// `vaktctl --config DIR/vaktctl.toml ARGS…` as this credential.
    pub fn vaktctl(&self, args: &[&str]) -> Output {
        vaktctl_with_config(&self.dir.join("vaktctl.toml"), args)
    }

    /// A TLS channel to the collector presenting this credential.
    pub async fn channel(&self, collector: &Collector) -> anyhow::Result<Channel> {
        crate::connect(
            collector.grpc_port,
            &collector.ca_pem(),
            Some((&self.cert_pem, &self.key_pem)),
        )
        .await
    }
}

/// A fresh key pair and a PEM CSR for it; `san_uri` adds a URI subject
/// alternative name (which the collector must refuse).
pub fn csr(common_name: &str, san_uri: Option<&str>) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("generate key pair");
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).expect("certificate params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    if let Some(uri) = san_uri {
        params.subject_alt_names = vec![rcgen::SanType::URI(
            uri.try_into().expect("URI is an IA5 string"),
        )];
    }
    let pem = params
        .serialize_request(&key)
        .expect("serialize CSR")
        .pem()
        .expect("CSR PEM");
    (key, pem)
}

/// The facts (serial, validity, identity) of the first certificate in `pem`.
pub fn certificate_facts(pem: &str) -> vakt_proto::identity::CertificateFacts {
    let certs = vakt_proto::identity::parse_certificates_pem(pem.as_bytes())
        .expect("certificate PEM parses");
    let der = certs.first().expect("a certificate in the PEM");
    vakt_proto::identity::certificate_facts(der).expect("certificate facts")
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A well-formed token that was never issued: `vakt1.<16 hex>.<64 hex>`.
pub fn random_token() -> String {
    format!("vakt1.{}.{}", hex(&random_bytes(8)), hex(&random_bytes(32)))
}

/// The `(id, secret)` parts of a `vakt1.<id>.<secret>` token.
pub fn token_parts(token: &str) -> (&str, &str) {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("vakt1"), Some(id), Some(secret), None) => (id, secret),
        _ => panic!("token {token:?} is not vakt1.<id>.<secret>"),
    }
}

/// Files under `dir` (recursively) whose bytes contain any of `needles`.
pub fn files_containing(dir: &Path, needles: &[&[u8]]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && needles
                    .iter()
                    .any(|n| !n.is_empty() && bytes.windows(n.len()).any(|w| w == *n))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Every file under `dir` (recursively), for messages.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// The needles that betray a PEM private key: its DER bytes and its PEM body
/// (whole and first line, in case the body is re-wrapped).
pub fn private_key_needles(key_pem: &str) -> Vec<Vec<u8>> {
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(body.len() > 40, "key has a PEM body: {key_pem}");
    let first_line = key_pem
        .lines()
        .find(|l| !l.starts_with("-----"))
        .expect("key body line")
        .to_owned();
    let der = rcgen::KeyPair::from_pem(key_pem)
        .expect("key PEM parses")
        .serialize_der();
    vec![der, body.into_bytes(), first_line.into_bytes()]
}
