//! The file handling of `credentials issue` against a fake collector, and
//! its renderings.

use super::*;
use std::os::unix::fs::PermissionsExt as _;

const NOW: i64 = 1_700_000_000_000;
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

fn issue(paths: &Paths, answer: Result<v1::IssueCredentialResponse>) -> Result<Issued> {
    block_on(issue_into(
        paths,
        "imaging-bot",
        "provisioner",
        "https://collector.example:7443",
        0,
        async |request: v1::IssueCredentialRequest| {
            // What the collector insists on: a CSR, and one that claims no names.
            let csr = rcgen::CertificateSigningRequestParams::from_pem(&request.csr_pem)
                .expect("a parseable CSR");
            assert!(csr.params.subject_alt_names.is_empty());
            assert_eq!(
                (request.name.as_str(), request.role.as_str()),
                ("imaging-bot", "provisioner")
            );
            assert!(vakt_proto::validate::issue_credential_request(&request).is_ok());
            // The key is on disk before the collector is asked.
            let key = std::fs::read_to_string(&paths.key).expect("key written first");
            assert!(key.contains("PRIVATE KEY"));
            answer
        },
    ))
}

fn signed() -> Result<v1::IssueCredentialResponse> {
    Ok(v1::IssueCredentialResponse {
        certificate_pem: CERT.into(),
        ca_pem: CA.into(),
        not_after_unix_ms: NOW + 365 * 86_400_000,
    })
}

#[test]
fn writes_key_certificate_ca_and_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(&tmp.path().join("out/imaging-bot"), "imaging-bot");
    let issued = issue(&paths, signed()).expect("issued");
    assert_eq!(issued.not_after_unix_ms, NOW + 365 * 86_400_000);
    assert_eq!(mode(&paths.dir), 0o700);
    assert_eq!(mode(&paths.key), 0o600);
    assert_eq!(std::fs::read_to_string(&paths.cert).expect("cert"), CERT);
    assert_eq!(std::fs::read_to_string(&paths.ca).expect("ca"), CA);
    assert_eq!(
        std::fs::read_to_string(&paths.config).expect("config"),
        "# vaktctl credential \"imaging-bot\", issued by vaktctl credentials issue.\n\
         collector = \"https://collector.example:7443\"\n\
         ca = \"ca.pem\"\n\
         cert = \"imaging-bot.pem\"\n\
         key = \"imaging-bot-key.pem\"\n"
    );
    // vaktctl itself reads it back to the files just written.
    let flags = super::super::connect::ConnFlags {
        config: Some(paths.config.clone()),
        ..Default::default()
    };
    let settings =
        super::super::connect::resolve(&flags, &Default::default()).expect("config resolves");
    assert_eq!(settings.cert, paths.cert);
    assert_eq!(settings.key, paths.key);
    assert_eq!(settings.ca, paths.ca);
}

#[test]
fn a_failed_signing_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(&tmp.path().join("bot"), "imaging-bot");
    let err = issue(
        &paths,
        Err(anyhow!("permission denied: role viewer may not")),
    )
    .expect_err("refused");
    assert_eq!(err.to_string(), "permission denied: role viewer may not");
    assert!(!paths.key.exists());
    assert!(
        !paths.dir.exists(),
        "the directory this run created is gone"
    );

    // In an existing directory: the key goes, the directory and its other
    // contents stay.
    std::fs::create_dir(&paths.dir).expect("mkdir");
    std::fs::write(paths.dir.join("notes.txt"), "keep").expect("write");
    let bogus = v1::IssueCredentialResponse::default();
    let err = issue(&paths, Ok(bogus)).expect_err("no certificate");
    assert!(err.to_string().contains("holds no certificate"), "{err}");
    assert!(!paths.key.exists());
    assert!(paths.dir.join("notes.txt").exists());
}

#[test]
fn existing_files_are_never_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(tmp.path(), "imaging-bot");
    std::fs::write(&paths.ca, "old ca").expect("write");
    let err = block_on(issue_into(
        &paths,
        "imaging-bot",
        "viewer",
        "https://c:7443",
        0,
        async |_: v1::IssueCredentialRequest| -> Result<v1::IssueCredentialResponse> {
            panic!("must not ask the collector")
        },
    ))
    .expect_err("refused");
    assert!(
        err.to_string().ends_with(
            "ca.pem already exists; refusing to overwrite it (choose another --out or --name)"
        ),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&paths.ca).expect("ca"), "old ca");
    assert!(!paths.key.exists());
}

#[test]
fn names_are_safe_file_names() {
    assert_eq!(parse_name("ana@example.com"), Ok("ana@example.com".into()));
    assert!(parse_name("..").is_err());
    assert!(parse_name(".hidden").is_err());
    assert!(parse_name("a/b").is_err());
    assert!(parse_name("").is_err());
    assert!(parse_name(&"x".repeat(65)).is_err());
    assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
    assert!(parse_lifetime("6y").is_err());
    assert!(parse_lifetime("0s").is_err());
    assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
}

fn issued() -> Issued {
    Issued {
        name: "imaging-bot".into(),
        role: "provisioner".into(),
        paths: Paths::new(Path::new("./imaging-bot"), "imaging-bot"),
        not_after_unix_ms: NOW + 365 * 86_400_000,
    }
}

#[test]
fn renderings() {
    assert_eq!(
        render_issued(&issued(), Format::Table, NOW),
        "Issued provisioner credential \"imaging-bot\", valid until 2024-11-13T22:13:20Z (in 365d).\n\
         \x20 Certificate:  ./imaging-bot/imaging-bot.pem\n\
         \x20 Private key:  ./imaging-bot/imaging-bot-key.pem (generated here, mode 0600)\n\
         \x20 CA:           ./imaging-bot/ca.pem\n\
         \x20 Config:       ./imaging-bot/vaktctl.toml\n\
         Use it with: vaktctl --config ./imaging-bot/vaktctl.toml register --help\n"
    );
    assert_eq!(
        render_issued(&issued(), Format::Json, NOW),
        "{\n  \"name\": \"imaging-bot\",\n  \"role\": \"provisioner\",\n  \
         \"certificate\": \"./imaging-bot/imaging-bot.pem\",\n  \
         \"key\": \"./imaging-bot/imaging-bot-key.pem\",\n  \
         \"ca\": \"./imaging-bot/ca.pem\",\n  \
         \"config\": \"./imaging-bot/vaktctl.toml\",\n  \
         \"not_after\": \"2024-11-13T22:13:20Z\"\n}\n"
    );
    assert_eq!(
        render_issued(&issued(), Format::Csv, NOW),
        "name,role,certificate,key,ca,config,not_after\n\
         imaging-bot,provisioner,./imaging-bot/imaging-bot.pem,./imaging-bot/imaging-bot-key.pem,\
         ./imaging-bot/ca.pem,./imaging-bot/vaktctl.toml,2024-11-13T22:13:20Z\n"
    );
}
