//! `vaktctl` fails the way scripts expect: exit 1 and one clear line on
//! stderr for errors, exit 2 for usage errors.

use vakt_tests::{Collector, Output, vaktctl_with_config};

/// Exit 1, exactly one non-empty stderr line, and (case-insensitively) one of `mentions`.
fn assert_one_line_error(out: &Output, mentions: &[&str]) {
    assert_eq!(out.code, Some(1), "expected exit 1: {out}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "expected exactly one stderr line: {out}");
    let line = lines[0].to_lowercase();
    assert!(
        mentions.iter().any(|m| line.contains(&m.to_lowercase())),
        "stderr line should mention one of {mentions:?}: {out}"
    );
}

/// A copy of `collector`'s vaktctl.toml with `key = value` lines replaced.
fn edited_vaktctl_config(
    collector: &Collector,
    name: &str,
    edits: &[(&str, String)],
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(collector.vaktctl_config()).expect("read vaktctl.toml");
    let mut seen = vec![false; edits.len()];
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let key = line.split_once('=').map(|(k, _)| k.trim());
            for (i, (edit_key, value)) in edits.iter().enumerate() {
                if key == Some(edit_key) {
                    seen[i] = true;
                    return format!("{edit_key} = {value}");
                }
            }
            line.to_owned()
        })
        .collect();
    for (i, (key, _)) in edits.iter().enumerate() {
        assert!(
            seen[i],
            "vaktctl.toml written by init has no {key:?} key:\n{text}"
        );
    }
    // Same directory, so relative ca/cert/key paths still resolve.
    let path = collector.dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write edited vaktctl.toml");
    path
}

#[test]
fn collector_not_listening_is_exit_1_with_one_line() {
    // Initialised but never served: nothing listens on its gRPC port.
    let collector = Collector::init();
    let out = collector.vaktctl(&["devices", "-o", "json"]);
    assert_one_line_error(&out, &["collector", &format!(":{}", collector.grpc_port)]);
}

#[test]
fn wrong_ca_is_exit_1_with_one_line() {
    let collector = Collector::start();
    let other = Collector::init();
    let config = edited_vaktctl_config(
        &collector,
        "wrong-ca.toml",
        &[(
            "ca",
            format!("{:?}", other.dir.join("ca.pem").display().to_string()),
        )],
    );
    let out = vaktctl_with_config(&config, &["devices", "-o", "json"]);
    assert_one_line_error(
        &out,
        &["certificate", "collector", "tls", "ca", "trust", "verify"],
    );
}

#[test]
fn unknown_device_is_exit_1_mentioning_it() {
    let collector = Collector::start();
    let out = collector.vaktctl(&["device", "show", "nosuch", "-o", "json"]);
    assert_one_line_error(&out, &["nosuch"]);
    assert!(out.stdout.trim().is_empty(), "no output on error: {out}");
}

#[test]
fn bad_flag_is_usage_error_exit_2() {
    let collector = Collector::init();
    let out = collector.vaktctl(&["devices", "--no-such-flag"]);
    assert_eq!(out.code, Some(2), "expected usage error exit 2: {out}");
    assert!(
        !out.stderr.trim().is_empty(),
        "usage error explains itself: {out}"
    );
    let out = collector.vaktctl(&["no-such-command"]);
    assert_eq!(out.code, Some(2), "expected usage error exit 2: {out}");
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca() {
    let collector = Collector::init();
    let ca_before = collector.ca_pem();
    let mut cmd = std::process::Command::new(vakt_tests::bin("vakt-collector"));
    cmd.arg("init")
        .arg("--data-dir")
        .arg(&collector.dir)
        .args(["--name", "localhost"]);
    let out = vakt_tests::run_command(cmd, vakt_tests::COMMAND_TIMEOUT);
    assert_eq!(out.code, Some(1), "init over an existing CA: {out}");
    assert!(
        !out.stderr.trim().is_empty(),
        "init says why it refuses: {out}"
    );
    assert_eq!(
        collector.ca_pem(),
        ca_before,
        "the existing CA is untouched"
    );
}
