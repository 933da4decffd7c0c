//! The README's first command: `vakt-collector quickstart` fills a fleet of
//! one (this machine), stops cleanly on SIGTERM and reuses its data.

use nix::sys::signal::Signal;
use std::process::Command;
use std::time::Duration;
use vakt_tests::{ChildGuard, TestDir, bin, free_port, vaktctl_with_config, wait_until};

fn quickstart(dir: &std::path::Path, grpc: u16, http: u16, logs: &std::path::Path) -> ChildGuard {
    let mut cmd = Command::new(bin("vakt-collector"));
    cmd.arg("quickstart")
        .arg("--dir")
        .arg(dir)
        .arg("--grpc-listen")
        .arg(format!("127.0.0.1:{grpc}"))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http}"));
    ChildGuard::spawn(cmd, "vakt-collector-quickstart", logs)
}

/// Waits until `vaktctl devices` lists exactly one online device with
/// inventory, and returns its id.
fn wait_for_online_device(
    config: &std::path::Path,
    qs: &mut ChildGuard,
    timeout: Duration,
) -> String {
    wait_until(
        timeout,
        "quickstart to list one online device with inventory",
        || {
            if let Some(status) = qs.try_status() {
                panic!("quickstart exited early with {status}\n{}", qs.logs());
            }
            if !config.exists() {
                return Err(format!("{} not written yet", config.display()));
            }
            let out = vaktctl_with_config(config, &["devices", "-o", "json"]);
            if !out.success() {
                return Err(out.to_string());
            }
            let devices = out.json();
            let list = devices
                .as_array()
                .ok_or_else(|| format!("not an array: {devices}"))?;
            match list.as_slice() {
                [device] if device["status"] == "online" && !device["inventory"].is_null() => {
                    Ok(device["device_id"].as_str().expect("device_id").to_owned())
                }
                [_] => Err(format!("device not online with inventory yet: {devices}")),
                _ => Err(format!("expected exactly one device: {devices}")),
            }
        },
    )
}

fn last_sequence(config: &std::path::Path, device_id: &str) -> u64 {
    let out = vaktctl_with_config(config, &["device", "show", device_id, "-o", "json"]);
    let device = out.assert_success().json();
    device["last_sequence"]
        .as_u64()
        .unwrap_or_else(|| panic!("no last_sequence: {device}"))
}

#[test]
fn quickstart_enrolls_this_machine_stops_on_sigterm_and_reuses_data() {
    let tmp = TestDir::new("quickstart");
    let dir = tmp.path().join("qs");
    let config = dir.join("vaktctl.toml");
    let (grpc, http) = (free_port(), free_port());

    let mut qs = quickstart(&dir, grpc, http, tmp.path());
    let device_id = wait_for_online_device(&config, &mut qs, Duration::from_secs(90));
    let stdout = qs.stdout();
    assert!(
        stdout.contains("vaktctl") && stdout.contains("vaktctl.toml"),
        "quickstart prints the vaktctl line to run: {stdout}"
    );

    qs.signal(Signal::SIGTERM);
    let status = qs
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("quickstart still running 10 s after SIGTERM\n{}", qs.logs()));
    assert!(
        status.success(),
        "quickstart exit after SIGTERM: {status}\n{}",
        qs.logs()
    );
    drop(qs);

    // Again: same data, same device, and its agent reports again.
    let mut again = quickstart(&dir, grpc, http, tmp.path());
    let device_again = wait_for_online_device(&config, &mut again, Duration::from_secs(60));
    assert_eq!(
        device_again, device_id,
        "the second run reuses the enrolled device"
    );
    let sequence_before = last_sequence(&config, &device_id);
    wait_until(
        Duration::from_secs(60),
        "the second run's agent to report again",
        || {
            if let Some(status) = again.try_status() {
                panic!(
                    "second quickstart exited early with {status}\n{}",
                    again.logs()
                );
            }
            let now = last_sequence(&config, &device_id);
            if now > sequence_before {
                Ok(())
            } else {
                Err(format!("last_sequence still {now}"))
            }
        },
    );
    let out = vaktctl_with_config(&config, &["devices", "-o", "json"]);
    let devices = out.assert_success().json();
    assert_eq!(
        devices.as_array().map(Vec::len),
        Some(1),
        "still exactly one device: {devices}"
    );
    again.signal(Signal::SIGTERM);
    let status = again
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("second quickstart still running 10 s after SIGTERM"));
    assert!(
        status.success(),
        "second quickstart exit after SIGTERM: {status}\n{}",
        again.logs()
    );
}
