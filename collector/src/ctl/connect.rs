//! Where vaktctl finds its collector and credentials (flags > env > config
//! file, per field), the mTLS channel to it, and the translation of every
//! transport failure and gRPC status into one line an operator can act on.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use vakt_proto::v1::admin_client::AdminClient;

/// How long to wait for TCP connect and again for the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request deadline; listings of large fleets take a while, but a hung
/// collector should not hang a provisioning script forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// ListDevices with full inventories of a few thousand devices is far above
/// tonic's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Connection flags, accepted before or after the subcommand.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConnFlags {
    /// Collector URL, e.g. https://collector.example:7443 [env: VAKT_COLLECTOR]
    #[arg(long, global = true, value_name = "URL")]
    pub collector: Option<String>,
    /// CA certificate (PEM) the collector's certificate must be signed by [env: VAKT_CA]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Admin client certificate (PEM) [env: VAKT_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key of the client certificate (PEM) [env: VAKT_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Config file [env: VAKT_CONFIG] [default: ~/.config/vakt/vaktctl.toml, if it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The environment, as a map so tests can inject one instead of mutating the
/// process environment (which is unsound with threads).
pub type Env = BTreeMap<String, String>;

/// The variables vaktctl reads; empty values count as unset, as in most tools.
pub fn process_env() -> Env {
    [
        "VAKT_COLLECTOR",
        "VAKT_CA",
        "VAKT_CERT",
        "VAKT_KEY",
        "VAKT_CONFIG",
        "HOME",
        "XDG_CONFIG_HOME",
    ]
    .into_iter()
    .filter_map(|name| {
        let value = std::env::var(name).ok()?;
        (!value.is_empty()).then(|| (name.to_string(), value))
    })
    .collect()
}

/// Everything needed to open the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub collector: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The config file as `vakt-collector init` and quickstart write it.
#[derive(Debug, Default, serde::Deserialize)]
struct FileConfig {
    collector: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Which config file applies: `--config`, else `VAKT_CONFIG` (both must
/// exist), else the per-user default if it exists. `(path, explicit)`.
fn config_path(flags: &ConnFlags, env: &Env) -> Option<(PathBuf, bool)> {
    if let Some(path) = &flags.config {
        return Some((path.clone(), true));
    }
    if let Some(path) = env.get("VAKT_CONFIG") {
        return Some((PathBuf::from(path), true));
    }
    let path = default_config_path(env)?;
    path.is_file().then_some((path, false))
}

/// `$XDG_CONFIG_HOME/vakt/vaktctl.toml`, else `~/.config/vakt/vaktctl.toml`.
pub fn default_config_path(env: &Env) -> Option<PathBuf> {
    let base = match env.get("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env.get("HOME")?).join(".config"),
    };
    Some(base.join("vakt").join("vaktctl.toml"))
}

fn load_config(path: &Path, env: &Env) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read config file {}: {}",
            path.display(),
            io_reason(&e)
        )
    })?;
    let mut config: FileConfig = toml::from_str(&text).map_err(|e| {
        // toml's Display is a multi-line snippet; keep the one-line contract.
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        match line {
            Some(line) => anyhow!(
                "invalid config file {} (line {line}): {}",
                path.display(),
                e.message()
            ),
            None => anyhow!("invalid config file {}: {}", path.display(), e.message()),
        }
    })?;
    // Relative paths are relative to the file, so a credentials directory
    // (quickstart's, init's) can be used from anywhere.
    let dir = path.parent().unwrap_or(Path::new(""));
    for field in [&mut config.ca, &mut config.cert, &mut config.key] {
        if let Some(p) = field.take() {
            *field = Some(resolve_file_path(dir, &p, env));
        }
    }
    Ok(config)
}

fn resolve_file_path(dir: &Path, path: &Path, env: &Env) -> PathBuf {
    if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), env.get("HOME")) {
        return Path::new(home).join(rest);
    }
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// Per field: flag, then environment, then config file.
pub fn resolve(flags: &ConnFlags, env: &Env) -> Result<Settings> {
    let config_file = config_path(flags, env);
    let file = match &config_file {
        Some((path, _)) => load_config(path, env)?,
        None => FileConfig::default(),
    };
    let where_ = |field: &str, example: &str| match &config_file {
        Some((path, _)) => format!("or add `{field} = \"{example}\"` to {}", path.display()),
        None => format!(
            "or write `{field} = \"{example}\"` to {} (or a file named by --config / VAKT_CONFIG)",
            default_config_path(env).map_or("~/.config/vakt/vaktctl.toml".into(), |p| p
                .display()
                .to_string())
        ),
    };
    let env_path = |name: &str| env.get(name).map(PathBuf::from);

    let collector = flags
        .collector
        .clone()
        .or_else(|| env.get("VAKT_COLLECTOR").cloned())
        .or(file.collector)
        .ok_or_else(|| {
            anyhow!(
                "no collector configured: pass --collector URL, set VAKT_COLLECTOR, {}",
                where_("collector", "https://HOST:7443")
            )
        })?;
    let pick = |flag: &Option<PathBuf>, from_file: Option<PathBuf>, name: &str, what: &str| {
        let var = format!("VAKT_{}", name.to_ascii_uppercase());
        flag.clone()
            .or_else(|| env_path(&var))
            .or(from_file)
            .ok_or_else(|| {
                anyhow!(
                    "no {what} configured: pass --{name} FILE, set {var}, {}",
                    where_(name, &format!("{name}.pem"))
                )
            })
    };
    let ca = pick(&flags.ca, file.ca, "ca", "CA certificate")?;
    let cert = pick(&flags.cert, file.cert, "cert", "client certificate")?;
    let key = pick(&flags.key, file.key, "key", "client key")?;
    Ok(Settings {
        collector: normalize_url(&collector)?,
        ca,
        cert,
        key,
    })
}

/// `host:port` means https; plain http is refused because every Admin call
/// needs the client certificate.
pub fn normalize_url(url: &str) -> Result<String> {
    let url = url.trim();
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    // A trailing slash (copied from a browser) is harmless; drop it so
    // messages show the address the way it was configured.
    let url = match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.trim_end_matches('/')),
        None => url,
    };
    if !url.starts_with("https://") {
        bail!("the collector URL {url} must start with https:// (vaktctl always uses mutual TLS)");
    }
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e| anyhow!("invalid collector URL {url}: {e}"))?;
    if uri.host().is_none_or(str::is_empty) {
        bail!("invalid collector URL {url}: no host");
    }
    Ok(url)
}

/// `No such file or directory` rather than `... (os error 2)`.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// What error messages need to name.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
}

/// An Admin client plus what its errors should mention.
pub struct Admin {
    pub client: AdminClient<Channel>,
    pub target: Target,
}

impl Admin {
    /// Turns a failed RPC into the one line for stderr.
    pub fn error(&self, status: Status) -> anyhow::Error {
        anyhow!(status_error(&self.target, &status))
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow!("cannot read {what} {}: {}", path.display(), io_reason(&e)))
}

/// Loads and checks the PEM files before connecting, so a wrong file gets a
/// message naming it rather than a TLS failure later.
fn load_tls(settings: &Settings) -> Result<ClientTlsConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let ca = read_pem(&settings.ca, "CA certificate")?;
    let cert = read_pem(&settings.cert, "client certificate")?;
    let key = read_pem(&settings.key, "client key")?;
    let has_cert = |pem: &[u8]| CertificateDer::pem_slice_iter(pem).any(|c| c.is_ok());
    if !has_cert(&ca) {
        bail!(
            "no PEM certificate in the CA file {}",
            settings.ca.display()
        );
    }
    if !has_cert(&cert) {
        bail!(
            "no PEM certificate in the client certificate file {}",
            settings.cert.display()
        );
    }
    if PrivateKeyDer::from_pem_slice(&key).is_err() {
        bail!(
            "no PEM private key in the client key file {}",
            settings.key.display()
        );
    }
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .timeout(CONNECT_TIMEOUT))
}

/// Opens the mTLS channel eagerly, so "collector down" and "wrong CA" are
/// reported as such instead of as a failed first request.
pub async fn connect(settings: &Settings) -> Result<Admin> {
    let target = Target {
        url: settings.collector.clone(),
        ca: settings.ca.clone(),
        cert: settings.cert.clone(),
    };
    let tls = load_tls(settings)?;
    let endpoint = Endpoint::from_shared(settings.collector.clone())
        .map_err(|e| anyhow!("invalid collector URL {}: {e}", settings.collector))?
        .user_agent(concat!("vaktctl/", env!("CARGO_PKG_VERSION")))
        .context("user agent")?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .tls_config(tls)
        .map_err(|e| {
            let text = chain_text(&e);
            if text.contains("KeyMismatch") || text.contains("keys may not be consistent") {
                anyhow!(
                    "the client key {} does not belong to the client certificate {}",
                    settings.key.display(),
                    settings.cert.display()
                )
            } else {
                anyhow!("cannot use the TLS credentials: {text}")
            }
        })?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow!(transport_error(&target, &e)))?;
    let client = AdminClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
    Ok(Admin { client, target })
}

/// All messages of an error chain, joined (last resort for unknown errors).
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// What actually went wrong underneath tonic/hyper/h2 wrappers.
#[derive(Debug)]
enum Cause {
    Refused,
    TimedOut,
    Dns(String),
    Tls(rustls::Error),
    /// A TLS alert from the collector, by rustls' name for it. Kept as text
    /// because h2 re-wraps I/O errors as strings after the handshake.
    Alert(String),
    HandshakeTimeout,
    NoHttp2,
    Closed,
    Unclassified,
}

fn classify(err: &(dyn StdError + 'static)) -> Cause {
    use std::io::ErrorKind;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return tls_cause(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips the wrapped error itself, and that is
            // where tokio-rustls puts the rustls::Error.
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return tls_cause(tls);
            }
            match io.kind() {
                ErrorKind::ConnectionRefused => return Cause::Refused,
                ErrorKind::TimedOut => return Cause::TimedOut,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => return Cause::Closed,
                _ => {}
            }
        }
        let text = e.to_string();
        if let Some((_, rest)) = text.split_once("received fatal alert: ") {
            let name: String = rest
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            return Cause::Alert(name);
        }
        if text.contains("operation was canceled") {
            return Cause::Closed;
        }
        if text == "dns error" {
            return Cause::Dns(e.source().map(|s| s.to_string()).unwrap_or_default());
        }
        if text.contains("TLS handshake timeout") {
            return Cause::HandshakeTimeout;
        }
        if text.contains("HTTP/2 was not negotiated") {
            return Cause::NoHttp2;
        }
        cur = e.source();
    }
    Cause::Unclassified
}

fn tls_cause(e: &rustls::Error) -> Cause {
    match e {
        rustls::Error::AlertReceived(alert) => Cause::Alert(format!("{alert:?}")),
        other => Cause::Tls(other.clone()),
    }
}

/// One line for a failure to connect or a transport failure mid-request.
pub fn transport_error(target: &Target, err: &(dyn StdError + 'static)) -> String {
    classified(target, err, false).unwrap_or_else(|| {
        format!(
            "cannot reach the collector at {}: {}",
            target.url,
            chain_text(err)
        )
    })
}

/// `in_request`: the channel was established (server certificate verified)
/// and then failed; with TLS 1.3 that is where a rejected client certificate
/// shows up, often only as a dropped connection.
fn classified(target: &Target, err: &(dyn StdError + 'static), in_request: bool) -> Option<String> {
    use rustls::CertificateError as C;
    let url = &target.url;
    let unreachable = |why: &str| format!("cannot reach the collector at {url}: {why}");
    let tls = |why: String| format!("TLS handshake with {url}: {why}");
    let client_cert = target.cert.display();
    Some(match classify(err) {
        Cause::Refused => unreachable("connection refused"),
        Cause::TimedOut => unreachable(&format!(
            "no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )),
        Cause::Dns(why) => unreachable(&format!("cannot resolve the host name: {why}")),
        Cause::Closed if in_request => format!(
            "the collector at {url} closed the connection; it most likely rejected the client certificate {client_cert} (not issued by its CA, expired or revoked)"
        ),
        Cause::Closed => unreachable("the connection was closed during the handshake (is this a Vakt collector?)"),
        Cause::HandshakeTimeout => tls(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        Cause::NoHttp2 => tls("the server does not speak gRPC (HTTP/2 was not negotiated)".into()),
        Cause::Tls(rustls::Error::InvalidCertificate(cert_err)) => tls(match cert_err {
            C::UnknownIssuer | C::BadSignature | C::UnknownRevocationStatus => format!(
                "the collector's certificate is not signed by the CA in {}",
                target.ca.display()
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the collector's certificate is not valid for this host name (use a name it was issued for, see `vakt-collector init --name`)".into()
            }
            C::Expired | C::ExpiredContext { .. } => "the collector's certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the collector's certificate is not valid yet (check the clock)".into()
            }
            C::Revoked => "the collector's certificate has been revoked".into(),
            other => format!("the collector's certificate is invalid: {other:?}"),
        }),
        Cause::Alert(alert) => match alert.as_str() {
            "CertificateExpired" => tls(format!("the client certificate {client_cert} has expired")),
            "CertificateRevoked" => tls(format!("the client certificate {client_cert} has been revoked")),
            "BadCertificate" | "UnknownCA" | "CertificateUnknown" | "UnsupportedCertificate"
            | "CertificateRequired" | "AccessDenied" | "DecryptError" => tls(format!(
                "the collector rejected the client certificate {client_cert} (is it signed by the collector's CA?)"
            )),
            other => tls(format!("the collector refused the connection (TLS alert {other})")),
        },
        Cause::Tls(other) => tls(format!("{other} (is {url} a Vakt collector serving TLS?)")),
        Cause::Unclassified => return None,
    })
}

/// The one place gRPC statuses become messages. Servers' messages are shown
/// as they are (they name the device, the field, the role), prefixed only
/// where the code adds information the message may lack.
pub fn status_error(target: &Target, status: &Status) -> String {
    // A status built from a transport failure (collector died, TLS rejected
    // after the handshake) carries the real cause as its source.
    let transport = matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    );
    if transport
        && let Some(source) = StdError::source(status)
        && let Some(line) = classified(target, source, true)
    {
        return line;
    }
    let message = one_line(status.message());
    let message = if message.is_empty() {
        status.code().description().to_string()
    } else {
        message
    };
    match status.code() {
        // The collector's messages for these already say what is wrong and
        // what to do (a revoked device, a full spool, too many points), so a
        // prefix would only push the useful part off the end of the line.
        Code::NotFound
        | Code::InvalidArgument
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::Aborted => message,
        Code::PermissionDenied => format!("permission denied: {message}"),
        Code::Unauthenticated => format!(
            "the collector did not accept the client certificate {}: {message}",
            target.cert.display()
        ),
        Code::DeadlineExceeded => format!(
            "the collector did not answer within {}s: {message}",
            REQUEST_TIMEOUT.as_secs()
        ),
        Code::Unimplemented => format!(
            "the collector at {} does not support this request (is it older than vaktctl?): {message}",
            target.url
        ),
        Code::Unavailable => format!("the collector at {} is unavailable: {message}", target.url),
        Code::Cancelled => format!("the request was cancelled: {message}"),
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            format!("the collector failed: {message}")
        }
    }
}

/// Error text from the network must stay one line and must not carry
/// terminal control sequences.
pub fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
