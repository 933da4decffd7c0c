//! The Debian packages: `deploy/package.sh` builds both from the
//! `[package.metadata.deb]` tables, and what it builds is checked the way an
//! operator would meet it — contents (`dpkg-deb -c`), control data
//! (`dpkg-deb -I`), conffiles, maintainer scripts that create the system user
//! and enable (but do not start) the unit — and the unit files themselves pass
//! `systemd-analyze verify` (which works without systemd as PID 1) and carry
//! the service contract of issue 4 (notify, watchdog, restart, hardening).
//!
//! The test packages the unoptimized binaries the harness builds anyway, so CI
//! pays seconds, not a release build; the packaging path is the same one
//! `deploy/package.sh` takes for a release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vakt_tests::{TestDir, bin_dir, require_program, run_command, workspace_root};

struct Built {
    _dir: TestDir,
    agent: PathBuf,
    collector: PathBuf,
    /// Both packages extracted into one tree, as if installed side by side.
    root: PathBuf,
}

fn tools_present() -> bool {
    ["dpkg-deb", "python3", "systemd-analyze"]
        .iter()
        .all(|tool| require_program(tool, "the packaging check needs it"))
}

/// Builds both packages into a temporary directory (removed when dropped:
/// unoptimized packages are ~400 MB, so one test owns them).
fn build_packages() -> Built {
    {
        let bins = bin_dir();
        let target_dir = bins.parent().expect("target/<profile> has a parent");
        let profile = match bins.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let dir = TestDir::new("packaging");
        let out = dir.path().join("debs");
        let mut cmd = Command::new(workspace_root().join("deploy/package.sh"));
        cmd.args(["--profile", profile, "--no-build", "--compression", "none"])
            .arg("--target-dir")
            .arg(target_dir)
            .arg("--out")
            .arg(&out);
        run_command(cmd, Duration::from_secs(600)).assert_success();
        let deb = |name: &str| {
            let found: Vec<PathBuf> = std::fs::read_dir(&out)
                .expect("package.sh wrote its output directory")
                .map(|e| e.expect("dir entry").path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{name}_")) && n.ends_with(".deb"))
                })
                .collect();
            assert_eq!(found.len(), 1, "exactly one {name} package: {found:?}");
            found[0].clone()
        };
        let (agent, collector) = (deb("vakt-agent"), deb("vakt-collector"));
        let root = dir.path().join("root");
        for package in [&agent, &collector] {
            let mut x = Command::new("dpkg-deb");
            x.arg("-x").arg(package).arg(&root);
            run_command(x, Duration::from_secs(120)).assert_success();
        }
        Built {
            _dir: dir,
            agent,
            collector,
            root,
        }
    }
}

fn dpkg_deb(args: &[&str], package: &Path) -> String {
    let mut cmd = Command::new("dpkg-deb");
    cmd.args(args).arg(package);
    run_command(cmd, Duration::from_secs(120))
        .assert_success()
        .stdout
        .clone()
}

/// `dpkg-deb -c`: path → mode string (`-rwxr-xr-x`), paths without the leading `.`.
fn contents(package: &Path) -> BTreeMap<String, String> {
    dpkg_deb(&["-c"], package)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.get(5)?.trim_start_matches('.');
            Some((path.trim_end_matches('/').to_owned(), fields[0].to_owned()))
        })
        .collect()
}

/// One file of the control archive (`dpkg-deb --info PACKAGE FILE`).
fn control_file(package: &Path, name: &str) -> String {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("--info").arg(package).arg(name);
    run_command(cmd, Duration::from_secs(60))
        .assert_success()
        .stdout
        .clone()
}

fn check_package(package: &Path, name: &str, binaries: &[&str], conffile: &str, user: &str) {
    let info = dpkg_deb(&["-I"], package);
    for field in [
        format!("Package: {name}"),
        "Architecture: ".into(),
        "Depends: libc6 (>= ".into(),
        "adduser".into(),
        "Section: admin".into(),
    ] {
        assert!(
            info.contains(&field),
            "{name}: `{field}` missing in\n{info}"
        );
    }
    let files = contents(package);
    for binary in binaries {
        let mode = files
            .get(&format!("/usr/bin/{binary}"))
            .unwrap_or_else(|| panic!("{name}: /usr/bin/{binary} missing: {files:#?}"));
        assert_eq!(mode, "-rwxr-xr-x", "{binary}");
    }
    let unit = format!("/lib/systemd/system/{name}.service");
    assert_eq!(files.get(&unit).map(String::as_str), Some("-rw-r--r--"));
    assert_eq!(
        files.get(conffile).map(String::as_str),
        Some("-rw-r-----"),
        "{conffile} is shipped, not world-readable"
    );
    assert_eq!(control_file(package, "conffiles").trim(), conffile);

    let postinst = control_file(package, "postinst");
    assert!(postinst.starts_with("#!/bin/sh"), "{postinst}");
    assert!(
        postinst.contains("adduser --system")
            && postinst.contains(&format!("--gecos \"Vakt {}\" {user}", &name[5..])),
        "{name}: postinst creates the system user {user}:\n{postinst}"
    );
    assert!(postinst.contains(&format!("-o {user} -g {user} /var/lib/{name}")));
    assert!(postinst.contains("install -d -m 0755 -o root -g root /etc/vakt"));
    assert!(
        postinst.contains("deb-systemd-helper enable \"$unit\"")
            && postinst.contains(&format!("'{name}.service'")),
        "{name}: postinst enables the unit:\n{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "{name}: the unit needs configuration first, so installation must not start it"
    );
    assert!(
        !postinst.contains("#DEBHELPER#"),
        "token left in:\n{postinst}"
    );
    assert!(control_file(package, "prerm").contains("deb-systemd-invoke stop"));
    assert!(control_file(package, "postrm").contains("deb-systemd-helper purge"));
    for script in ["postinst", "prerm", "postrm"] {
        let text = control_file(package, script);
        let mut sh = Command::new("sh");
        sh.args(["-n", "-c", &text]);
        run_command(sh, Duration::from_secs(10)).assert_success();
    }
}

fn agent_package_holds_binary_unit_conffile_and_user_creation(built: &Built) {
    check_package(
        &built.agent,
        "vakt-agent",
        &["vakt-agent"],
        "/etc/vakt/agent.toml",
        "vakt-agent",
    );
    // The packaged binary is the real one.
    let mut version = Command::new(built.root.join("usr/bin/vakt-agent"));
    version.arg("--version");
    let out = run_command(version, Duration::from_secs(10));
    assert!(out.assert_success().stdout.starts_with("vakt-agent "));
    // The shipped config parses as the agent reads it.
    vakt_agent_config_parses(built, &built.root.join("etc/vakt/agent.toml"));
}

fn collector_package_holds_both_binaries_unit_conffile_and_user_creation(built: &Built) {
    check_package(
        &built.collector,
        "vakt-collector",
        &["vakt-collector", "vaktctl"],
        "/etc/vakt/collector.toml",
        "vakt-collector",
    );
    // The shipped config is valid, and everything it writes is in the unit's
    // StateDirectory (ProtectSystem=strict makes the rest read-only).
    let config =
        vakt_collector::config::CollectorConfig::load(&built.root.join("etc/vakt/collector.toml"))
            .expect("the packaged collector.toml loads");
    for path in [
        &config.data,
        &config.ca_cert,
        &config.ca_key,
        &config.server_cert,
        &config.server_key,
    ] {
        assert!(
            path.starts_with("/var/lib/vakt-collector/"),
            "{} is outside the state directory",
            path.display()
        );
    }
}

fn vakt_agent_config_parses(built: &Built, path: &Path) {
    // Through the binary, as the service would: `collect --once --config`.
    let mut cmd = Command::new(built.root.join("usr/bin/vakt-agent"));
    cmd.args(["collect", "--once", "-o", "json", "--config"])
        .arg(path);
    run_command(cmd, Duration::from_secs(60)).assert_success();
}

/// The unit's keys, as `systemd` reads them: last assignment wins, except for
/// keys that accumulate, which are joined.
fn unit_keys(text: &str) -> BTreeMap<String, String> {
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let entry = keys.entry(key.to_owned()).or_default();
            if !entry.is_empty() {
                entry.push(' ');
            }
            entry.push_str(value);
        }
    }
    keys
}

fn verify_unit(built: &Built, name: &str, required: &[(&str, &str)]) {
    let unit = built
        .root
        .join(format!("lib/systemd/system/{name}.service"));
    let text = std::fs::read_to_string(&unit).expect("unit in the package");
    let keys = unit_keys(&text);
    for (key, want) in required {
        let got = keys.get(*key).map(String::as_str);
        assert!(
            got.is_some_and(|v| v.contains(want)),
            "{name}.service: {key}= should contain {want:?}, is {got:?}"
        );
    }
    // systemd-analyze verify also checks that ExecStart is executable: point it
    // at the binary extracted from the package.
    let dir = TestDir::new("unit-verify");
    let copy = dir.path().join(format!("{name}.service"));
    let root = built.root.display().to_string();
    std::fs::write(
        &copy,
        text.replace("ExecStart=/usr/bin/", &format!("ExecStart={root}/usr/bin/")),
    )
    .expect("write unit copy");
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify").arg(&copy);
    let out = run_command(verify, Duration::from_secs(60));
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "systemd-analyze verify {name}.service:\n{}",
        out.stderr
    );
}

fn agent_unit_verifies_and_is_a_hardened_notify_service(built: &Built) {
    verify_unit(
        built,
        "vakt-agent",
        &[
            ("Type", "notify"),
            ("WatchdogSec", "s"),
            ("Restart", "always"),
            ("User", "vakt-agent"),
            ("StateDirectory", "vakt-agent"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("ProtectKernelModules", "yes"),
            ("CapabilityBoundingSet", "CAP_DAC_READ_SEARCH"),
            ("SystemCallFilter", "@system-service"),
            ("ExecStart", "/usr/bin/vakt-agent run"),
            ("WantedBy", "multi-user.target"),
        ],
    );
}

fn collector_unit_verifies_and_is_hardened(built: &Built) {
    verify_unit(
        built,
        "vakt-collector",
        &[
            ("Restart", "on-failure"),
            ("User", "vakt-collector"),
            ("StateDirectory", "vakt-collector"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("SystemCallFilter", "@system-service"),
            (
                "ExecStart",
                "/usr/bin/vakt-collector serve --config /etc/vakt/collector.toml",
            ),
            ("WantedBy", "multi-user.target"),
        ],
    );
}

/// One test owns the packages (built once, deleted at the end); the checks
/// below run in turn against them.
#[test]
fn debian_packages_and_their_units() {
    if !tools_present() {
        return;
    }
    let built = build_packages();
    agent_package_holds_binary_unit_conffile_and_user_creation(&built);
    collector_package_holds_both_binaries_unit_conffile_and_user_creation(&built);
    agent_unit_verifies_and_is_a_hardened_notify_service(&built);
    collector_unit_verifies_and_is_hardened(&built);
}

/// `$auto` puts libc6 into Depends only for binaries that link glibc: the
/// agent's static musl build needs nothing but what its metadata adds.
#[test]
fn auto_depends_follows_what_the_binaries_link() {
    if !require_program("python3", "the packaging check needs it") {
        return;
    }
    let dir = TestDir::new("auto-depends");
    let static_binary = dir.path().join("static");
    let dynamic_binary = dir.path().join("dynamic");
    std::fs::write(&static_binary, b"\x7fELF code and data, no dynamic section").expect("write");
    std::fs::write(
        &dynamic_binary,
        b"\x7fELF libc.so.6\0GLIBC_2.2.5\0GLIBC_2.34\0libgcc_s.so.1\0",
    )
    .expect("write");
    let mut cmd = Command::new("python3");
    cmd.current_dir(workspace_root().join("deploy/debian"))
        .arg("-c")
        .arg("import assemble, sys; print(assemble.auto_depends(sys.argv[1:2]), assemble.auto_depends(sys.argv[2:3]))")
        .arg(&static_binary)
        .arg(&dynamic_binary);
    let out = run_command(cmd, Duration::from_secs(60));
    assert_eq!(
        out.assert_success().stdout.trim(),
        "[] ['libc6 (>= 2.34)', 'libgcc-s1 (>= 4.2)']"
    );
}
