//! The whole path a real device takes: init → serve → register → enroll →
//! run → the device is online with inventory and CPU metrics — and its private
//! key never leaves it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use vakt_tests::{Agent, Collector, hostname, machine_id, str_field, wait_for_device};

#[test]
fn register_enroll_run_shows_device_online_with_inventory_and_metrics() {
    // The collector pushes its report interval to agents; keep it at the agent's 1 s.
    let collector = Collector::start_with(&[("report_interval", "\"1s\"")]);

    let machine_id = machine_id();
    let mut register_args = match &machine_id {
        Some(id) => vec!["--machine-id", id.as_str()],
        None => {
            eprintln!("/etc/machine-id is absent: registering --unbound");
            vec!["--unbound"]
        }
    };
    register_args.extend_from_slice(&["--class", "server", "--department", "IT"]);
    let registration = collector.register(&register_args);
    assert_eq!(registration.json["created"], true, "{}", registration.json);
    assert!(
        registration.token.len() >= 22,
        "a token of >= 128 bits is at least 22 characters: {:?}",
        registration.token
    );
    let device_id = registration.device_id.clone();

    // Before enrollment the device is known but never seen.
    let before = collector.device(&device_id);
    assert_eq!(before["status"], "never-seen", "{before}");
    assert_eq!(before["class"], "server", "{before}");
    assert_eq!(before["department"], "IT", "{before}");

    let mut agent = Agent::enroll(&collector, &registration.token, "agent");
    assert_eq!(
        agent.device_id(),
        device_id,
        "enrollment.json names the registered device"
    );
    for file in ["key.pem", "cert.pem"] {
        let mode = std::fs::metadata(agent.state_dir.join(file))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file} must be mode 0600, is {mode:o}");
    }

    agent.run();
    let this_host = hostname();
    let device = wait_for_device(
        &collector,
        &device_id,
        Duration::from_secs(40),
        "the device to be online with inventory",
        |d| {
            if d["status"] != "online" {
                return Err(format!("status {}", d["status"]));
            }
            if d["hostname"].as_str().unwrap_or("").is_empty() {
                return Err("empty hostname".into());
            }
            if d["inventory"].is_null() {
                return Err("no inventory yet".into());
            }
            Ok(())
        },
    );
    agent.assert_running();

    // The listing agrees with `device show`.
    let devices = collector.devices();
    let listed = vakt_tests::find_device(&devices, &device_id)
        .unwrap_or_else(|| panic!("{device_id} missing from `vaktctl devices`: {devices:?}"));
    assert_eq!(listed["status"], "online", "{listed}");
    assert_eq!(listed["department"], "IT", "{listed}");
    assert_eq!(listed["class"], "server", "{listed}");

    assert_eq!(str_field(&device, "hostname"), this_host, "{device}");
    let inventory = &device["inventory"];
    assert_eq!(str_field(inventory, "hostname"), this_host, "{inventory}");
    assert!(
        inventory["memory_total_bytes"].as_u64().unwrap_or(0) > 0,
        "memory_total_bytes > 0: {inventory}"
    );
    if let Some(id) = &machine_id {
        assert_eq!(str_field(&device, "machine_id"), id, "{device}");
    }
    assert!(!device["last_seen_at"].is_null(), "{device}");
    assert!(
        device["last_sequence"].as_u64().unwrap_or(0) >= 1,
        "{device}"
    );
    assert!(!device["certificate_not_after"].is_null(), "{device}");

    // At 1 s, two reports arrive within a few seconds.
    let points = vakt_tests::wait_until(
        Duration::from_secs(20),
        "two system.cpu.utilization points",
        || {
            let out = collector.vaktctl(&[
                "metrics",
                &device_id,
                "system.cpu.utilization",
                "--since",
                "10m",
                "-o",
                "json",
            ]);
            if !out.success() {
                return Err(out.to_string());
            }
            let json = out.json();
            assert_eq!(json["device_id"], device_id.as_str(), "{json}");
            assert_eq!(json["metric"], "system.cpu.utilization", "{json}");
            let points = vakt_tests::metric_points_of(&json);
            if points.len() >= 2 {
                Ok(points)
            } else {
                Err(format!("{} points: {json}", points.len()))
            }
        },
    );
    for (ts, value) in &points {
        assert!(
            (0.0..=1.0).contains(value),
            "cpu utilization {value} at {ts} outside [0, 1]"
        );
    }
    agent.assert_running();

    // The agent's own view agrees: same device, reports acknowledged.
    let status = vakt_tests::wait_until(
        Duration::from_secs(10),
        "`vakt-agent status` to show an acknowledged report",
        || {
            let mut cmd = std::process::Command::new(vakt_tests::bin("vakt-agent"));
            cmd.arg("status")
                .arg("--state-dir")
                .arg(&agent.state_dir)
                .args(["-o", "json"]);
            let out = vakt_tests::run_command(cmd, vakt_tests::COMMAND_TIMEOUT);
            if !out.success() {
                return Err(out.to_string());
            }
            let status = out.json();
            if status["acked_sequence"].as_u64().unwrap_or(0) >= 1 {
                Ok(status)
            } else {
                Err(format!("nothing acknowledged yet: {status}"))
            }
        },
    );
    assert_eq!(status["device_id"], device_id.as_str(), "{status}");

    // The device's private key exists only in the agent's state directory.
    let key_pem = std::fs::read_to_string(agent.state_dir.join("key.pem")).expect("read key.pem");
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(key_body.len() > 40, "key.pem has a PEM body: {key_pem}");
    let first_line = key_pem
        .lines()
        .find(|l| !l.starts_with("-----"))
        .expect("key body line");
    let key_der = rcgen::KeyPair::from_pem(&key_pem)
        .expect("key.pem parses")
        .serialize_der();
    let leaks = files_containing(
        &collector.dir,
        &[key_body.as_bytes(), first_line.as_bytes(), &key_der],
    );
    assert!(
        leaks.is_empty(),
        "the collector's data dir holds the device's private key in {leaks:?}"
    );
}

/// Files under `dir` (recursively) containing any of `needles`.
fn files_containing(dir: &std::path::Path, needles: &[&[u8]]) -> Vec<std::path::PathBuf> {
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
                    .any(|n| bytes.windows(n.len()).any(|w| w == *n))
            {
                found.push(path);
            }
        }
    }
    found
}
