//! Connection settings precedence and error-message mapping (no network).

use super::*;
use std::fs;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn target() -> Target {
    Target {
        url: "https://127.0.0.1:7443".into(),
        ca: "/etc/vakt/ca.pem".into(),
        cert: "/etc/vakt/admin.pem".into(),
    }
}

const CONFIG: &str = "collector = \"https://127.0.0.1:7443\"\nca = \"ca.pem\"\ncert = \"admin.pem\"\nkey = \"/abs/admin-key.pem\"\n";

#[test]
fn config_file_paths_are_relative_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vaktctl.toml");
    fs::write(&path, CONFIG).expect("write");
    let flags = ConnFlags {
        config: Some(path),
        ..Default::default()
    };
    let s = resolve(&flags, &Env::new()).expect("resolves");
    assert_eq!(
        s,
        Settings {
            collector: "https://127.0.0.1:7443".into(),
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("admin.pem"),
            key: "/abs/admin-key.pem".into(),
        }
    );
}

#[test]
fn flags_beat_env_beat_file_per_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    fs::write(&path, CONFIG).expect("write");
    let flags = ConnFlags {
        collector: Some("https://flag:1".into()),
        ca: Some("flag-ca.pem".into()),
        ..Default::default()
    };
    let e = env(&[
        ("VAKT_COLLECTOR", "https://env:2"),
        ("VAKT_CA", "env-ca.pem"),
        ("VAKT_CERT", "env-cert.pem"),
        ("VAKT_CONFIG", path.to_str().expect("utf-8 path")),
    ]);
    let s = resolve(&flags, &e).expect("resolves");
    assert_eq!(s.collector, "https://flag:1");
    assert_eq!(s.ca, PathBuf::from("flag-ca.pem"));
    assert_eq!(s.cert, PathBuf::from("env-cert.pem"));
    assert_eq!(s.key, PathBuf::from("/abs/admin-key.pem"));
}

#[test]
fn default_config_is_used_only_if_it_exists() {
    let home = tempfile::tempdir().expect("tempdir");
    let e = env(&[("HOME", home.path().to_str().expect("utf-8"))]);
    let err = resolve(&ConnFlags::default(), &e).expect_err("nothing configured");
    let text = err.to_string();
    assert!(
        text.starts_with("no collector configured: pass --collector URL, set VAKT_COLLECTOR, or write `collector = ")
            && text.contains(".config/vakt/vaktctl.toml"),
        "{text}"
    );
    let dir = home.path().join(".config/vakt");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("vaktctl.toml"), CONFIG).expect("write");
    let s = resolve(&ConnFlags::default(), &e).expect("resolves");
    assert_eq!(s.ca, dir.join("ca.pem"));
}

#[test]
fn missing_pieces_and_broken_files_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    fs::write(&path, "collector = \"127.0.0.1:7443\"\nca = \"ca.pem\"\n").expect("write");
    let flags = ConnFlags {
        config: Some(path.clone()),
        ..Default::default()
    };
    let err = resolve(&flags, &Env::new())
        .expect_err("no cert")
        .to_string();
    assert_eq!(
        err,
        format!(
            "no client certificate configured: pass --cert FILE, set VAKT_CERT, or add `cert = \"cert.pem\"` to {}",
            path.display()
        )
    );
    // host:port without a scheme means https.
    let flags = ConnFlags {
        config: Some(path.clone()),
        cert: Some("c".into()),
        key: Some("k".into()),
        ..Default::default()
    };
    assert_eq!(
        resolve(&flags, &Env::new()).expect("ok").collector,
        "https://127.0.0.1:7443"
    );

    fs::write(&path, "collector = \"x\"\nca = [1]\n").expect("write");
    let err = resolve(&flags, &Env::new())
        .expect_err("bad toml")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "invalid config file {} (line 2): ",
            path.display()
        )),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");

    let missing = ConnFlags {
        config: Some(dir.path().join("nope.toml")),
        ..Default::default()
    };
    let err = resolve(&missing, &Env::new())
        .expect_err("missing")
        .to_string();
    assert!(
        err.ends_with("nope.toml: No such file or directory"),
        "{err}"
    );
}

#[test]
fn urls() {
    assert_eq!(
        normalize_url("https://c.example:7443/").expect("ok"),
        "https://c.example:7443"
    );
    assert_eq!(
        normalize_url("[::1]:7443").expect("ok"),
        "https://[::1]:7443"
    );
    let err = normalize_url("http://c:7443")
        .expect_err("plain http")
        .to_string();
    assert!(err.contains("must start with https://"), "{err}");
    assert!(normalize_url("https://").is_err());
}

#[tokio::test]
async fn missing_credential_files_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    fs::write(&ca, "not a pem").expect("write");
    let mut settings = Settings {
        collector: "https://127.0.0.1:1".into(),
        ca: ca.clone(),
        cert: dir.path().join("admin.pem"),
        key: dir.path().join("admin-key.pem"),
    };
    let err = connect(&settings)
        .await
        .err()
        .expect("cert missing")
        .to_string();
    assert_eq!(
        err,
        format!(
            "cannot read client certificate {}: No such file or directory",
            settings.cert.display()
        )
    );
    fs::write(&settings.cert, "x").expect("write");
    fs::write(&settings.key, "x").expect("write");
    let err = connect(&settings).await.err().expect("bad ca").to_string();
    assert_eq!(
        err,
        format!("no PEM certificate in the CA file {}", ca.display())
    );
    settings.ca = dir.path().join("absent.pem");
    let err = connect(&settings)
        .await
        .err()
        .expect("ca missing")
        .to_string();
    assert!(err.starts_with("cannot read CA certificate "), "{err}");
}

/// An error wrapping another, like hyper's and tonic's wrappers.
#[derive(Debug)]
struct Wrap(&'static str, Box<dyn StdError + Send + Sync>);
impl std::fmt::Display for Wrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl StdError for Wrap {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.1)
    }
}

fn io(kind: std::io::ErrorKind) -> Wrap {
    Wrap(
        "transport error",
        Box::new(Wrap(
            "tcp connect error",
            Box::new(std::io::Error::from(kind)),
        )),
    )
}

fn rustls_io(e: rustls::Error) -> Wrap {
    Wrap(
        "transport error",
        Box::new(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    )
}

#[test]
fn transport_failures() {
    use std::io::ErrorKind;
    let t = target();
    assert_eq!(
        transport_error(&t, &io(ErrorKind::ConnectionRefused)),
        "cannot reach the collector at https://127.0.0.1:7443: connection refused"
    );
    assert_eq!(
        transport_error(&t, &io(ErrorKind::TimedOut)),
        "cannot reach the collector at https://127.0.0.1:7443: no answer within 5s"
    );
    assert_eq!(
        transport_error(
            &t,
            &rustls_io(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "TLS handshake with https://127.0.0.1:7443: the collector's certificate is not signed by the CA in /etc/vakt/ca.pem"
    );
    assert!(
        transport_error(
            &t,
            &rustls_io(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
            ))
        )
        .contains("not valid for this host name")
    );
    assert_eq!(
        transport_error(
            &t,
            &rustls_io(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            ))
        ),
        "TLS handshake with https://127.0.0.1:7443: the collector rejected the client certificate /etc/vakt/admin.pem (is it signed by the collector's CA?)"
    );
    assert_eq!(
        transport_error(
            &t,
            &Wrap(
                "transport error",
                Box::new(Wrap("dns error", "Name or service not known".into()))
            )
        ),
        "cannot reach the collector at https://127.0.0.1:7443: cannot resolve the host name: Name or service not known"
    );
    assert_eq!(
        transport_error(&t, &Wrap("transport error", "something odd".into())),
        "cannot reach the collector at https://127.0.0.1:7443: transport error: something odd"
    );
}

#[test]
fn every_status_code_maps_to_one_line() {
    let t = target();
    let cases: &[(Code, &str, &str)] = &[
        (
            Code::NotFound,
            "no device matches \"foo\"",
            "no device matches \"foo\"",
        ),
        (
            Code::InvalidArgument,
            "serial: too long",
            "serial: too long",
        ),
        (Code::AlreadyExists, "exists", "exists"),
        (Code::FailedPrecondition, "device revoked", "device revoked"),
        (Code::OutOfRange, "range", "range"),
        (Code::Aborted, "conflict", "conflict"),
        (
            Code::PermissionDenied,
            "role viewer may not call RegisterDevice",
            "permission denied: role viewer may not call RegisterDevice",
        ),
        (
            Code::Unauthenticated,
            "no client certificate",
            "the collector did not accept the client certificate /etc/vakt/admin.pem: no client certificate",
        ),
        (Code::ResourceExhausted, "slow down", "slow down"),
        (
            Code::ResourceExhausted,
            "",
            "Some resource has been exhausted",
        ),
        (
            Code::DeadlineExceeded,
            "timeout",
            "the collector did not answer within 60s: timeout",
        ),
        (
            Code::Unimplemented,
            "",
            "the collector at https://127.0.0.1:7443 does not support this request (is it older than vaktctl?): Operation is not implemented or not supported",
        ),
        (
            Code::Unavailable,
            "shutting down",
            "the collector at https://127.0.0.1:7443 is unavailable: shutting down",
        ),
        (Code::Cancelled, "bye", "the request was cancelled: bye"),
        (
            Code::Internal,
            "store\nfailed",
            "the collector failed: store; failed",
        ),
        (Code::Unknown, "?", "the collector failed: ?"),
        (Code::DataLoss, "lost", "the collector failed: lost"),
        (Code::Ok, "odd", "the collector failed: odd"),
    ];
    for (code, message, expected) in cases {
        assert_eq!(
            status_error(&t, &Status::new(*code, *message)),
            *expected,
            "{code:?}"
        );
    }
}

#[test]
fn transport_statuses_use_their_source() {
    let mut status = Status::unavailable("error trying to connect");
    status.set_source(std::sync::Arc::new(io(
        std::io::ErrorKind::ConnectionRefused,
    )));
    assert_eq!(
        status_error(&target(), &status),
        "cannot reach the collector at https://127.0.0.1:7443: connection refused"
    );
    let mut status = Status::unknown("transport error");
    status.set_source(std::sync::Arc::new(rustls_io(
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired),
    )));
    assert_eq!(
        status_error(&target(), &status),
        "TLS handshake with https://127.0.0.1:7443: the client certificate /etc/vakt/admin.pem has expired"
    );
}

#[test]
fn client_certificate_rejections_seen_after_the_handshake() {
    let t = target();
    // h2 turns the rustls error into a string-only io::Error.
    let mut status = Status::unknown("transport error");
    status.set_source(std::sync::Arc::new(Wrap(
        "transport error",
        Box::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: DecryptError",
        )),
    )));
    assert_eq!(
        status_error(&t, &status),
        "TLS handshake with https://127.0.0.1:7443: the collector rejected the client certificate /etc/vakt/admin.pem (is it signed by the collector's CA?)"
    );
    let mut status = Status::unknown("transport error");
    status.set_source(std::sync::Arc::new(io(std::io::ErrorKind::BrokenPipe)));
    assert_eq!(
        status_error(&t, &status),
        "the collector at https://127.0.0.1:7443 closed the connection; it most likely rejected the client certificate /etc/vakt/admin.pem (not issued by its CA, expired or revoked)"
    );
}

#[test]
fn io_reasons_drop_the_os_error_number() {
    let e = std::io::Error::from_raw_os_error(2);
    assert_eq!(io_reason(&e), "No such file or directory");
}
